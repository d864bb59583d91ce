"""``consent-ledger demo --serve`` prints the console's address and a token that signs in to it,
and the token opens every page: the overview, the demo's incident and its people."""

from __future__ import annotations

import re
from pathlib import Path

import httpx

from ledger.config import Settings, generate_keys
from tests.support.processes import demo_serving, free_port
from tests.support.waiting import answers_healthz, wait_until


def test_demo_serve_prints_the_console_and_a_token_that_opens_it(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    generate_keys(settings)
    port = free_port()
    with demo_serving(settings, port, users=20) as printed:
        said = printed.until(lambda line: line.startswith("cl_"))
        address = next(line for line in said if line.startswith("console: "))
        url = re.search(r"http://\S+/console", address)
        assert url is not None and url.group(0) == f"http://127.0.0.1:{port}/console"
        token = said[-1]
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: answers_healthz(base), "the server did not start", seconds=60)
        with httpx.Client(base_url=base, timeout=30) as http:
            form = http.get("/console/login")
            csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
            assert csrf is not None
            signed = http.post("/console/login", data={"csrf": csrf.group(1), "token": token})
            assert signed.status_code == 303
            assert http.get("/console").status_code == 200
            assert http.get("/console/incidents/inc-helpline-01").status_code == 200
            assert http.get("/console/incidents/inc-helpline-01/people").status_code == 200
