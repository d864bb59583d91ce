"""docker-compose.yml is valid Compose, and says what the operations guide says it does."""

from __future__ import annotations

import copy
import hashlib
import re
from pathlib import Path

import jsonschema
import orjson
import pytest

from ledger.config import ENV_PREFIX, VARIABLES
from tests.compose import compose

HERE = Path(__file__).parent
SCHEMA = HERE / "compose-spec.json"
SCHEMA_SHA256 = "56bab44c85c0ce8affb74474950293f37d510673283a243bcd7eeadb900fa35c"
LEDGER_SERVICES = ("api", "reads", "projections", "signer")
CONFIGURATION = compose.ROOT / "docs" / "configuration.md"


def validator() -> jsonschema.Draft201909Validator:
    schema = orjson.loads(SCHEMA.read_bytes())
    # The schema names draft 2019-09 by a URI jsonschema does not know ("http://.../schema#").
    assert "draft/2019-09" in schema["$schema"]
    jsonschema.Draft201909Validator.check_schema(schema)
    return jsonschema.Draft201909Validator(schema)


def test_the_schema_is_the_copy_its_origin_note_describes() -> None:
    assert hashlib.sha256(SCHEMA.read_bytes()).hexdigest() == SCHEMA_SHA256
    assert SCHEMA_SHA256 in (HERE / "ORIGIN.md").read_text()
    assert "Apache License" in (HERE / "LICENSE").read_text()


def test_the_compose_file_follows_the_compose_specification() -> None:
    errors = sorted(validator().iter_errors(compose.load()), key=lambda e: list(e.path))
    assert not errors, "\n".join(f"{list(e.path)}: {e.message}" for e in errors)


@pytest.mark.parametrize(
    ("where", "change"),
    [
        ("a misspelt key", lambda d: d["services"]["api"].update(comand=["serve"])),
        ("a number as command", lambda d: d["services"]["api"].update(command=8000)),
        ("a bad service name", lambda d: d["services"].update({"api server": {}})),
        ("a secret without a source", lambda d: d["secrets"]["master_key"].update(path="x")),
    ],
)
def test_the_schema_catches_mistakes(where: str, change: object) -> None:
    document = copy.deepcopy(compose.load())
    assert callable(change)
    change(document)
    assert list(validator().iter_errors(document)), f"{where} went unnoticed"


def test_postgres_is_pinned_keeps_its_data_in_a_named_volume_and_is_health_checked() -> None:
    document = compose.load()
    db = compose.service(document, "db")
    assert re.fullmatch(r"postgres:\d+(\.\d+)?(-[a-z0-9]+)?", db["image"])
    volume, _, target = db["volumes"][0].partition(":")
    assert volume in document["volumes"] and target == "/var/lib/postgresql/data"
    assert "pg_isready" in db["healthcheck"]["test"]


def test_the_api_runs_several_workers_and_leaves_read_models_and_signing_to_their_services() -> (
    None
):
    document = compose.load()
    assert compose.command(document, "api")[:2] == ["consent-ledger", "serve"]
    assert {"--no-projections", "--no-signer"} <= set(compose.command(document, "api"))
    assert int(compose.environment(document, "api")["CONSENT_LEDGER_WORKERS"]) > 1
    assert compose.command(document, "projections") == ["consent-ledger", "projections", "run"]
    assert compose.command(document, "signer")[:2] == ["consent-ledger", "checkpoint"]
    assert "--every" in compose.command(document, "signer")
    assert compose.service(document, "api")["healthcheck"]["test"][1:] == [
        "consent-ledger",
        "healthcheck",
    ]
    for name in LEDGER_SERVICES:
        depends = compose.service(document, name)["depends_on"]
        assert depends["db"]["condition"] == "service_healthy"


