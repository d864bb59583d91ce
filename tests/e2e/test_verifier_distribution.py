"""The verifier alone, as a regulator installs it: ``pip install ./verifier`` in a fresh virtual
environment brings the verifier and PyNaCl, nothing of the server, and verifies a bundle this
project exported (docs/verification.md, "Verifying a bundle") and a consent receipt fetched over
HTTP ("Checking a consent receipt").

The install needs PyNaCl from the index (or pip's cache), as a regulator's would.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from api.http.app import ServerSettings, create_app, open_client_database
from api.token_store import Scope, SqlTokenStore
from ledger.config import Settings, generate_keys, open_ledger
from tests import facts
from tests.support.bundles import export, verifier_keys
from tests.support.in_process import InProcess

ROOT = Path(__file__).parents[2]
DISTRIBUTION = ROOT / "verifier"
# What `pip install ./verifier` may bring: the verifier, PyNaCl and what PyNaCl needs (cffi,
# pycparser), and what every new environment has (pip; setuptools before Python 3.12).
ALLOWED = {"consent-ledger-verifier", "pynacl", "cffi", "pycparser", "pip", "setuptools"}


@dataclass
class Installed:
    venv: Path
    bundle: Path
    keys: Path
    receipts: Path
    """receipt.json and receipt.jsonld, fetched over HTTP, and keys.txt (GET /v1/keys)."""

    def run(self, *args: str, program: str = "python") -> subprocess.CompletedProcess[str]:
        """Run a program of the environment from a directory away from the repository, so
        nothing of the checkout can be imported."""
        return subprocess.run(
            [str(self.venv / "bin" / program), *args],
            capture_output=True,
            text=True,
            check=False,
            cwd=self.venv.parent,
            env=clean_environment(),
            timeout=120,
        )


def clean_environment() -> dict[str, str]:
    """The environment without this project's interpreter settings, and without a C compiler
    (any C extension built from source would fail)."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME"} and not k.startswith("PIP_")
    }
    return {**env, "CC": "false", "CXX": "false", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Installed]:
    base = tmp_path_factory.mktemp("regulator")
    # A bundle of one subject, exported by the server's own code.
    bundle, keys = base / "alice", base / "keys.txt"
    with pytest.MonkeyPatch.context() as env:
        # What tests/conftest.py's _clean_environment does (it is function-scoped).
        for name in [n for n in os.environ if n.startswith("CONSENT_LEDGER_")]:
            env.delenv(name)
        settings = Settings(data_dir=base / "data")
        generate_keys(settings)
        app = open_ledger(settings)
        try:
            pol = facts.policy()
            alice, processor = facts.ref("alice"), facts.ref("rcpt")
            app.append([pol, facts.recipient(processor), facts.consent(alice, pol["version"])])
            app.append(
                [
                    facts.disclosure(processor, [alice], pol["version"]),
                    facts.request(alice),
                    facts.consent(alice, pol["version"], kind="withdrawn"),
                ]
            )
            scope = {"kind": "subject", "subject": app.subject_keys.pseudonym(alice)}
            export(app, settings, scope, bundle)
            keys.write_text("\n".join(verifier_keys(app, settings)) + "\n", encoding="utf-8")
        finally:
            app.close()
        receipts = fetch_receipts(base / "served")
    # The regulator's machine: a new environment, one pip command, binary wheels only.
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=clean_environment())
    done = subprocess.run(
        [str(venv / "bin" / "pip"), "install", "-q", "--only-binary", ":all:", str(DISTRIBUTION)],
        capture_output=True,
        text=True,
        check=False,
        env=clean_environment(),
        timeout=300,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    yield Installed(venv, bundle, keys, receipts)


def fetch_receipts(base: Path) -> Path:
    """A served ledger's consent receipt, fetched over HTTP in both forms, and its keys."""
    settings = Settings(data_dir=base / "data")
    generate_keys(settings)
    tokens = SqlTokenStore(open_client_database(settings))
    token = tokens.add("receipt-desk", [Scope.READ_RECEIPTS])[1]
    tokens.db.close()
    served = create_app(settings, server=ServerSettings(projections=False, signer=False))
    http = InProcess(served)
    try:
        pol = facts.policy()
        alice = facts.consent(facts.ref("alice"), pol["version"], contact="alice@example.org")
        wanted = served.state.ledger.append([pol, alice])[1].seq
        for name, accept in (("receipt.json", "application/json"), ("receipt.jsonld", None)):
            headers = {**_bearer(token), "Accept": accept or "application/ld+json"}
            answer = http.get(f"/v1/consent/receipts/{wanted}", headers=headers)
            assert answer.status_code == 200, answer.text
            (base / name).write_bytes(answer.content)
        (base / "keys.txt").write_text(http.get("/v1/keys").text, encoding="utf-8")
    finally:
        http.close()
    return base


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_the_install_brings_the_verifier_and_pynacl_only(installed: Installed) -> None:
    listed = installed.run("-m", "pip", "list", "--format=json")
    assert listed.returncode == 0, listed.stderr
    names = {row["name"].lower() for row in json.loads(listed.stdout)}
    assert {"consent-ledger-verifier", "pynacl"} <= names <= ALLOWED, names
    # The server's dependencies, and the server's part of `ledger`, are absent.
    for module in (
        "eventsourcing",
        "fastapi",
        "psycopg",
        "pydantic",
        "orjson",
        "click",
        "ledger.application",
        "ledger.events",
        "projections",
        "api",
    ):
        probe = installed.run("-c", f"import {module}")
        assert probe.returncode == 1, module
        assert "ModuleNotFoundError" in probe.stderr, (module, probe.stderr)


def test_every_verifier_module_imports_from_the_installed_copy(installed: Installed) -> None:
    probe = installed.run(
        "-c",
        "import importlib, pkgutil, ledger.verifier as v\n"
        "names = [m.name for m in pkgutil.iter_modules(v.__path__, 'ledger.verifier.')]\n"
        "for name in names: importlib.import_module(name)\n"
        "print(v.__file__); print(len(names))",
    )
    assert probe.returncode == 0, probe.stderr
    where, count = probe.stdout.split()
    assert Path(where).is_relative_to(installed.venv), where
    shipped = [p for p in (ROOT / "ledger" / "verifier").glob("*.py") if p.name != "__init__.py"]
    assert int(count) == len(shipped)


def test_the_console_script_and_the_module_verify_an_exported_bundle(
    installed: Installed,
) -> None:
    args = (str(installed.bundle), "--key", str(installed.keys), "--jobs", "1")
    for done in (
        installed.run(*args, program="consent-ledger-verify"),
        installed.run("-m", "ledger.verifier", *args),
    ):
        assert done.returncode == 0, done.stderr
        assert "ok  completeness" in done.stdout
        assert "VERIFIED" in done.stdout


def test_the_installed_verifier_names_a_tampered_bundle(
    installed: Installed, tmp_path: Path
) -> None:
    tampered = shutil.copytree(installed.bundle, tmp_path / "tampered")
    events = tampered / "events.tsv"
    events.write_bytes(events.read_bytes().replace(b"\n", b"\n\n", 1))
    done = installed.run(
        str(tampered), "--key", str(installed.keys), "--jobs", "1", program="consent-ledger-verify"
    )
    assert done.returncode == 1, done.stdout
    assert "FAILED" in done.stderr and "events.tsv" in done.stderr, done.stderr


def test_the_installed_verifier_checks_a_receipt_fetched_over_http(installed: Installed) -> None:
    keys = str(installed.receipts / "keys.txt")
    for name in ("receipt.json", "receipt.jsonld"):
        path = str(installed.receipts / name)
        for done in (
            installed.run("receipt", path, "--key", keys, program="consent-ledger-verify"),
            installed.run("-m", "ledger.verifier", "receipt", path, "--key", keys),
        ):
            assert done.returncode == 0, done.stderr
            assert "ok  inclusion proof" in done.stdout and "VERIFIED" in done.stdout, name


def test_the_installed_verifier_names_a_receipt_edited_by_one_byte(
    installed: Installed, tmp_path: Path
) -> None:
    raw = (installed.receipts / "receipt.json").read_bytes()
    at = raw.index(b"alice@example.org")
    edited = tmp_path / "edited.json"
    edited.write_bytes(raw[:at] + b"A" + raw[at + 1 :])
    done = installed.run(
        "receipt",
        str(edited),
        "--key",
        str(installed.receipts / "keys.txt"),
        program="consent-ledger-verify",
    )
    assert done.returncode == 1, done.stdout
    assert done.stderr.count("\n") == 1 and done.stderr.startswith("FAILED statement:"), done.stderr


def test_the_distribution_follows_the_server(tmp_path: Path) -> None:
    """Same version and the same PyNaCl range as the server's package; its sdist builds the
    same wheel as the checkout, with the verifier's files inside it."""
    root = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    own = tomllib.loads((DISTRIBUTION / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    assert own["version"] == root["version"]
    assert own["dependencies"] == [d for d in root["dependencies"] if d.startswith("pynacl")]

    def build(source: Path, out: Path) -> tuple[str, str]:
        out.mkdir()
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                "import sys, verifier_build as b\n"
                "print(b.build_sdist(sys.argv[1])); print(b.build_wheel(sys.argv[1]))",
                str(out),
            ],
            capture_output=True,
            text=True,
            check=True,
            cwd=source,
            env=clean_environment(),
        )
        sdist, wheel = done.stdout.split()
        return sdist, wheel

    sdist, wheel = build(DISTRIBUTION, tmp_path / "checkout")
    with tarfile.open(tmp_path / "checkout" / sdist) as tar:
        tar.extractall(tmp_path / "unpacked", filter="data")
    unpacked = tmp_path / "unpacked" / sdist.removesuffix(".tar.gz")
    assert (unpacked / "ledger" / "verifier" / "bundle.py").is_file()
    again_sdist, again_wheel = build(unpacked, tmp_path / "from-sdist")
    assert (again_sdist, again_wheel) == (sdist, wheel)
    for name in (sdist, wheel):
        first = (tmp_path / "checkout" / name).read_bytes()
        assert first == (tmp_path / "from-sdist" / name).read_bytes(), name
