"""Shared fixtures: settings on temporary files, a migrated store, real local servers."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine, make_url

from digest.core.settings import Settings
from digest.store.engine import make_engine, migrate

REPO = Path(__file__).resolve().parent.parent
SEEDS = REPO.parent / "shared" / "seeds"
TEST_SECRET = "test-secret-key-0123456789abcdef"


def rig_settings(tmp_path: Path, **overrides: object) -> Settings:
    """The tests' settings: a SQLite file and an outbox in ``tmp_path``, the memory
    transport, a loopback rig; ``overrides`` (e.g. ``database_url``) on top."""
    values: dict[str, object] = {
        "database_url": f"sqlite:///{tmp_path / 'digest.db'}",
        "outbox": tmp_path / "outbox",
        "secret_key": TEST_SECRET,
        "transport": "memory",
        "base_url": "http://digest.test",
        "from_address": "Weekly AI Tool Verdicts <digest@verdicts.test>",
        "timezone": "UTC",
        # A loopback test rig: http links and a .test sender are warnings, not errors,
        # and the preflight does not look up digest.test.
        "allow_unsafe_send": True,
        "preflight_health_timeout": 0,
        **overrides,
    }
    return Settings(**values)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _root_logger_restored() -> Iterator[None]:
    """A test that runs a command in-process installs the app's log handler on the root
    logger; without this it stays, and a server thread's log lines that outlive the test
    (aiosmtpd's "connection lost") reach the terminal of a later one."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    yield
    for handler in root.handlers[:]:
        if handler not in handlers:
            root.removeHandler(handler)
    root.setLevel(level)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return rig_settings(tmp_path)


@pytest.fixture
def engine(settings: Settings) -> Iterator[Engine]:
    eng = make_engine(settings.database_url)
    migrate(eng)
    yield eng
    eng.dispose()


PG_ENV = "DIGEST_TEST_POSTGRES_URL"


@contextmanager
def throwaway_postgres() -> Iterator[str]:
    """A URL on a fresh PostgreSQL schema, dropped afterwards; skips the test with the
    reason when DIGEST_TEST_POSTGRES_URL is not set."""
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"{PG_ENV} is not set (e.g. postgresql://postgres@127.0.0.1:5432/test)")
    schema = f"digest_test_{uuid.uuid4().hex[:12]}"
    admin = make_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


# Shared fixtures defined in helper modules (tests/ is on sys.path, it has no __init__).
from cli_support import digest_cli  # noqa: E402,F401
from console_rig import chrome  # noqa: E402,F401
from console_support import console  # noqa: E402,F401
from servers import smtp_server  # noqa: E402,F401
from subscriber_support import sqlite_web, store, web  # noqa: E402,F401
