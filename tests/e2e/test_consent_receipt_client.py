"""A consent receipt through the Python client from a served ledger (``consent-ledger serve``,
both backends): ``LedgerClient.consent_receipt`` gives the receipt, it checks out offline under
the ledger's key, and the read is in the log."""

from __future__ import annotations

import pytest

from api.client import LedgerAPIError, LedgerClient
from ledger.verifier.note import parse_verifier_key
from ledger.verifier.receipt import check_receipt
from tests import facts
from tests.e2e.conftest import Server


def test_the_client_fetches_a_receipt_that_checks_out(server: Server) -> None:
    subject = facts.ref("user")
    with LedgerClient(server.url, server.tokens["writer"]) as writer:
        pol = facts.policy()
        given = facts.consent(subject, pol["version"], contact="someone@example.org")
        _, receipt = writer.append_batch([pol, given])
        keys = [parse_verifier_key(k) for k in writer.verifier_keys()]
        with pytest.raises(LedgerAPIError) as refused:
            writer.consent_receipt(receipt.seq)  # a writer holds no receipts:read
        assert refused.value.status == 403
    with LedgerClient(server.url, server.tokens["admin"]) as admin:  # admin implies it
        document = admin.consent_receipt(receipt.seq, purpose="a copy for the person")
        read = admin.event(admin.ready()["head"])  # the read, recorded before the answer
    report = check_receipt(document, keys)
    assert report.seq == receipt.seq and report.type == "consent.given"
    assert document["record"]["personal_data"]["contact"] == "someone@example.org"
    assert document["record"]["record_id"] == receipt.event_hash
    assert read["type"] == "personal_data.accessed"
    assert read["data"]["action"] == "consent_receipt"
    assert read["data"]["purpose"] == "a copy for the person"
