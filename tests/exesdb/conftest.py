"""Fixtures for the exesdb tests: a fresh SQLite store per test."""

from __future__ import annotations

import pytest

from exesdb.storage import SQLiteBackend


@pytest.fixture
async def backend(tmp_path):
    """A durable SQLite store in a temporary directory, closed after the test."""
    store = await SQLiteBackend.open(tmp_path / "store")
    try:
        yield store
    finally:
        await store.close()
