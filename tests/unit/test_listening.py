"""Several workers share a listening socket made as TCP, so replies are not delayed."""

from __future__ import annotations

import socket

import pytest

from api.listening import TcpConfig


def test_the_shared_socket_is_tcp_so_accepted_connections_get_nodelay() -> None:
    config = TcpConfig("api.asgi:create", factory=True, host="127.0.0.1", port=0, workers=2)
    sock = config.bind_socket()
    try:
        assert sock.proto == socket.IPPROTO_TCP  # asyncio sets TCP_NODELAY only then
        assert sock.get_inheritable()
        sock.listen()
        with socket.create_connection(sock.getsockname()):
            accepted, _ = sock.accept()
            with accepted:
                assert accepted.proto == socket.IPPROTO_TCP
    finally:
        sock.close()


def test_a_port_in_use_is_a_clear_error() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        config = TcpConfig("api.asgi:create", host="127.0.0.1", port=port, workers=2)
        with pytest.raises(SystemExit, match=f"cannot listen on 127.0.0.1:{port}"):
            config.bind_socket()
