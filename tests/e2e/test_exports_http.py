"""Exports over HTTP end to end (a real ``consent-ledger serve``): each scope kind is started,
waited for, downloaded (whole and by range) and verified with the stand-alone verifier; unknown
names are 404 with the CLI's message; the scope and the owner are checked, and a refused
request leaves nothing on the record; a server killed in the middle of a job serves nothing
half-written and makes the bundle again after its restart."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given
from hypothesis import settings as examples
from hypothesis import strategies as st

from api.cli import cli
from api.client import LedgerAPIError, LedgerClient
from ledger.config import Settings, open_ledger
from ledger.verifier.bundle import MANIFEST, BundleFiles, verify_bundle
from ledger.verifier.entry import parse_body
from ledger.verifier.note import parse_verifier_key
from tests import facts
from tests.e2e.conftest import Server
from tests.support.processes import ROOT, add_client, free_port
from tests.support.serve import serve
from tests.support.waiting import wait_until

PURPOSE = "inquiry 2026-17 of the data protection authority"


def problem_of(response: httpx.Response) -> dict[str, Any]:
    assert response.headers["content-type"].startswith("application/problem+json"), response.text
    body: dict[str, Any] = response.json()
    assert body["status"] == response.status_code
    return body


def bearer(token: str, url: str) -> httpx.Client:
    return httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30)


def finished(http: httpx.Client, job_id: str, seconds: float = 60) -> dict[str, Any]:
    """The job once it is done (or failed, expired)."""

    def ended() -> dict[str, Any]:
        job: dict[str, Any] = http.get(f"/v1/exports/{job_id}").json()
        return job if job["state"] in ("done", "failed", "expired") else {}

    return wait_until(ended, f"export {job_id} did not finish", seconds, 0.1)


def recorded_facts(http: httpx.Client) -> dict[str, str]:
    """A subject with consent, a recipient with a disclosure of them, an incident."""
    pol = facts.policy()
    subject, recipient, incident = facts.ref("user"), facts.ref("rcpt"), facts.ref("inc")
    request = facts.ref("req")
    batch = [
        pol,
        facts.recipient(recipient),
        facts.consent(subject, pol["version"]),
        facts.disclosure(recipient, [subject], pol["version"]),
        facts.incident(incident),
        facts.request(subject, request),
    ]
    assert http.post("/v1/events", json=batch).status_code == 201
    return {"subject": subject, "recipient": recipient, "incident": incident, "request": request}


def access_reads(raw_db: Any) -> list[dict[str, Any]]:
    """The data of every ``personal_data.accessed`` in the log (its subjects stay sealed)."""
    rows = raw_db.execute("SELECT body FROM ledger_events ORDER BY seq")
    bodies = [parse_body(bytes(row[0])) for row in rows]
    return [b["data"] for b in bodies if b["type"] == "personal_data.accessed"]


def test_each_scope_kind_is_exported_downloaded_and_verified(
    server: Server, raw_db: Any, tmp_path: Path
) -> None:
    token = add_client(server.settings, "regulator", "exports:create")
    with server.client() as writer:
        names = recorded_facts(writer)
        keys = writer.get("/v1/keys").text
    scopes = {
        "subject": {"kind": "subject", "subject_ref": names["subject"]},
        "recipient": {"kind": "recipient", "recipient_id": names["recipient"]},
        "incident": {"kind": "incident", "incident_id": names["incident"]},
        "period": {
            "kind": "period",
            "from": "2020-01-01T00:00:00+02:00",
            "to": "2200-01-01T00:00:00Z",
        },
        "all": {"kind": "all"},
    }
    trusted = [parse_verifier_key(line) for line in keys.splitlines()]
    with bearer(token, server.url) as http:
        started = {}
        for kind, scope in scopes.items():
            response = http.post("/v1/exports", json={"scope": scope, "purpose": PURPOSE})
            assert response.status_code == 202, response.text
            job = response.json()
            assert (
                response.headers["location"] == job["links"]["self"] == f"/v1/exports/{job['id']}"
            )
            assert job["state"] in ("queued", "running")
            started[kind] = job["id"]
        for kind, job_id in started.items():
            job = finished(http, job_id)
            assert job["state"] == "done", job["failure"]
            assert job["progress"]["phase"] == "verify"
            assert job["links"]["bundle"] == f"/v1/exports/{job_id}/bundle"
            download = http.get(job["links"]["bundle"])
            assert download.status_code == 200
            assert download.headers["content-type"] == "application/zip"
            assert download.headers["etag"] == f'"{job["manifest_sha256"]}"'
            assert "attachment" in download.headers["content-disposition"]
            assert int(download.headers["content-length"]) == job["bytes"]
            path = tmp_path / f"{kind}.zip"
            path.write_bytes(download.content)
            report = verify_bundle(path, trusted, jobs=1)
            assert report.scope["kind"] == kind
            with BundleFiles(path).open(MANIFEST) as manifest:
                assert hashlib.sha256(manifest.read()).hexdigest() == job["manifest_sha256"]
            # The subject's bundle holds their own reference, opened; no other scope does.
            with zipfile.ZipFile(path) as archive:
                opened = b"".join(archive.read(n) for n in archive.namelist())
            assert (names["subject"].encode() in opened) == (kind == "subject")
        # A range of the bundle, and the stand-alone verifier run as a regulator would.
        whole = http.get(f"/v1/exports/{started['all']}/bundle").content
        part = http.get(f"/v1/exports/{started['all']}/bundle", headers={"Range": "bytes=10-99"})
        assert part.status_code == 206 and part.content == whole[10:100]
        assert part.headers["content-range"] == f"bytes 10-99/{len(whole)}"
    (tmp_path / "keys.txt").write_text(keys)
    verified = subprocess.run(
        [
            sys.executable,
            "-m",
            "ledger.verifier",
            str(tmp_path / "all.zip"),
            "--key",
            str(tmp_path / "keys.txt"),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert verified.returncode == 0 and "VERIFIED" in verified.stdout, verified.stderr
    # Each export is on the record, once, with its digest and the regulator's purpose.
    reads = {r["details"]["export_id"]: r for r in access_reads(raw_db)}
    assert set(reads) == set(started.values())
    for kind, job_id in started.items():
        assert reads[job_id]["client"] == "regulator" and reads[job_id]["purpose"] == PURPOSE
        assert reads[job_id]["details"]["scope"].startswith(kind)
        if kind == "subject":
            assert reads[job_id]["count"] == 1 and reads[job_id]["details"]["scope"] == "subject"
        elif kind == "all":
            assert "count" not in reads[job_id]  # a bundle of the whole log is not counted
        else:
            assert isinstance(reads[job_id]["count"], int)  # exact: test_export_jobs.py


def test_unknown_names_are_404_with_the_message_the_cli_prints(server: Server, raw_db: Any) -> None:
    token = add_client(server.settings, "regulator", "exports:create")
    with server.client() as writer:
        recorded_facts(writer)
    unknown = [
        ({"kind": "recipient", "recipient_id": "rcpt-typo"}, ["--recipient", "rcpt-typo"]),
        ({"kind": "incident", "incident_id": "inc-typo"}, ["--incident", "inc-typo"]),
        ({"kind": "subject", "subject_ref": "nobody-we-know"}, ["--subject", "nobody-we-know"]),
    ]
    storage = ["--data-dir", str(server.settings.data_dir)]
    if server.settings.database_url:
        storage += ["--database-url", server.settings.database_url]
    env = {"CONSENT_LEDGER_DATABASE_SCHEMA": server.settings.database_schema}
    with bearer(token, server.url) as http:
        for scope, options in unknown:
            response = http.post("/v1/exports", json={"scope": scope, "purpose": PURPOSE})
            problem = problem_of(response)
            assert response.status_code == 404
            assert problem["rule"] == "scope_not_found"
            assert problem["detail"].startswith("nothing to export: no ")
            out = Path(server.settings.data_dir) / "cli-export.zip"
            result = CliRunner().invoke(
                cli, [*storage, "export", *options, "--out", str(out)], env=env
            )
            assert result.exit_code == 1
            assert problem["detail"] in result.output
            assert not out.exists()
    assert access_reads(raw_db) == []


BAD_BODIES: list[tuple[dict[str, Any], str]] = [
    ({"scope": {"kind": "all"}}, "missing"),
    ({"scope": {"kind": "all"}, "purpose": "   "}, "blank"),
    ({"scope": {"kind": "all"}, "purpose": "two\nlines"}, "control_character"),
    ({"scope": {"kind": "all"}, "purpose": "x" * 501}, "too_long"),
    ({"scope": {"kind": "everything"}, "purpose": PURPOSE}, "union_tag_invalid"),
    ({"scope": {"kind": "all", "extra": 1}, "purpose": PURPOSE}, "extra_forbidden"),
    (
        {
            "scope": {
                "kind": "period",
                "from": "2026-02-01T00:00:00Z",
                "to": "2026-01-01T00:00:00Z",
            },
            "purpose": PURPOSE,
        },
        "value_error",
    ),
    (
        {
            "scope": {
                "kind": "period",
                "from": "0001-01-01T00:00:00Z",
                "to": "2026-01-01T00:00:00Z",
            },
            "purpose": PURPOSE,
        },
        "time_out_of_range",
    ),
    (
        {"scope": {"kind": "recipient", "recipient_id": "a b"}, "purpose": PURPOSE},
        "string_pattern_mismatch",
    ),
    (
        {"scope": {"kind": "all"}, "purpose": PURPOSE, "answers_request": "req-1"},
        "answers_request_needs_subject",
    ),
]
"""Bodies the API refuses, and the rule it names."""


def test_bad_bodies_are_refused_naming_the_rule(server: Server, raw_db: Any) -> None:
    token = add_client(server.settings, "regulator", "exports:create")
    with bearer(token, server.url) as http:
        for body, rule in BAD_BODIES:
            response = http.post("/v1/exports", json=body)
            assert response.status_code == 422, response.text
            rules = [e["rule"] for e in problem_of(response)["errors"]]
            assert rule in rules, (body, rules)
        for content in (b"", b"[]", b"{", b'{"scope": null, "purpose": 1}'):
            response = http.post("/v1/exports", content=content)
            assert response.status_code in (400, 422), response.text
            problem_of(response)
    assert access_reads(raw_db) == []


JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=3)
    ),
    max_leaves=8,
)
BODIES = st.one_of(
    JSON,
    st.fixed_dictionaries(
        {
            "scope": st.fixed_dictionaries(
                {
                    "kind": st.sampled_from(
                        ["subject", "recipient", "incident", "period", "all", ""]
                    )
                },
                optional={
                    "subject_ref": JSON,
                    "recipient_id": JSON,
                    "incident_id": JSON,
                    "from": st.text(max_size=40) | JSON,
                    "to": st.text(max_size=40) | JSON,
                },
            ),
            "purpose": st.text(max_size=600) | JSON,
        },
        optional={"answers_request": JSON},
    ),
)


def test_no_body_gets_an_internal_error(server: Server) -> None:
    token = add_client(server.settings, "fuzzer", "exports:create")
    with bearer(token, server.url) as http:

        @examples(
            max_examples=150,
            deadline=None,
            suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
        )
        @given(body=BODIES)
        def answered(body: Any) -> None:
            response = http.post("/v1/exports", json=body)
            assert response.status_code in (202, 404, 422, 429), response.text
            if response.status_code != 202:
                problem_of(response)

        answered()
        # A lone surrogate (valid JSON, not storable text) and a NUL.
        for raw in (
            b'{"scope": {"kind": "all"}, "purpose": "\\ud800 why"}',
            b'{"scope": {"kind": "all"}, "purpose": "why\\u0000"}',
            b'{"scope": {"kind": "subject", "subject_ref": "u\\udfff"}, "purpose": "why"}',
        ):
            response = http.post("/v1/exports", content=raw)
            assert response.status_code == 422, response.text


def test_scopes_and_owners_are_checked_and_a_refusal_records_nothing(
    server: Server, raw_db: Any
) -> None:
    mine = add_client(server.settings, "regulator", "exports:create")
    theirs = add_client(server.settings, "auditor", "exports:create")
    with server.client() as writer:
        names = recorded_facts(writer)
    body = {"scope": {"kind": "subject", "subject_ref": names["subject"]}, "purpose": PURPOSE}
    with server.client("writer") as http:  # events:write, state:read, history:read
        refused = http.post("/v1/exports", json=body)
        assert refused.status_code == 403 and "exports:create" in problem_of(refused)["detail"]
    with server.client(None) as http:
        assert http.post("/v1/exports", json=body).status_code == 401
    assert access_reads(raw_db) == []
    with bearer(mine, server.url) as http:
        job = http.post("/v1/exports", json=body).json()
        finished(http, job["id"])
    with bearer(theirs, server.url) as http:
        for path in (f"/v1/exports/{job['id']}", f"/v1/exports/{job['id']}/bundle"):
            response = http.get(path)
            assert response.status_code == 404
            assert problem_of(response)["rule"] == "export_not_found"
        # The same answer as for a job that never was.
        never = http.get("/v1/exports/00000000-0000-4000-8000-000000000000")
        assert (
            problem_of(never)["title"] == problem_of(http.get(f"/v1/exports/{job['id']}"))["title"]
        )
        assert http.get("/v1/exports/not-a-job").status_code == 400  # a bad path parameter
    with server.client("writer") as http:
        assert http.get(f"/v1/exports/{job['id']}").status_code == 403
    with server.client("admin") as http:
        assert http.get(f"/v1/exports/{job['id']}").json()["state"] == "done"
    assert len(access_reads(raw_db)) == 1


def trusted(server: Server) -> list[Any]:
    with server.client(None) as http:
        return [parse_verifier_key(line) for line in http.get("/v1/keys").text.splitlines()]


def test_an_access_request_can_cite_the_subjects_bundle(server: Server, tmp_path: Path) -> None:
    token = add_client(server.settings, "privacy-office", "exports:create")
    with server.client() as writer:
        names = recorded_facts(writer)
    request_id = names["request"]
    scope = {"kind": "subject", "subject_ref": names["subject"]}
    with LedgerClient(server.url, token) as ledger:
        purpose = f"answer access request {request_id}"
        started = ledger.start_export(scope, purpose, answers_request=request_id)
        assert ledger.export_status(started["id"])["answers_request"] == request_id
        with bearer(token, server.url) as http:
            job = finished(http, started["id"])
        digest = ledger.download_export(job["id"], tmp_path / "mine.zip")
        with pytest.raises(FileExistsError):
            ledger.download_export(job["id"], tmp_path / "mine.zip")
        with pytest.raises(LedgerAPIError) as missing:
            ledger.export_status("00000000-0000-4000-8000-000000000000")
        assert missing.value.status == 404
    assert digest == job["manifest_sha256"]
    assert verify_bundle(tmp_path / "mine.zip", trusted(server), jobs=1).entries >= 1
    assert job["cite"] == {
        "request_id": request_id,
        "bundle_manifest_sha256": job["manifest_sha256"],
    }
    fulfilled = {
        "type": "request.fulfilled",
        "event_id": facts.ref("evt"),
        "occurred_at": facts.now(),
        "request_id": request_id,
        "subject": names["subject"],
        **{k: v for k, v in job["cite"].items() if k != "request_id"},
    }
    with server.client() as writer:
        response = writer.post("/v1/events", json=fulfilled)
        assert response.status_code == 201, response.text


def test_a_server_killed_mid_export_serves_nothing_half_written_and_makes_it_again(
    settings: Settings, raw_db: Any, tmp_path: Path
) -> None:
    ledger = open_ledger(settings)
    try:
        pol = facts.policy()
        ledger.append([pol])
        for _ in range(6):
            ledger.append([facts.consent(facts.ref("u"), pol["version"]) for _ in range(1000)])
    finally:
        ledger.close()
    token = add_client(settings, "regulator", "exports:create")
    port = free_port()
    with serve(settings, port) as first, bearer(token, first.url) as http:
        job_id = http.post(
            "/v1/exports", json={"scope": {"kind": "all"}, "purpose": PURPOSE}
        ).json()["id"]

        def writing() -> dict[str, Any]:
            job: dict[str, Any] = http.get(f"/v1/exports/{job_id}").json()
            return job if job["state"] == "running" and job["progress"]["done"] > 0 else {}

        running = wait_until(writing, "the export did not start writing", 60, 0.02)
        assert running["attempts"] == 1
        assert problem_of(http.get(f"/v1/exports/{job_id}/bundle"))["rule"] == "bundle_not_ready"
        os.kill(first.process.pid, signal.SIGKILL)
        first.process.wait()
    exports = settings.data_dir / "exports"
    assert not (exports / f"{job_id}.zip").exists()
    with serve(settings, port) as second, bearer(token, second.url) as http:
        job = finished(http, job_id, 120)
        assert job["state"] == "done", job["failure"]
        if job["attempts"] == 1:
            pytest.fail("the first attempt finished before the kill: use a larger log")
        assert job["attempts"] == 2
        path = tmp_path / "all.zip"
        path.write_bytes(http.get(f"/v1/exports/{job_id}/bundle").content)
        keys = http.get("/v1/keys").text
    verify_bundle(path, [parse_verifier_key(k) for k in keys.splitlines()], jobs=1)
    assert not (exports / "work").exists() or not any((exports / "work").iterdir())
    assert [r["details"]["export_id"] for r in access_reads(raw_db)] == [job_id]
