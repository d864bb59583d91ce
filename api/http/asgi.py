"""The ASGI entry point uvicorn imports: the app for the settings in the environment."""

from __future__ import annotations

from fastapi import FastAPI

from api.bootstrap import Configuration
from api.http.app import create_app


def create() -> FastAPI:
    config = Configuration.from_env()  # every group, read once for this worker
    return create_app(config.ledger, config.read_models, config.server)
