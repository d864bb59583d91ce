"""The ASGI entry point uvicorn imports: the app for the settings in the environment."""

from __future__ import annotations

from fastapi import FastAPI

from api.app import create_app
from ledger.config import Settings


def create() -> FastAPI:
    return create_app(Settings.from_env())