def test_a_reads_service_serves_reads_beside_the_api_and_names_it_for_writes() -> None:
    document = compose.load()
    assert compose.command(document, "reads") == ["consent-ledger", "serve", "--role", "reads"]
    reads, api = compose.environment(document, "reads"), compose.environment(document, "api")
    published = {
        name: compose.service(document, name)["ports"][0].rsplit(":", 2)
        for name in ("api", "reads")
    }
    # Each listens on its own published port; a write sent to reads is told where the api is.
    assert published["api"][1] != published["reads"][1]
    assert (
        reads["CONSENT_LEDGER_WRITER_URL"] == f"http://{published['api'][0]}:{published['api'][1]}"
    )
    assert published["reads"][2] == reads["CONSENT_LEDGER_PORT"]
    assert published["api"][2] == api["CONSENT_LEDGER_PORT"]
    # It opens the same storage as the api, with the keys to record the reads it must record.
    for key in ("CONSENT_LEDGER_DATABASE_URL", "CONSENT_LEDGER_DATABASE_SCHEMA"):
        assert reads[key] == api[key]
    assert {"signing_keys", "master_key"} <= set(compose.secrets(document, "reads"))
    assert compose.service(document, "reads")["healthcheck"]["test"][1:] == [
        "consent-ledger",
        "healthcheck",
    ]


SECRET_SETTINGS = {
    "CONSENT_LEDGER_KEYS_DIR",
    "CONSENT_LEDGER_MASTER_KEY_FILE",
    "CONSENT_LEDGER_ADMIN_TOKEN_FILE",
    "PGPASSFILE",
    "POSTGRES_PASSWORD_FILE",
}


@pytest.mark.parametrize("name", ["db", *LEDGER_SERVICES])
def test_secrets_come_from_mounted_files_never_from_variables(name: str) -> None:
    document = compose.load()
    env = compose.environment(document, name)
    mounted = compose.secrets(document, name)
    for key, value in env.items():
        if key in SECRET_SETTINGS:
            assert value.startswith(compose.SECRETS_DIR), (key, value)
            assert value.removeprefix(compose.SECRETS_DIR) in mounted, (key, value)
            assert value.removeprefix(compose.SECRETS_DIR) in document["secrets"]
    assert "CONSENT_LEDGER_MASTER_KEY" not in env and "POSTGRES_PASSWORD" not in env
    url = env.get("CONSENT_LEDGER_DATABASE_URL", "")
    assert not re.search(r"//[^/@]*:[^/@]*@", url), "no password in the database URL"
    for secret in document["secrets"].values():
        assert secret["file"].startswith("./secrets/")


@pytest.mark.parametrize("name", LEDGER_SERVICES)
def test_every_ledger_setting_in_the_compose_file_is_a_documented_one(name: str) -> None:
    documented = set(
        re.findall(r"^\| `(CONSENT_LEDGER_[A-Z_]+)` \|", CONFIGURATION.read_text(), re.MULTILINE)
    )
    assert {ENV_PREFIX + v for v in VARIABLES} <= documented
    env = compose.environment(compose.load(), name)
    assert {k for k in env if k.startswith(ENV_PREFIX)} - documented == set()


def test_the_image_is_slim_runs_as_a_user_and_carries_no_secrets() -> None:
    dockerfile = (compose.ROOT / "Dockerfile").read_text()
    bases = re.findall(r"^FROM (\S+)", dockerfile, re.MULTILINE)
    assert bases and all("slim" in base for base in bases)
    users = re.findall(r"^USER (\S+)", dockerfile, re.MULTILINE)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    copied = re.findall(r"^COPY (?!--from)(.+)$", dockerfile, re.MULTILINE)
    assert not [line for line in copied if re.search(r"secret|key|data", line)]
    lines = (compose.ROOT / ".dockerignore").read_text().splitlines()
    rules = [line for line in lines if line and not line.startswith("#")]
    assert rules[0] == "*", "the build context starts from nothing"
    assert all(not re.search(r"secret|key|data", rule) for rule in rules)
