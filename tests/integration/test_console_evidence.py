"""The console's evidence pages over plain HTTP, on both backends: a checkpoint kept from an
earlier day checks out against the log now, and one that was edited, signed by another key or
is not a checkpoint at all is named as such; entries show their verified inclusion; the
disclosure filter refuses odd values with a page, never a 500."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nacl.signing import SigningKey

from api.http.app import ServerSettings, create_app, open_client_database
from api.token_store import Scope, SqlTokenStore
from ledger.application import LedgerApplication
from ledger.config import Settings
from ledger.verifier.note import sign_note
from tests import facts
from tests.support.in_process import InProcess


@pytest.fixture
def console(settings: Settings) -> Iterator[tuple[InProcess, LedgerApplication]]:
    cli = SqlTokenStore(open_client_database(settings))
    token = cli.add("auditor", [Scope.READ_HISTORY])[1]
    app = create_app(settings, server=ServerSettings(projections=True, signer=False))
    http = InProcess(app)
    try:
        page = http.get("/console/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
        assert csrf is not None
        signed = http.post("/console/login", data={"csrf": csrf.group(1), "token": token})
        assert signed.status_code == 303
        yield http, app.state.ledger
    finally:
        http.close()
        cli.db.close()


def _check(http: InProcess, pasted: str) -> tuple[int, str]:
    page = http.get("/console/evidence")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert csrf is not None
    answer = http.post(
        "/console/evidence/consistency", data={"csrf": csrf.group(1), "checkpoint": pasted}
    )
    found = re.search(r'id="consistency-result">\s*<p><strong>(.*?)</strong>', answer.text, re.S)
    assert found is not None, answer.text
    return answer.status_code, found.group(1)


def test_a_kept_checkpoint_checks_out_later_and_an_edited_one_does_not(
    console: tuple[InProcess, LedgerApplication],
) -> None:
    http, ledger = console
    ledger.append([facts.policy()])
    kept = ledger.sign_checkpoint()
    ledger.append([facts.policy(), facts.policy()])
    later = ledger.sign_checkpoint()
    assert later.size == kept.size + 2
    status, text = _check(http, kept.note.rstrip("\n"))  # as a text box sends it
    assert status == 200 and text.startswith("Consistent"), text
    assert f"{later.size} entries extends the pasted tree of {kept.size}" in text
    lines = kept.note.split("\n")
    lines[1] = str(kept.size + 1)  # the size edited: the signature no longer holds
    status, text = _check(http, "\n".join(lines))
    assert status == 422 and "not a checkpoint of this log" in text
    origin = kept.note.split("\n")[0]
    forged = sign_note(kept.note.split("\n\n")[0] + "\n", origin, SigningKey.generate())
    status, text = _check(http, forged)
    assert status == 422 and "not a checkpoint of this log" in text
    for junk in ("", "hello", "x" * 9000, "\x00\n\n"):
        status, _ = _check(http, junk)
        assert status == 422


def test_an_entry_shows_its_verified_inclusion(
    console: tuple[InProcess, LedgerApplication],
) -> None:
    http, ledger = console
    (receipt,) = ledger.append([facts.policy()])
    before = http.get(f"/console/evidence/entries/{receipt.seq}")
    assert before.status_code == 200 and "Not in a signed checkpoint yet" in before.text
    ledger.sign_checkpoint()
    after = http.get(f"/console/evidence/entries/{receipt.seq}")
    assert after.status_code == 200 and 'id="inclusion-result">Verified' in after.text
    for number in ("0", str(receipt.seq + 1), "-1", "abc", "9" * 40):
        assert http.get(f"/console/evidence/entries/{number}").status_code == 404, number
    moved = http.get("/console/evidence/entry", params={"seq": str(receipt.seq)})
    assert moved.status_code == 303
    assert moved.headers["location"] == f"/console/evidence/entries/{receipt.seq}"


@settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck))
@given(
    params=st.dictionaries(
        st.sampled_from(["recipient", "purpose", "verdict", "since", "until"]),
        st.text(max_size=40),
    )
)
def test_no_disclosure_filter_gets_a_500(
    console: tuple[InProcess, LedgerApplication], params: dict[str, str]
) -> None:
    http, _ = console
    answer = http.get("/console/disclosures", params=params)
    assert answer.status_code in (200, 422), answer.text
