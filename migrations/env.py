"""Alembic environment: the engine comes from digest.store.engine (never a second config file)."""

from __future__ import annotations

from alembic import context
from sqlmodel import SQLModel

import digest.store.account_models  # noqa: F401
import digest.store.models  # noqa: F401
import digest.store.subscriber_models  # noqa: F401
from digest.core.settings import get_settings
from digest.store.engine import make_engine

target_metadata = SQLModel.metadata


def run_migrations_online() -> None:
    engine = context.config.attributes.get("engine") or make_engine(get_settings().database_url)
    with engine.begin() as connection:
        # Take turns: two processes starting together on a new store would both find no
        # tables and both create them. SQLite: one write transaction around the whole
        # upgrade (pysqlite would otherwise run DDL outside any transaction), waiting
        # up to DIGEST_DB_BUSY_TIMEOUT; PostgreSQL: a lock held until the commit.
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql("BEGIN IMMEDIATE")
        elif connection.dialect.name == "postgresql":
            connection.exec_driver_sql("SELECT pg_advisory_xact_lock(7462811190)")
        context.configure(
            connection=connection,
            target_metadata=target_metadata,
            render_as_batch=connection.dialect.name == "sqlite",
        )
        context.run_migrations()


run_migrations_online()
