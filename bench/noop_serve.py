"""Serve ``bench/noop_app.py`` as ``consent-ledger serve`` serves the API, for the no-op baseline.

One worker: ``uvicorn.run``. Several: uvicorn's supervisor with each worker listening on a
socket of its own (``api.http.listening.TcpConfig``), exactly as ``serve --workers N`` does, so the
baseline and the ledger spread connections over their workers the same way.

    .venv/bin/python bench/noop_serve.py --port 8001 --workers 2
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

import uvicorn
from uvicorn.supervisors import Multiprocess

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))  # workers find noop_app (spawned workers inherit sys.path)
sys.path.insert(1, str(BENCH.parent))

from api.http.listening import TcpConfig  # noqa: E402


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--workers", type=int, default=1)
    args = parser.parse_args(argv)
    options = dict(
        host="127.0.0.1",
        port=args.port,
        workers=args.workers,
        access_log=False,
        log_level="warning",
    )
    if args.workers == 1:
        uvicorn.run("noop_app:app", **options)
        return
    config = TcpConfig("noop_app:app", **options)
    with contextlib.suppress(KeyboardInterrupt):
        Multiprocess(config, sockets=[config.bind_socket()]).run()


if __name__ == "__main__":
    main()
