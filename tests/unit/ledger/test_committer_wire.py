"""What travels between a worker and the committer process arrives as it was sent."""

from __future__ import annotations

import pickle
from pathlib import Path
from uuid import UUID

import pytest
from eventsourcing.persistence import IntegrityError
from hypothesis import given
from hypothesis import strategies as st

from ledger.committer import (
    ADDRESS_VARIABLE,
    CommitterAddress,
    decode_outcome,
    decode_work,
    encode_outcome,
    encode_work,
)
from ledger.errors import StorageError, SubjectErasedError
from ledger.log_reads import LogRecord
from ledger.mapper import LedgerStoredEvent
from ledger.unit_of_work import Claim, UnitOfWork

text = st.text(max_size=40)  # any Unicode, surrogates excepted (they cannot be encoded)
events = st.builds(
    LedgerStoredEvent,
    originator_id=st.uuids(),
    originator_version=st.integers(min_value=0, max_value=2**63 - 1),
    topic=text,
    state=st.binary(max_size=2000),
    scopes=st.lists(text, max_size=5).map(tuple),
)


@st.composite
def units(draw: st.DrawFn) -> UnitOfWork:
    stored = draw(st.lists(events, min_size=1, max_size=20))
    claims = [
        Claim(draw(text), draw(st.binary(min_size=32, max_size=32)), position)
        for position in draw(st.lists(st.integers(0, len(stored) - 1), max_size=len(stored)))
    ]
    return UnitOfWork(
        stored_events=stored,
        claims=claims,
        new_keys=draw(st.dictionaries(text, st.binary(max_size=80), max_size=5)),
        new_names=draw(st.dictionaries(text, text, max_size=5)),
        sealed_under=draw(st.frozensets(text, max_size=5)),
        erase=draw(st.frozensets(text, max_size=5)),
        lifecycles=draw(st.dictionaries(text, text, max_size=5)),
    )


@given(units())
def test_a_unit_of_work_arrives_whole(work: UnitOfWork) -> None:
    arrived = decode_work(pickle.loads(pickle.dumps(encode_work(work))))
    assert arrived == work  # every field, the events' scopes included
    assert [getattr(e, "scopes", None) for e in arrived.stored_events] == [
        getattr(e, "scopes", None) for e in work.stored_events
    ]


def test_an_event_named_by_text_travels_as_its_uuid() -> None:
    event = LedgerStoredEvent(
        originator_id="12345678-1234-5678-1234-567812345678",
        originator_version=3,
        topic="t",
        state=b"{}",
    )
    arrived = decode_work(encode_work(UnitOfWork([event])))
    assert arrived.stored_events[0].originator_id == UUID("12345678-1234-5678-1234-567812345678")


@given(units(), st.integers(1, 2**40))
def test_the_records_come_back_with_the_bodies_the_worker_holds(
    work: UnitOfWork, first: int
) -> None:
    records = [
        LogRecord(
            seq=first + i,
            originator_id=str(e.originator_id),
            originator_version=e.originator_version,
            topic=e.topic,
            entry=bytes([i % 256]) * 40,
            body=e.state,
            signature=bytes([(i + 1) % 256]) * 64,
            key_id="k1",
        )
        for i, e in enumerate(work.stored_events)
    ]
    answer = pickle.loads(pickle.dumps(encode_outcome(records)))
    assert decode_outcome(work, answer) == records


def test_each_refusal_comes_back_as_the_error_it_was() -> None:
    work = UnitOfWork([LedgerStoredEvent(UUID(int=1), 1, "t", b"{}")])
    erased = decode_outcome(work, encode_outcome(SubjectErasedError(["p-2", "p-1"])))
    assert isinstance(erased, SubjectErasedError)
    assert erased.pseudonyms == ["p-1", "p-2"]
    clash = decode_outcome(work, encode_outcome(IntegrityError("event id taken")))
    assert isinstance(clash, IntegrityError)
    assert str(clash) == "event id taken"
    for other in (StorageError("disk full"), RuntimeError("boom")):
        failed = decode_outcome(work, encode_outcome(other))
        assert isinstance(failed, StorageError)
        assert str(other) in str(failed)


def test_an_answer_for_other_events_is_a_storage_error_not_a_receipt() -> None:
    work = UnitOfWork([LedgerStoredEvent(UUID(int=1), 1, "t", b"{}")] * 2)
    answer = ("ok", [(1, b"e", b"s")], "k1")  # one record for two events
    assert isinstance(decode_outcome(work, answer), StorageError)


def test_a_committer_address_naming_no_key_file_is_refused_at_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ADDRESS_VARIABLE, str(tmp_path / "nowhere.key"))
    with pytest.raises(StorageError, match="names no committer key file"):
        CommitterAddress.from_environment()
    monkeypatch.delenv(ADDRESS_VARIABLE)
    assert CommitterAddress.from_environment() is None
