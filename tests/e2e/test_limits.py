"""The limits a public endpoint needs, on a real ``consent-ledger serve`` with small settings.

Slow and idle clients are cut off after their timeout without holding up anyone else; past the
connection cap and the appends in flight the answer is 503 with Retry-After; bodies stop being
read at their limit, JSON nesting is bounded, a client that hangs up is logged as such in one
line, and a storm of retries stores every event once with the server's memory bounded.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from ledger.config import Settings, generate_keys, open_ledger
from tests import facts
from tests.support.limited_server import LimitedServer, serving


@pytest.fixture
def sqlite_settings(tmp_path: Path) -> Settings:
    """For limits that do not touch storage: one backend is enough."""
    settings = Settings(data_dir=tmp_path / "data")
    generate_keys(settings)
    return settings


def read_response(sock: socket.socket, timeout: float = 10) -> tuple[int, dict[str, str], bytes]:
    """Status, headers and body of the one response on ``sock`` (closed after it)."""
    sock.settimeout(timeout)
    data = b""
    with contextlib.suppress(ConnectionResetError):
        while chunk := sock.recv(65536):
            data += chunk
            head, _, body = data.partition(b"\r\n\r\n")
            if _ and b"content-length" in head.lower():
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                if len(body) >= length:
                    break
    head, _, body = data.partition(b"\r\n\r\n")
    assert head, "no response"
    lines = head.decode().split("\r\n")
    headers = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return int(lines[0].split()[1]), headers, body


def post_head(server: LimitedServer, path: str, *headers: str) -> bytes:
    lines = [
        f"POST {path} HTTP/1.1",
        "Host: 127.0.0.1",
        f"Authorization: Bearer {server.token}",
        "Content-Type: application/json",
        *headers,
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


# -- bodies ------------------------------------------------------------------------------------


def test_bodies_stop_being_read_at_the_limit_and_json_nesting_is_bounded(
    sqlite_settings: Settings,
) -> None:
    with serving(sqlite_settings, max_body_bytes=65536, max_json_depth=8) as server:
        with server.connect() as sock:
            sock.sendall(post_head(server, "/v1/events", "Content-Length: 1073741824"))
            status, headers, body = read_response(sock)  # without sending any of the body
        assert status == 413 and headers["content-type"] == "application/problem+json"
        problem = orjson.loads(body)
        assert problem["rule"] == "body_too_large" and "65536 bytes" in problem["detail"]

        with server.connect() as sock:
            sock.sendall(post_head(server, "/v1/events", "Transfer-Encoding: chunked"))
            chunk = b"[" + b" " * 8190 + b"]"
            for _ in range(10):  # 80 KiB
                sock.sendall(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            status, _, body = read_response(sock)
        assert status == 413 and orjson.loads(body)["rule"] == "body_too_large"

        # A client that goes on sending: the server stops reading, the memory stays put.
        before = server.rss_kib()
        sent = 0
        with server.connect() as sock:
            sock.sendall(post_head(server, "/v1/events", "Transfer-Encoding: chunked"))
            block = b" " * (1024 * 1024)
            frame = f"{len(block):x}\r\n".encode() + block + b"\r\n"
            sock.settimeout(5)
            with contextlib.suppress(OSError):
                while sent < 256 * 1024 * 1024:
                    sock.sendall(frame)
                    sent += len(block)
        assert sent < 64 * 1024 * 1024  # cut off long before the client was done
        assert server.rss_kib() - before < 30 * 1024

        # Every route that takes JSON bounds its nesting.
        with server.client() as http:
            for path in ("/v1/events", "/v1/incidents"):
                for depth in (9, 5000):
                    answer = http.post(path, content=nested(depth))
                    assert answer.status_code == 400, (path, depth, answer.text)
                    problem = answer.json()
                    assert problem["rule"] == "json_too_deep"
                    assert "deeper than 8" in problem["detail"]
            # A string holding brackets is not nesting.
            purposes = [dict(p, name="[[[[[[[[[[" + str(p["name"]) + "]]") for p in facts.PURPOSES]
            assert http.post("/v1/events", json=facts.policy(purposes=purposes)).status_code == 201


# -- appends in flight and connections -------------------------------------------------------


def test_appends_past_the_limit_in_flight_get_503_with_retry_after(
    sqlite_settings: Settings,
) -> None:
    with serving(sqlite_settings, max_inflight_appends=2) as server:
        holders = [server.connect() for _ in range(2)]
        try:
            for sock in holders:  # each holds a slot while its body does not come
                sock.sendall(post_head(server, "/v1/events", "Content-Length: 1000"))
            time.sleep(0.5)
            with server.client() as http:
                busy = http.post("/v1/events", json=facts.policy())
                assert busy.status_code == 503 and busy.headers["retry-after"] == "1"
                assert busy.headers["content-type"] == "application/problem+json"
                assert "2 appends at a time" in busy.json()["detail"]
                assert http.get("/healthz").status_code == 200  # reads are not appends
        finally:
            for sock in holders:
                sock.close()
        time.sleep(0.5)
        with server.client() as http:
            assert http.post("/v1/events", json=facts.policy()).status_code == 201


def _eventually(condition: Callable[[], bool], seconds: float) -> bool:
    """True once ``condition`` holds, polled until ``seconds`` have passed."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return condition()
        time.sleep(0.02)
    return True


