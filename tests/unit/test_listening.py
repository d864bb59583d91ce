"""Several workers each listen on a TCP socket of their own: replies not delayed, and new
connections spread across the workers by the kernel."""

from __future__ import annotations

import io
import pickle
import select
import socket
import time
from multiprocessing.reduction import ForkingPickler

import pytest

from api.http.listening import TcpConfig, WorkerSocket


def _as_a_worker_receives_it(sock: socket.socket) -> socket.socket:
    """Pickled as multiprocessing hands uvicorn's sockets to its workers, then loaded."""
    buffer = io.BytesIO()
    ForkingPickler(buffer).dump(sock)
    received: socket.socket = pickle.loads(buffer.getvalue())
    return received


def _config(port: int = 0) -> TcpConfig:
    return TcpConfig("api.http.asgi:create", factory=True, host="127.0.0.1", port=port, workers=2)


def test_each_worker_listens_on_a_tcp_socket_of_its_own_at_the_same_address() -> None:
    shared = _config().bind_socket()
    workers = [_as_a_worker_receives_it(shared) for _ in range(2)]
    try:
        assert isinstance(shared, WorkerSocket)
        address = shared.getsockname()
        for sock in workers:
            assert not isinstance(sock, WorkerSocket) and sock.fileno() != shared.fileno()
            assert sock.getsockname() == address
            assert sock.proto == socket.IPPROTO_TCP  # asyncio sets TCP_NODELAY only then
            sock.listen()
        with socket.create_connection(address):
            accepted = _accept_any(workers)
            with accepted:
                assert accepted.proto == socket.IPPROTO_TCP
    finally:
        for sock in [shared, *workers]:
            sock.close()


def test_new_connections_are_spread_across_the_workers() -> None:
    shared = _config().bind_socket()
    workers = [_as_a_worker_receives_it(shared) for _ in range(2)]
    clients: list[socket.socket] = []
    try:
        for sock in workers:
            sock.listen(64)
            sock.setblocking(False)
        # 32 connections from one client at once, as a pool opens them: with one shared socket
        # a single busy-free worker could take them all; here the kernel hashes each to one
        # worker's socket (all 32 on one: probability 2**-31).
        clients = [socket.create_connection(shared.getsockname()) for _ in range(32)]
        counts = [len(_drain(sock)) for sock in workers]
        assert sum(counts) == 32
        assert min(counts) > 0, counts
    finally:
        for sock in [shared, *workers, *clients]:
            sock.close()


def test_the_supervisor_socket_does_not_take_connections() -> None:
    shared = _config().bind_socket()
    try:
        with pytest.raises(ConnectionRefusedError):  # bound only: nobody listens yet
            socket.create_connection(shared.getsockname(), timeout=2).close()
    finally:
        shared.close()


def test_a_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(SystemExit, match=f"cannot listen on 127.0.0.1:{port}"):
            _config(port).bind_socket()


def test_a_port_another_server_listens_on_with_reuse_port_is_refused_too() -> None:
    """A second ``serve --workers N`` of the same user could bind beside the first one (both
    ask for SO_REUSEPORT) and take half its connections: it is refused."""
    first = _config().bind_socket()
    running = _as_a_worker_receives_it(first)
    try:
        running.listen()
        port = first.getsockname()[1]
        with pytest.raises(SystemExit, match="something is listening there already"):
            _config(port).bind_socket()
    finally:
        running.close()
        first.close()


def _accept_any(sockets: list[socket.socket]) -> socket.socket:
    ready, _, _ = select.select(sockets, [], [], 5)
    assert ready, "no worker socket received the connection"
    accepted, _ = ready[0].accept()
    return accepted


def _drain(sock: socket.socket) -> list[socket.socket]:
    taken: list[socket.socket] = []
    deadline = time.monotonic() + 2
    while time.monotonic() < deadline:
        if not select.select([sock], [], [], 0.1)[0]:
            if taken:
                break
            continue
        try:
            conn, _ = sock.accept()
        except BlockingIOError:
            continue
        taken.append(conn)
    for conn in taken:
        conn.close()
    return taken
