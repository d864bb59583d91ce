"""Signed notes and checkpoints: the public C2SP and Go vectors, and every way to break one."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from nacl.signing import SigningKey

from ledger.verifier.checkpoint import (
    Checkpoint,
    CheckpointError,
    open_checkpoint,
    parse_checkpoint,
)
from ledger.verifier.note import (
    NoteError,
    UnverifiedNoteError,
    format_verifier_key,
    open_note,
    parse_signer_key,
    parse_verifier_key,
    sign_note,
)

VECTORS = Path(__file__).resolve().parents[2] / "vectors" / "signed-note"


def vector(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((VECTORS / name).read_text())
    return loaded


def test_the_c2sp_example_verifies() -> None:
    case = vector("c2sp-signed-note-example.json")
    verifier = parse_verifier_key(case["vkey"])
    note = open_note(case["signed_note"], [verifier])
    assert note.text == "This is an example message.\n"
    assert note.verified_by == ("example.com/foo",)
    assert format_verifier_key(verifier.name, verifier.public_key) == case["vkey"]


def test_the_go_sumdb_example_signs_and_verifies() -> None:
    case = vector("golang-mod-sumdb-note.json")
    name, signing_key = parse_signer_key(case["skey"])
    verifier = parse_verifier_key(case["vkey"])
    assert bytes(signing_key.verify_key) == verifier.public_key
    # Ed25519 is deterministic: our signature is the published one.
    assert sign_note(case["text"], name, signing_key) == case["signed_note"]
    assert open_note(case["signed_note"], [verifier]).text == case["text"]


@pytest.fixture
def key() -> tuple[str, SigningKey]:
    return "ledger.example/log", SigningKey.generate()


def test_a_changed_text_or_signature_does_not_verify(key: tuple[str, SigningKey]) -> None:
    name, signing_key = key
    verifier = parse_verifier_key(format_verifier_key(name, bytes(signing_key.verify_key)))
    signed = sign_note("hello\n", name, signing_key)
    assert open_note(signed, [verifier]).text == "hello\n"
    with pytest.raises(UnverifiedNoteError):
        open_note(signed.replace("hello", "hallo"), [verifier])
    line = signed.splitlines()[-1]
    raw = bytearray(base64.b64decode(line.split(" ")[-1]))
    raw[10] ^= 1
    tampered = signed.replace(line.split(" ")[-1], base64.b64encode(bytes(raw)).decode())
    with pytest.raises(UnverifiedNoteError, match="does not verify"):
        open_note(tampered, [verifier])


def test_a_note_signed_only_by_unknown_keys_is_not_trusted(key: tuple[str, SigningKey]) -> None:
    name, signing_key = key
    other = SigningKey.generate()
    stranger = parse_verifier_key(format_verifier_key("someone.else", bytes(other.verify_key)))
    with pytest.raises(UnverifiedNoteError, match="no signature by a known key"):
        open_note(sign_note("hello\n", name, signing_key), [stranger])


@pytest.mark.parametrize(
    "broken",
    [
        "hello\n",  # no signature block
        "hello\n\n",  # empty signature block
        "hello\n\n\u2014 name AAAA",  # no final newline
        "hello\n\n- name AAAAAAAAAAAA\n",  # hyphen, not an em dash
        "hello\n\n\u2014 name not-base64!\n",
        "hello\n\n\u2014 na+me AAAAAAAAAAAA\n",  # '+' in a key name
        "\n\n\u2014 name AAAAAAAAAAAA\n",  # empty text
    ],
)
def test_malformed_notes_are_refused(broken: str, key: tuple[str, SigningKey]) -> None:
    name, signing_key = key
    verifier = parse_verifier_key(format_verifier_key(name, bytes(signing_key.verify_key)))
    with pytest.raises(NoteError):
        open_note(broken, [verifier])


@pytest.mark.parametrize(
    "vkey",
    [
        "name+00000000+" + base64.b64encode(bytes([1]) + bytes(32)).decode(),  # wrong hash
        "name+c74f20a3",  # missing key
        "name+c74f20a3+" + base64.b64encode(bytes([2]) + bytes(32)).decode(),  # not Ed25519
    ],
)
def test_malformed_verifier_keys_are_refused(vkey: str) -> None:
    with pytest.raises(NoteError):
        parse_verifier_key(vkey)


def test_a_checkpoint_round_trips_through_a_signed_note(key: tuple[str, SigningKey]) -> None:
    name, signing_key = key
    verifier = parse_verifier_key(format_verifier_key(name, bytes(signing_key.verify_key)))
    checkpoint = Checkpoint("ledger.example/log", 42, bytes(range(32)), ("extra line",))
    signed = sign_note(checkpoint.text(), name, signing_key)
    assert signed.startswith("ledger.example/log\n42\nAAECAwQF")
    assert open_checkpoint(signed, "ledger.example/log", [verifier]) == checkpoint
    with pytest.raises(CheckpointError, match=r"expected 'other\.example/log'"):
        open_checkpoint(signed, "other.example/log", [verifier])
    with pytest.raises(UnverifiedNoteError):
        open_checkpoint(signed.replace("\n42\n", "\n43\n"), "ledger.example/log", [verifier])


@pytest.mark.parametrize(
    "text",
    [
        "origin\n42\n",  # no root hash
        "origin\n042\n" + base64.b64encode(bytes(32)).decode() + "\n",  # leading zero
        "origin\n-1\n" + base64.b64encode(bytes(32)).decode() + "\n",
        "origin\n42\n" + base64.b64encode(bytes(31)).decode() + "\n",  # short hash
        "origin\n42\nnot base64\n",
        "\n42\n" + base64.b64encode(bytes(32)).decode() + "\n",  # empty origin
        "origin\n42\n" + base64.b64encode(bytes(32)).decode(),  # no final newline
    ],
)
def test_malformed_checkpoints_are_refused(text: str) -> None:
    with pytest.raises(CheckpointError):
        parse_checkpoint(text)
