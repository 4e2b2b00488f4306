"""Engine, sessions and migrations.

SQLite is the embedded default (WAL, foreign keys on, a busy timeout so a web process
and a sender can share the file); PostgreSQL is used as is. The schema is owned by
Alembic: :func:`migrate` upgrades any database to the newest revision.
"""

from __future__ import annotations

import atexit
import logging
import os
import weakref
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import OperationalError, SQLAlchemyError
from sqlmodel import Session, create_engine

import digest.store.account_models
import digest.store.models
import digest.store.subscriber_models  # noqa: F401
from digest.core.resources import resource_dir
from digest.exceptions import StoreError

if TYPE_CHECKING:
    from alembic.config import Config

logger = logging.getLogger(__name__)

MIGRATIONS_DIR = resource_dir("migrations")


def _sqlite_pragmas(busy_timeout: float) -> Any:
    def on_connect(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute(f"PRAGMA busy_timeout={int(busy_timeout * 1000)}")
        cur.close()

    return on_connect


def is_locked(exc: BaseException) -> bool:
    """A SQLite "database is locked" (another process holds the write lock past the
    busy timeout): worth a clear "try again", never a traceback."""
    return isinstance(exc, OperationalError) and "locked" in str(exc.orig).lower()


def normalize_url(url: str) -> str:
    """Route bare PostgreSQL URLs to psycopg 3, the driver this project installs
    (SQLAlchemy 2.0 would pick psycopg2 for them; ``postgres://`` is Heroku's spelling)."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


#: libpq settings that turn a database gone quiet (a partition, a host that vanished)
#: into an error within seconds instead of a call that hangs for the kernel's TCP
#: retransmission timeout (~15 minutes): the send loop can only ride out an outage it
#: hears about (digest/db_outage.py). Connect within 5 s; probe an idle connection after
#: 5 s, every 2 s, 3 times; give up on data not acknowledged within 10 s.
PG_CONNECT_ARGS: dict[str, Any] = {
    "connect_timeout": 5,
    "keepalives": 1,
    "keepalives_idle": 5,
    "keepalives_interval": 2,
    "keepalives_count": 3,
    "tcp_user_timeout": 10_000,
}


def make_engine(url: str, busy_timeout: float = 30.0) -> Engine:
    """An engine for ``url`` with the settings this project relies on; a SQLite writer
    waits up to ``busy_timeout`` seconds (DIGEST_DB_BUSY_TIMEOUT) for another's lock."""
    url = normalize_url(url)
    kwargs: dict[str, Any] = {"pool_pre_ping": True}
    if url.startswith("sqlite"):
        kwargs["connect_args"] = {"check_same_thread": False, "timeout": busy_timeout}
    elif url.startswith("postgresql+psycopg"):
        # A value in the URL's query (…?connect_timeout=20) wins over ours.
        given = set(make_url(url).query)
        kwargs["connect_args"] = {k: v for k, v in PG_CONNECT_ARGS.items() if k not in given}
    try:
        engine = create_engine(url, **kwargs)
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        raise StoreError(f"cannot open database {url!r}: {exc}") from exc
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas(busy_timeout))
    _engines.add(engine)
    return engine


#: Every engine made here and still in use, for :func:`close_engines`.
_engines: weakref.WeakSet[Engine] = weakref.WeakSet()


@atexit.register
def close_engines() -> None:
    """Close the pooled connections of every engine still alive, at interpreter exit.
    A process that ends without collecting its garbage (the CLI freezes it at exit)
    would otherwise leave its SQLite connections open, and SQLite checkpoints the WAL
    and removes the ``-wal``/``-shm`` files only when the last connection closes."""
    for engine in list(_engines):
        engine.dispose()


def alembic_config(engine: Engine | None = None) -> Config:
    """Alembic's configuration for ``engine``; without one it can only read the scripts."""
    # Imported here: Alembic costs a sender process 0.13 s of start-up it never uses.
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if engine is not None:
        cfg.attributes["engine"] = engine
    return cfg


def migrate(engine: Engine) -> None:
    """Create or upgrade the schema to the newest revision (idempotent). Processes that
    start together on a new store take turns (migrations/env.py locks the database),
    and a store this version cannot run on is refused with what to do."""
    # Alembic only when migrating (see alembic_config).
    from alembic import command
    from alembic.util.exc import CommandError

    try:
        if _schema_is_current(engine):
            return  # no lock to take: a busy store still opens for readers
        command.upgrade(alembic_config(engine), "heads")
    except CommandError as exc:
        if "Can't locate revision" not in str(exc):
            raise StoreError(f"cannot migrate {_shown(engine)}: {exc}") from exc
        raise StoreError(
            f"the database {_shown(engine)} was migrated by a newer version of digest "
            f"({exc}); run that version or a newer one, or restore a backup made "
            "before the upgrade (digest restore)"
        ) from exc
    except OperationalError as exc:
        raise StoreError(_unopenable(engine, exc)) from exc


def _schema_is_current(engine: Engine) -> bool:
    """The store is at this version's newest revision (a read, no lock taken)."""
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    heads = set(ScriptDirectory.from_config(alembic_config()).get_heads())
    with engine.connect() as conn:
        return set(MigrationContext.configure(conn).get_current_heads()) == heads


def _shown(engine: Engine) -> str:
    return engine.url.render_as_string(hide_password=True)


def _unopenable(engine: Engine, exc: OperationalError) -> str:
    """Why the store cannot be opened, naming the file and the fix where SQLite can
    only say "unable to open database file"."""
    database = engine.url.database
    if engine.dialect.name == "sqlite" and database and database != ":memory:":
        path = Path(database).resolve()
        folder = path.parent
        if not folder.is_dir():
            return (
                f"cannot create the SQLite database {path}: the folder {folder} does not "
                "exist; create it or set DIGEST_DATABASE_URL"
            )
        writable = path if path.exists() else folder
        if not os.access(writable, os.W_OK) or "readonly" in str(exc.orig).lower():
            return (
                f"cannot write the SQLite database {path}: {writable} is not writable; "
                "set DIGEST_DATABASE_URL to a writable place"
            )
    return f"cannot migrate {_shown(engine)}: {exc.orig}"


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
