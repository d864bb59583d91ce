"""A recipient's webhook endpoint on loopback, for tests: http.server in a thread that keeps
every request it gets and answers from a script (fail the first N, then 2xx, with the headers
and body ``reply`` makes of the request, if given: a signed acknowledgement)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    url: str
    fail_first: int = 0
    """Answer 503 to this many requests before answering 204."""
    received: list[Received] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    reply: Callable[[Received], tuple[Mapping[str, str], bytes]] | None = None
    """The headers and body of a 2xx answer (none: 204, empty)."""

    def answer(self, request: Received) -> int:
        with self.lock:
            self.received.append(request)
            return 503 if len(self.received) <= self.fail_first else 204

    def ids(self) -> list[str]:
        with self.lock:
            return [r.headers["webhook-id"] for r in self.received]


@contextmanager
def webhook_receiver(
    fail_first: int = 0, reply: Callable[[Received], tuple[Mapping[str, str], bytes]] | None = None
) -> Iterator[Receiver]:
    """A receiver listening on 127.0.0.1 (a free port) until the block ends."""
    holder: list[Receiver] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("content-length", "0"))
            body = self.rfile.read(length)
            headers = {k.lower(): v for k, v in self.headers.items()}
            received = Received(self.path, headers, body)
            status = holder[0].answer(received)
            answer: tuple[Mapping[str, str], bytes] = ({}, b"")
            if status == 204 and holder[0].reply is not None:
                status, answer = 200, holder[0].reply(received)
            self.send_response(status)
            for name, value in answer[0].items():
                self.send_header(name, value)
            self.send_header("content-length", str(len(answer[1])))
            self.end_headers()
            self.wfile.write(answer[1])

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    url = f"http://127.0.0.1:{server.server_address[1]}/hook"
    holder.append(Receiver(url, fail_first, reply=reply))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield holder[0]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
