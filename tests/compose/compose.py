"""Reading docker-compose.yml as Compose does: anchors and merge keys resolved."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
COMPOSE_FILE = ROOT / "docker-compose.yml"
SECRETS_DIR = "/run/secrets/"


def load() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())
    return document


def service(document: dict[str, Any], name: str) -> dict[str, Any]:
    found: dict[str, Any] = document["services"][name]
    return found


def command(document: dict[str, Any], name: str) -> list[str]:
    value = service(document, name)["command"]
    assert isinstance(value, list), f"{name}: the command is a list (exec form, no shell)"
    return [str(part) for part in value]


def environment(document: dict[str, Any], name: str) -> dict[str, str]:
    """A service's environment as a mapping (Compose allows a list of NAME=VALUE too)."""
    value = service(document, name).get("environment", {})
    if isinstance(value, list):
        value = dict(item.split("=", 1) for item in value)
    return {str(k): "" if v is None else str(v) for k, v in value.items()}


def secrets(document: dict[str, Any], name: str) -> list[str]:
    """The names of the secrets a service mounts (short or long syntax)."""
    return [
        item if isinstance(item, str) else str(item["source"])
        for item in service(document, name).get("secrets", [])
    ]