def test_past_the_connection_cap_503_and_idle_connections_are_closed(
    sqlite_settings: Settings,
) -> None:
    with serving(sqlite_settings, max_connections=8, header_timeout=3) as server:
        for _ in range(3):
            assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
        files_before = server.open_files()
        idle = [server.connect() for _ in range(8)]
        try:
            # Polled, not slept: on a loaded machine the server may take a moment to accept.
            assert _eventually(lambda: server.open_files() >= files_before + 8, 2.0)
            with server.connect() as extra:
                extra.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
                status, headers, body = read_response(extra)
            assert status == 503 and headers["retry-after"] == "1"
            assert orjson.loads(body)["title"] == "Too many connections"
            # A flood: past twice the cap, connections are closed at once, unanswered.
            flood = [server.connect() for _ in range(30)]
            assert _eventually(lambda: server.open_files() <= files_before + 2 * 8 + 2, 2.0)
            for sock in flood[10:]:
                sock.settimeout(5)
                with contextlib.suppress(ConnectionResetError):
                    assert sock.recv(100) == b""
                sock.close()
            for sock in flood[:10]:
                sock.close()
            for sock in idle:  # each idle connection is answered 408 and closed
                status, _, body = read_response(sock, timeout=5)
                assert status == 408 and "within 3 s" in orjson.loads(body)["detail"]
        finally:
            for sock in idle:
                sock.close()
        assert httpx.get(f"{server.url}/healthz", timeout=5).status_code == 200
        # The idle ones' sockets are gone.
        assert _eventually(lambda: server.open_files() <= files_before + 2, 5.0)


def test_a_slow_request_head_is_cut_off_without_holding_up_others(
    sqlite_settings: Settings,
) -> None:
    with serving(sqlite_settings, header_timeout=2) as server:
        slow = server.connect()
        slow.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()

        def trickle() -> None:
            with contextlib.suppress(OSError):
                for _ in range(40):
                    slow.send(b"X")
                    time.sleep(0.1)

        sender = threading.Thread(target=trickle)
        sender.start()
        try:
            with httpx.Client(base_url=server.url, timeout=5) as http:
                for _ in range(10):
                    began = time.monotonic()
                    assert http.get("/healthz").status_code == 200
                    assert time.monotonic() - began < 0.5
            status, _, _ = read_response(slow, timeout=5)
            assert status == 408 and 1.5 < time.monotonic() - started < 4
        finally:
            sender.join()
            slow.close()


