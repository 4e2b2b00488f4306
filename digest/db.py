"""Engine, sessions and migrations.

SQLite is the embedded default (WAL, foreign keys on, a busy timeout so a web process
and a sender can share the file); PostgreSQL is used as is. The schema is owned by
Alembic: :func:`migrate` upgrades any database to the newest revision.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlmodel import Session, create_engine

import digest.accounts.models
import digest.models  # noqa: F401
import subscribers.models  # noqa: F401
from digest.config import PROJECT_ROOT
from digest.exceptions import StoreError

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = PROJECT_ROOT / "migrations"


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def normalize_url(url: str) -> str:
    """Route bare PostgreSQL URLs to psycopg 3, the driver this project installs
    (SQLAlchemy 2.0 would pick psycopg2 for them; ``postgres://`` is Heroku's spelling)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def make_engine(url: str) -> Engine:
    """An engine for ``url`` with the settings this project relies on."""
    url = normalize_url(url)
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
    try:
        engine = create_engine(url, **kwargs)
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        raise StoreError(f"cannot open database {url!r}: {exc}") from exc
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def alembic_config(engine: Engine) -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["engine"] = engine
    return cfg


def migrate(engine: Engine) -> None:
    """Create or upgrade the schema to the newest revision (idempotent)."""
    try:
        command.upgrade(alembic_config(engine), "heads")
    except OperationalError as exc:
        raise StoreError(f"cannot migrate {engine.url!r}: {exc.orig}") from exc


@contextmanager
def session_scope(engine: Engine) -> Iterator[Session]:
    """A session that commits on success and rolls back on any error."""
    with Session(engine, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise
