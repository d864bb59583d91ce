"""Key files: created 0600, rotated without losing old public keys, refused when unsafe."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from ledger.config import Settings, generate_keys, load_keyring, open_ledger
from ledger.errors import KeyMaterialError
from ledger.integrity import check_log
from ledger.signing import Keyring, generate_signing_key, load_signer
from ledger.subject_keys import MASTER_KEY_ENV, load_master_key
from tests import facts


def test_keygen_writes_private_files_with_mode_0600(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data")
    generate_keys(settings)
    private = [
        *settings.keys_dir.glob("*.key"),
        settings.keys_dir / "active",
        settings.master_key_file,
    ]
    assert len(private) == 3
    for path in private:
        assert path.stat().st_mode & 0o777 == 0o600, path
    assert settings.keys_dir.stat().st_mode & 0o077 == 0


def test_keygen_twice_creates_nothing_new(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert len(generate_keys(settings)) == 2
    assert generate_keys(settings) == []


def test_rotation_keeps_every_old_event_verifiable(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    app = open_ledger(settings)
    app.append([facts.policy()])
    old_key = app.ledger.signer.key_id
    app.close()
    generate_keys(settings, rotate=True)
    app = open_ledger(settings)
    try:
        [receipt] = app.append([facts.policy()])
        assert receipt.key_id != old_key
        assert app.get_event(1).key_id == old_key
        report = check_log(app.ledger, load_keyring(settings), mentions=app.mentions_opened)
        assert report.ok and report.checked == 2
    finally:
        app.close()


def test_a_world_readable_signing_key_is_refused(tmp_path: Path) -> None:
    key_id = generate_signing_key(tmp_path)
    (tmp_path / f"{key_id}.key").chmod(0o644)
    with pytest.raises(KeyMaterialError, match="chmod 600"):
        load_signer(tmp_path)


def test_a_missing_signing_key_says_how_to_make_one(tmp_path: Path) -> None:
    with pytest.raises(KeyMaterialError, match="consent-ledger keygen"):
        load_signer(tmp_path)


def test_a_public_key_file_under_the_wrong_name_is_refused(tmp_path: Path) -> None:
    key_id = generate_signing_key(tmp_path)
    (tmp_path / f"{key_id}.pub").rename(tmp_path / "0000000000000000.pub")
    with pytest.raises(KeyMaterialError, match="not 0000000000000000"):
        Keyring.from_directory(tmp_path)


def test_the_master_key_comes_from_the_environment_first(tmp_path: Path) -> None:
    key = os.urandom(32)
    assert (
        load_master_key(tmp_path / "absent", {MASTER_KEY_ENV: base64.b64encode(key).decode()})
        == key
    )
    with pytest.raises(KeyMaterialError, match="32"):
        load_master_key(tmp_path / "absent", {MASTER_KEY_ENV: base64.b64encode(b"short").decode()})
    with pytest.raises(KeyMaterialError, match="no master key"):
        load_master_key(tmp_path / "absent", {})


def test_a_wrong_master_key_fails_at_start_not_at_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = Settings(data_dir=tmp_path)
    open_ledger(settings).close()
    monkeypatch.setenv(MASTER_KEY_ENV, base64.b64encode(os.urandom(32)).decode())
    with pytest.raises(KeyMaterialError, match="not the key this ledger was created with"):
        open_ledger(settings)


def test_a_lost_master_key_fails_at_start(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    open_ledger(settings).close()
    settings.master_key_file.unlink()
    with pytest.raises(KeyMaterialError, match="no master key"):
        open_ledger(settings, create_keys=False)
    # The embedded default makes a new master key on first start; it must not open this ledger.
    with pytest.raises(KeyMaterialError, match="not the key this ledger was created with"):
        open_ledger(settings)
