"""Fixtures the integration tests share."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ledger.config import Settings
from projections.database import ProjectionDatabase
from tests.integration.projection_fixtures import projection_database


@pytest.fixture
def db(settings: Settings) -> Iterator[ProjectionDatabase]:
    """A projection database on the same backend as the ledger under test, closed after."""
    database = projection_database(settings)
    try:
        yield database
    finally:
        database.close()
