"""Shared fixtures: settings on temporary files, a migrated store, real local servers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine

from digest.config import Settings
from digest.db import make_engine, migrate

REPO = Path(__file__).resolve().parent.parent
SEEDS = REPO.parent / "shared" / "seeds"
TEST_SECRET = "test-secret-key-0123456789abcdef"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        database_url=f"sqlite:///{tmp_path / 'digest.db'}",
        outbox=tmp_path / "outbox",
        secret_key=TEST_SECRET,
        transport="memory",
        base_url="http://digest.test",
        from_address="Weekly AI Tool Verdicts <digest@verdicts.test>",
        timezone="UTC",
    )


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    eng = make_engine(settings.database_url)
    migrate(eng)
    yield eng
    eng.dispose()


def postgres_url() -> str | None:
    return os.environ.get("DIGEST_TEST_POSTGRES_URL")


# Shared fixtures defined in helper modules (tests/ is on sys.path, it has no __init__).
from cli_support import digest_cli  # noqa: E402,F401
from servers import smtp_server  # noqa: E402,F401
from subscriber_support import sqlite_web, store, web  # noqa: E402,F401
