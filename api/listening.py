"""The listening socket for several uvicorn workers, made so that replies are not delayed.

With more than one worker, uvicorn binds the socket itself with ``socket.socket(family)``:
its protocol number is 0, so asyncio, which turns Nagle's algorithm off only on sockets whose
protocol is TCP, leaves it on for every connection accepted from it, and each reply after the
first on a kept-alive connection waits for the client's delayed ACK (about 40 ms; measured in
``docs/performance.md``: 7,780 requests/s with one worker, 1,450 with two). Here the socket is
made with ``IPPROTO_TCP``, so accepted connections get ``TCP_NODELAY`` as with one worker.
"""

from __future__ import annotations

import socket

from uvicorn import Config


class TcpConfig(Config):
    """A uvicorn config whose shared listening socket is an explicit TCP socket."""

    def bind_socket(self) -> socket.socket:
        family = socket.AF_INET6 if self.host and ":" in self.host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((self.host, self.port))
        except OSError as exc:
            sock.close()
            raise SystemExit(f"cannot listen on {self.host}:{self.port}: {exc}") from None
        sock.set_inheritable(True)
        return sock
