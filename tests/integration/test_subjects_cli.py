"""The operator's commands for erasure and the master key, and their errors."""

from __future__ import annotations

import pytest

from ledger.config import Settings, open_ledger
from ledger.errors import StorageError
from ledger.subject_keys import MASTER_KEY_ENV, SubjectKeys
from tests import facts
from tests.cli_runner import run_cli as run

CONTACT = "jo@example.org"


def seed(settings: Settings) -> str:
    pol = facts.policy()
    subject = facts.ref("user")
    app = open_ledger(settings)
    try:
        app.append([pol, facts.consent(subject, pol["version"], contact=CONTACT)])
    finally:
        app.close()
    return subject


def contacts(settings: Settings) -> list[object]:
    app = open_ledger(settings)
    try:
        return [app.decode(r).data.get("contact") for r in app.iter_records()]
    finally:
        app.close()


def test_subjects_erase_from_the_command_line(settings: Settings) -> None:
    subject = seed(settings)
    erased = run(settings, "subjects", "erase", subject, "--ground", "operator", "--yes")
    assert erased.exit_code == 0 and "erasure is event 4" in erased.output
    assert CONTACT not in contacts(settings) and "[erased]" in contacts(settings)
    again = run(settings, "subjects", "erase", subject, "--yes")
    assert again.exit_code == 1 and "was erased" in again.output
    unknown = run(settings, "subjects", "erase", "nobody-known", "--yes")
    assert unknown.exit_code == 1 and "no subject" in unknown.output
    neither = run(settings, "subjects", "erase", "--yes")
    assert neither.exit_code == 2 and "--pseudonym" in neither.output
    declined = run(settings, "subjects", "erase", subject, stdin="n\n")
    assert declined.exit_code == 1 and "Aborted" in declined.output
    nothing = run(settings, "subjects", "reapply-erasures")
    assert nothing.exit_code == 0 and "nothing to do" in nothing.output


def test_master_key_rotate_from_the_command_line(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    seed(settings)
    old = settings.master_key_file.read_text()
    rotated = run(settings, "master-key", "rotate")
    assert rotated.exit_code == 0 and "re-wrapped 1 subject keys" in rotated.output
    assert settings.master_key_file.read_text() != old
    assert oct(settings.master_key_file.stat().st_mode & 0o777) == "0o600"
    assert CONTACT in contacts(settings)  # the log untouched, the data opens with the new key

    # A rotation that fails changes nothing and leaves no staged key behind.
    current = settings.master_key_file.read_text()

    def broken(self: SubjectKeys, new_master_key: bytes) -> int:
        raise StorageError("the key store refused the transaction")

    monkeypatch.setattr(SubjectKeys, "rotate_master_key", broken)
    failed = run(settings, "master-key", "rotate")
    assert failed.exit_code == 1 and "refused the transaction" in failed.output
    assert settings.master_key_file.read_text() == current
    assert not settings.master_key_file.with_name("master.key.new").exists()
    assert CONTACT in contacts(settings)

    monkeypatch.setenv(MASTER_KEY_ENV, current.strip())
    from_env = run(settings, "master-key", "rotate")
    assert from_env.exit_code == 2 and "--new-key-file" in from_env.output
