"""What a reads process (``serve --role reads``) refuses, and its two settings.

The processes themselves, on both backends, are in tests/e2e/test_reads_process.py."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.http.reads import writer_only
from api.settings import ServerSettings
from ledger.config import SettingsError

READ_PATHS = [
    "/v1/consent/decision",
    "/v1/consent/state",
    "/v1/subjects/history",
    "/v1/events/12",
    "/v1/proofs/inclusion",
    "/v1/checkpoint",
    "/v1/notices",
    "/v1/exportsx",  # not the export jobs: FastAPI answers it (404)
    "/consoles",
    "/metrics",
    "/openapi.json",
]
WRITER_PATHS = ["/console", "/console/", "/console/subjects", "/v1/exports", "/v1/exports/j-1"]


@pytest.mark.parametrize("path", READ_PATHS)
@pytest.mark.parametrize("method", ["GET", "HEAD", "OPTIONS", "get"])
def test_reads_are_served(method: str, path: str) -> None:
    assert not writer_only(method, path)


@pytest.mark.parametrize("path", WRITER_PATHS)
def test_the_console_and_the_export_jobs_belong_to_the_writer_whatever_the_method(
    path: str,
) -> None:
    assert writer_only("GET", path)
    assert writer_only("HEAD", path)


@given(
    method=st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ", min_size=1, max_size=10).filter(
        lambda m: m not in {"GET", "HEAD", "OPTIONS"}
    ),
    path=st.sampled_from(READ_PATHS) | st.text(min_size=1).map(lambda t: "/" + t),
)
def test_every_other_method_is_a_write_on_every_path(method: str, path: str) -> None:
    assert writer_only(method, path)


def test_the_role_and_the_writers_address_are_read_and_checked() -> None:
    read = ServerSettings.from_env(
        {"CONSENT_LEDGER_ROLE": "READS", "CONSENT_LEDGER_WRITER_URL": "http://api:8000"}
    )
    assert (read.role, read.writer_url) == ("reads", "http://api:8000")
    assert (ServerSettings.from_env({}).role, ServerSettings.from_env({}).writer_url) == ("all", "")
    with pytest.raises(SettingsError, match="CONSENT_LEDGER_ROLE"):
        ServerSettings.from_env({"CONSENT_LEDGER_ROLE": "writes"})
    for bad in ("api:8000", "ftp://api", "http://api:8000/\n", "http://a b"):
        with pytest.raises(SettingsError, match="CONSENT_LEDGER_WRITER_URL"):
            ServerSettings.from_env({"CONSENT_LEDGER_WRITER_URL": bad})
    # A worker process reads back exactly what serve handed it.
    assert ServerSettings.from_env(read.environment()) == read