def test_a_slow_body_gets_408_and_one_short_log_line(sqlite_settings: Settings) -> None:
    with serving(sqlite_settings, body_timeout=1) as server:
        with server.connect() as sock:
            sock.sendall(post_head(server, "/v1/events", "Content-Length: 1000") + b"[")
            status, _, body = read_response(sock, timeout=5)
        assert status == 408 and "within 1 s" in orjson.loads(body)["detail"]
        time.sleep(0.3)
        lines = [line for line in server.log().splitlines() if "/v1/events" in line]
        assert len(lines) == 1 and len(lines[0]) < 600, lines
        assert '"status":408' in lines[0] and "did not arrive in time" in lines[0]
        assert "Traceback" not in server.log()


def test_a_client_that_hangs_up_mid_body_is_logged_as_its_doing(
    sqlite_settings: Settings,
) -> None:
    with serving(sqlite_settings) as server:
        for _ in range(3):
            with server.connect() as sock:
                sock.sendall(post_head(server, "/v1/events", "Content-Length: 100000") + b"[")
                time.sleep(0.2)
        time.sleep(0.5)
        log = server.log()
        lines = [line for line in log.splitlines() if "/v1/events" in line]
        assert len(lines) == 3, log
        for line in lines:
            entry = orjson.loads(line)
            assert entry["status"] == 499 and entry["level"] == "info", line
            assert "closed the connection before its request was whole" in entry["message"]
        assert "Traceback" not in log and '"status":500' not in log


# -- a retry storm -----------------------------------------------------------------------------


def test_a_retry_storm_stores_every_event_once_with_memory_bounded(settings: Settings) -> None:
    pol = facts.policy()
    subjects = [facts.ref("user") for _ in range(40)]
    batches = [
        [facts.consent(s, pol["version"]) for s in subjects[i : i + 4]] for i in range(0, 40, 4)
    ]
    with serving(settings, max_inflight_appends=4) as server:
        with server.client() as http:
            assert http.post("/v1/events", json=pol).status_code == 201
            http.post("/v1/events", json=batches[0])  # warm up
        before = server.rss_kib()
        answers: list[int] = []

        def storm(seed: int) -> None:
            for round_ in range(6):
                # Most rounds give up quickly (the client times out and sends again).
                timeout = 0.005 * (1 + (seed + round_) % 5) if round_ < 5 else 60
                with server.client(timeout=timeout) as http:
                    for batch in batches[seed % 3 :] + batches[: seed % 3]:
                        try:
                            answers.append(http.post("/v1/events", json=batch).status_code)
                        except httpx.TimeoutException:
                            answers.append(0)

        threads = [threading.Thread(target=storm, args=(seed,)) for seed in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        # Every batch, sent again calmly (as Retry-After says, while requests the storm gave up
        # on still hold the slots), is recorded once: never a 409, never an error.
        with server.client() as http:
            for batch in batches:
                deadline = time.monotonic() + 30
                while (answer := http.post("/v1/events", json=batch)).status_code == 503:
                    assert time.monotonic() < deadline
                    time.sleep(float(answer.headers["retry-after"]))
                assert answer.status_code in (200, 201), answer.text
        assert set(answers) <= {0, 200, 201, 503}, set(answers)
        assert server.rss_kib() - before < 60 * 1024
        assert "Traceback" not in server.log()
    ledger = open_ledger(settings)
    try:
        ids = [fact["event_id"] for batch in batches for fact in batch]
        claims = ledger.ledger.select_claims(ids)
        assert len(claims) == len(ids)
        records = list(ledger.ledger.select_record_rows())
        stored_ids: list[Any] = [orjson.loads(r.body)["event_id"] for r in records]
        assert sorted(i for i in stored_ids if i in set(ids)) == sorted(ids)  # each once
        assert ledger.head() == 1 + 2 * len(ids)  # the policy, each subject and its consent
    finally:
        ledger.close()
