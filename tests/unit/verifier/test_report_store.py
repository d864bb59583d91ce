"""The report's context on disk reads back as the dictionaries it replaces would have."""

from __future__ import annotations

import tempfile
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.verifier import bundle, report_store
from ledger.verifier.consent_rules import Age, Decision, Note
from ledger.verifier.report_store import ConsentReader, ConsentStore

NAMES = ["a", "b", "c", "é", "z-1", "00000000-0000-4000-8000-000000000001"]
SUBJECTS = st.sampled_from(NAMES)
PURPOSES = st.sampled_from(["marketing", "analytics", "ads"])
TEXT = st.text(max_size=8)
STEPS = st.lists(
    st.one_of(
        st.tuples(st.just("decide"), SUBJECTS, PURPOSES, st.sampled_from(["given", "withdrawn"])),
        st.tuples(st.just("note"), SUBJECTS, PURPOSES, st.one_of(st.none(), TEXT)),
        st.tuples(st.just("ref"), SUBJECTS, TEXT),
        st.tuples(st.just("age"), SUBJECTS, st.integers(0, 99), st.sampled_from(["1", "2", "3"])),
    ),
    max_size=60,
)


@settings(max_examples=150, deadline=None)
@given(steps=STEPS, batch=st.integers(1, 7))
def test_the_store_reads_back_what_dictionaries_would_hold(
    steps: list[tuple[object, ...]], batch: int
) -> None:
    """Decisions and notes by subject and purpose in log order, the first reference, the latest
    age by (attested at, seq), subjects and purposes sorted; whatever the batch size."""
    decisions: dict[tuple[str, str], tuple[Decision, ...]] = {}
    notes: dict[tuple[str, str], tuple[Note, ...]] = {}
    refs: dict[str, str] = {}
    ages: dict[str, Age] = {}
    original = report_store.BATCH
    report_store.BATCH = batch
    try:
        with tempfile.TemporaryDirectory() as scratch:
            store = ConsentStore(Path(scratch) / "context.sqlite3")
            for seq, step in enumerate(steps, start=1):
                kind, subject = step[0], str(step[1])
                if kind == "decide":
                    decision = Decision(seq, f"t{seq:03}", str(step[3]), "v1", None, seq % 2 == 0)
                    key = (subject, str(step[2]))
                    decisions[key] = (*decisions.get(key, ()), decision)
                    store.decide(*key, decision)
                elif kind == "note":
                    reason = None if step[3] is None else str(step[3])
                    note = Note(seq, f"t{seq:03}", "renewal_requested", "v1", (("reason", reason),))
                    key = (subject, str(step[2]))
                    notes[key] = (*notes.get(key, ()), note)
                    store.note(*key, note)
                elif kind == "ref":
                    ref = f"{step[2]}#{seq}"  # each differs: the first must stay
                    refs.setdefault(subject, ref)
                    store.see_ref(subject, ref, seq)
                else:
                    age = Age(int(str(step[2])), str(step[3]), seq)
                    known = ages.get(subject)
                    if known is None or (age.attested_at, age.seq) > (known.attested_at, known.seq):
                        ages[subject] = age
                    store.see_age(subject, age)
            store.seal()
            readers = [store.reader(), ConsentReader.open(store.path)]
            subjects = sorted({s for s, _ in decisions} | {s for s, _ in notes})
            for reader in readers:
                assert list(reader.subjects()) == subjects
                assert reader.any_subject() == bool(subjects)
                for parts in range(1, 6):
                    cuts = reader.cut(parts)
                    assert len(cuts) <= parts - 1 and cuts == sorted(set(cuts))
                    assert set(cuts) <= {s for s, _ in decisions}
                    ends: list[str | None] = [*cuts, None]
                    ranges = zip([None, *ends[:-1]], ends, strict=True)
                    covered = [s for a, b in ranges for s, _ in reader.consent_by_subject(a, b)]
                    assert covered == subjects
                held = dict(reader.consent_by_subject())
                assert list(held) == subjects
                for subject in subjects:
                    assert reader.ref(subject) == refs.get(subject)
                    assert reader.age(subject) == ages.get(subject)
                    purposes = {p for s, p in decisions | notes if s == subject}
                    assert set(held[subject]) == purposes
                    for purpose in purposes:
                        key = (subject, purpose)
                        assert held[subject][purpose] == (
                            decisions.get(key, ()),
                            notes.get(key, ()),
                        )
                        assert reader.decisions(*key) == decisions.get(key, ())
                # Ranges of subjects, as the worker processes read them, cover each once.
                cut = subjects[len(subjects) // 2] if subjects else None
                halves = [*reader.consent_by_subject(None, cut), *reader.consent_by_subject(cut)]
                assert [s for s, _ in halves] == subjects
            readers[1].close()
            store.close()
    finally:
        report_store.BATCH = original


def _write(store: ConsentStore, steps: list[tuple[int, tuple[object, ...]]]) -> None:
    for seq, step in steps:
        kind, subject = step[0], str(step[1])
        if kind == "decide":
            decision = Decision(seq, f"t{seq:03}", str(step[3]), "v1", None, seq % 2 == 0)
            store.decide(subject, str(step[2]), decision)
        elif kind == "note":
            reason = None if step[3] is None else str(step[3])
            note = Note(seq, f"t{seq:03}", "renewal_requested", "v1", (("reason", reason),))
            store.note(subject, str(step[2]), note)
        elif kind == "ref":
            store.see_ref(subject, f"{step[2]}#{seq}", seq)
        else:
            store.see_age(subject, Age(int(str(step[2])), str(step[3]), seq))


def _read_back(reader: ConsentReader) -> list[object]:
    subjects = list(reader.subjects())
    return [
        subjects,
        list(reader.consent_by_subject()),
        [(reader.ref(s), reader.age(s)) for s in NAMES],
    ]


@settings(max_examples=100, deadline=None)
@given(steps=STEPS, cuts=st.lists(st.integers(0, 60), max_size=4), backwards=st.booleans())
def test_stores_written_in_parts_and_merged_read_back_as_one(
    steps: list[tuple[object, ...]], cuts: list[int], backwards: bool
) -> None:
    """The log cut into parts, each written to a store of its own, the stores merged (in order
    or backwards) into one with nothing of its own: it reads back as the store written whole."""
    numbered = list(enumerate(steps, start=1))
    ends = sorted({min(c, len(numbered)) for c in cuts} | {len(numbered)})
    parts = [numbered[a:b] for a, b in zip([0, *ends[:-1]], ends, strict=True)]
    with tempfile.TemporaryDirectory() as scratch:
        whole = ConsentStore(Path(scratch) / "whole.sqlite3")
        _write(whole, numbered)
        whole.seal()
        paths = []
        for number, part in enumerate(parts):
            store = ConsentStore(Path(scratch) / f"part-{number}.sqlite3")
            _write(store, part)
            store.flush()
            store.close()
            paths.append(store.path)
        merged = ConsentStore(Path(scratch) / "merged.sqlite3")
        merged.merge(reversed(paths) if backwards else paths)
        merged.seal()
        assert _read_back(merged.reader()) == _read_back(whole.reader())
        merged.close()
        whole.close()


@settings(max_examples=40, deadline=None)
@given(indexes=st.lists(st.integers(0, 2**40), max_size=40), block=st.integers(1, 5))
def test_the_verifiers_indexes_read_back_in_order(indexes: list[int], block: int) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        held = bundle._Indexes(scratch)
        held.BLOCK = block
        for index in indexes:
            held.append(index)
        assert list(held) == indexes
        assert list(held) == indexes  # read again from the start
        held.close()
