"""Listening sockets for several uvicorn workers: replies not delayed, connections spread.

uvicorn, with more than one worker, binds one socket in the supervisor and hands it to every
worker. Two things go wrong with that socket here:

- It is made with ``socket.socket(family)``: its protocol number is 0, so asyncio, which turns
  Nagle's algorithm off only on sockets whose protocol is TCP, leaves it on for every
  connection accepted from it, and each reply after the first on a kept-alive connection waits
  for the client's delayed ACK (about 40 ms; with the no-op app: 7,780 requests/s with one
  worker, 1,450 with two).
- The workers take turns at ``accept()`` on one socket, and whichever is idle in its event loop
  takes the next connection. Kept-alive connections opened in a burst (a client's pool, or a
  load balancer's) then mostly land on one worker, and the others sit idle: with 64 connections
  to two ledger workers, one worker held all 64.

So each worker listens on a socket of its own, bound to the same address with
``SO_REUSEPORT``, and the kernel spreads new connections across them evenly; each socket is
made with ``IPPROTO_TCP``. The supervisor binds one too, without listening on it, to fail early
on an address in use (and to learn the port when 0 is asked); it refuses an address where
something already answers, since a second server of the same user could otherwise share it.
"""

from __future__ import annotations

import socket
from typing import Any

from uvicorn import Config


class TcpConfig(Config):
    """A uvicorn config whose workers each listen on a TCP socket of their own."""

    def bind_socket(self) -> socket.socket:
        family = socket.AF_INET6 if self.host and ":" in self.host else socket.AF_INET
        if _answers(family, self.host, self.port):
            raise SystemExit(
                f"cannot listen on {self.host}:{self.port}: something is listening there already"
            )
        sock = WorkerSocket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            _bind(sock, self.host, self.port)
        except OSError as exc:
            sock.close()
            raise SystemExit(f"cannot listen on {self.host}:{self.port}: {exc}") from None
        return sock


class WorkerSocket(socket.socket):
    """The supervisor's socket; each worker that receives it binds a listening socket of its
    own to the same address (pickling it, as multiprocessing does, makes a new socket)."""

    def __reduce__(self) -> tuple[Any, ...]:
        host, port = self.getsockname()[:2]
        return (worker_socket, (int(self.family), host, port))


def worker_socket(family: int, host: str, port: int) -> socket.socket:
    """A socket bound to ``host:port`` beside the other workers' (``SO_REUSEPORT``), for
    asyncio to listen on."""
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    try:
        _bind(sock, host, port)
    except OSError:
        sock.close()
        raise
    return sock


def _bind(sock: socket.socket, host: str, port: int) -> None:
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))


def _answers(family: int, host: str, port: int) -> bool:
    """Whether something accepts connections at ``host:port`` now."""
    if port == 0:
        return False
    target = "127.0.0.1" if host in ("", "0.0.0.0") else "::1" if host == "::" else host  # noqa: S104
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.settimeout(1)
        return probe.connect_ex((target, port)) == 0
