"""``digest backup PATH`` and ``digest restore PATH --yes`` for the SQLite store.

A backup uses SQLite's online backup API, so it is a consistent snapshot even while a
send or the web app writes (no need to stop anything); it is written beside the target
as a partial file, checked (``PRAGMA integrity_check``) and only then renamed into
place, as a single self-contained file (rollback journal, no ``-wal`` to forget).

A restore checks the backup first (a SQLite database, intact, with a schema this code
knows), refuses while a sender holds a live lease, keeps a copy of the current database
beside it (``<db>.before-restore-<time>``: a restore loses nothing either), copies the
backup in with the same API and upgrades its schema to the newest.

PostgreSQL has better tools than a wrapper could be (``pg_dump``/``pg_restore``,
continuous archiving): for a PostgreSQL URL both commands print the commands to use
and exit non-zero instead of doing half the job.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

from alembic.util.exc import CommandError
from sqlalchemy import func, select
from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError, OperationalError

from digest.core.clock import utcnow
from digest.core.settings import Settings
from digest.core.wording import plural
from digest.exceptions import BackupError
from digest.ops.health import scripts
from digest.store.engine import make_engine, migrate, normalize_url
from digest.store.models import Delivery, DeliveryState

logger = logging.getLogger(__name__)

D = Delivery.__table__  # type: ignore[attr-defined]

#: progress(pages copied, pages in all)
PageProgress = Callable[[int, int], None]
#: Pages copied per step: small enough that writers are never blocked for long.
STEP_PAGES = 256
#: Row counts a summary shows (tables every schema revision has).
SUMMARY_TABLES = ("comparison", "subscriber", "issue", "delivery")


@dataclass(frozen=True)
class StoreSnapshot:
    """What a database file holds, in a few numbers."""

    path: Path
    size: int
    revision: str
    rows: dict[str, int]

    def describe(self) -> str:
        counts = ", ".join(plural(n, table) for table, n in self.rows.items())
        return f"{self.path} ({self.size:,} bytes, schema {self.revision}; {counts})"


def postgres_guidance(url: URL) -> str:
    """What to run instead for a PostgreSQL store (the password never printed)."""
    libpq = url.set(drivername="postgresql").render_as_string(hide_password=True)
    return (
        "digest backup/restore copy SQLite stores only; for PostgreSQL use its own tools:\n"
        f"  backup:  pg_dump --format=custom --file digest.dump '{libpq}'\n"
        f"  restore: pg_restore --clean --if-exists --no-owner --dbname '{libpq}' digest.dump\n"
        "  then:    digest init   (upgrades a dump from an older version)\n"
        "(a password in DIGEST_DATABASE_URL is shown as ***: give it via PGPASSWORD or "
        "~/.pgpass; for point-in-time recovery see PostgreSQL's continuous archiving)"
    )


def sqlite_file(database_url: str) -> Path:
    """The SQLite file behind ``database_url``, or a clear error for anything else."""
    try:
        url = make_url(normalize_url(database_url))
    except ArgumentError as exc:
        raise BackupError(f"DIGEST_DATABASE_URL is not a database URL: {exc}") from exc
    backend = url.get_backend_name()
    if backend == "postgresql":
        raise BackupError(postgres_guidance(url))
    if backend != "sqlite":
        raise BackupError(f"digest backup/restore support SQLite files, not {backend}")
    if url.database in (None, "", ":memory:"):
        raise BackupError("an in-memory SQLite database cannot be backed up or restored")
    return Path(url.database)


def _snapshot(conn: sqlite3.Connection, path: Path) -> StoreSnapshot:
    """Check ``conn``'s database is intact and ours; raise BackupError otherwise."""
    try:
        check = conn.execute("PRAGMA integrity_check").fetchone()[0]
        if check != "ok":
            raise BackupError(f"{path} is damaged: {check}")
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        if "alembic_version" not in tables:
            raise BackupError(f"{path} is a SQLite database but not a digest store")
        revision = conn.execute("SELECT version_num FROM alembic_version").fetchone()[0]
        rows = {
            t: int(conn.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0])  # noqa: S608
            for t in SUMMARY_TABLES
            if t in tables
        }
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{path} is not a SQLite database ({exc})") from exc
    return StoreSnapshot(path=path, size=path.stat().st_size, revision=revision, rows=rows)


def _copy(
    source: sqlite3.Connection, target: sqlite3.Connection, progress: PageProgress | None
) -> None:
    def step(_status: int, remaining: int, total: int) -> None:
        if progress is not None:
            progress(total - remaining, total)

    source.backup(target, pages=STEP_PAGES, progress=step)


def _connect(path: Path) -> sqlite3.Connection:
    # timeout: wait for a writer's transaction instead of failing at once.
    return sqlite3.connect(path, timeout=30)


def _write_backup(source: Path, target: Path, progress: PageProgress | None) -> StoreSnapshot:
    partial = target.with_name(f".{target.name}.partial")
    partial.unlink(missing_ok=True)
    try:
        with closing(_connect(source)) as src, closing(sqlite3.connect(partial)) as dst:
            _copy(src, dst, progress)
            dst.execute("PRAGMA journal_mode=DELETE")  # one self-contained file
            _snapshot(dst, partial)
        partial.replace(target)
    except sqlite3.Error as exc:
        raise BackupError(f"backup of {source} failed: {exc}") from exc
    finally:
        partial.unlink(missing_ok=True)
    with closing(sqlite3.connect(f"file:{target}?mode=ro", uri=True)) as done:
        return _snapshot(done, target)


def backup_store(
    settings: Settings, target: Path, *, force: bool = False, progress: PageProgress | None = None
) -> StoreSnapshot:
    """Copy the live SQLite store to ``target`` (a consistent snapshot, checked)."""
    source = sqlite_file(settings.database_url)
    if not source.is_file():
        raise BackupError(f"there is no database at {source} (DIGEST_DATABASE_URL)")
    if target.exists() and target.resolve() == source.resolve():
        raise BackupError("the backup path is the database itself")
    if target.is_dir():
        raise BackupError(f"{target} is a folder; give a file name, e.g. {target / 'digest.db'}")
    if target.exists() and not force:
        raise BackupError(f"{target} exists; choose another name or add --force")
    target.parent.mkdir(parents=True, exist_ok=True)
    snapshot = _write_backup(source, target, progress)
    logger.info("backup written: %s", snapshot.describe())
    return snapshot


def _check_restorable(backup: Path) -> StoreSnapshot:
    if not backup.is_file():
        raise BackupError(f"no backup file at {backup}")
    with closing(sqlite3.connect(f"file:{backup}?mode=ro", uri=True)) as conn:
        snapshot = _snapshot(conn, backup)
    try:
        known = scripts().get_revision(snapshot.revision) is not None
    except CommandError:
        known = False
    if not known:
        raise BackupError(
            f"{backup} has schema {snapshot.revision}, which this version does not know "
            "(made by a newer version?); nothing was changed"
        )
    return snapshot


def _live_leases(settings: Settings) -> int:
    """Deliveries a running sender holds right now (0 for a store without any)."""
    engine = make_engine(settings.database_url)
    try:
        with engine.connect() as conn:
            return int(
                conn.execute(
                    select(func.count()).where(
                        D.c.state == DeliveryState.SENDING.value, D.c.lease_expires_at > utcnow()
                    )
                ).scalar_one()
            )
    except OperationalError:  # no delivery table yet: nothing can be sending
        return 0
    finally:
        engine.dispose()


@dataclass(frozen=True)
class RestoreReport:
    restored: StoreSnapshot
    kept: Path | None

    def summary(self) -> str:
        line = f"restored {self.restored.describe()}"
        if self.kept is not None:
            line += f"\nthe database as it was before: {self.kept}"
        return line


def restore_store(
    settings: Settings, backup: Path, *, progress: PageProgress | None = None
) -> RestoreReport:
    """Replace the SQLite store's content with ``backup``'s, keeping a copy of the old."""
    database = sqlite_file(settings.database_url)
    backup_snapshot = _check_restorable(backup)
    if database.exists() and backup.resolve() == database.resolve():
        raise BackupError("the backup path is the database itself")
    kept: Path | None = None
    if database.is_file():
        if leased := _live_leases(settings):
            raise BackupError(
                f"a sender is working ({plural(leased, 'delivery')} under a live lease); "
                "`digest pause` it or let it finish, then restore"
            )
        stamp = utcnow().strftime("%Y%m%dT%H%M%SZ")
        kept = database.with_name(f"{database.name}.before-restore-{stamp}")
        _write_backup(database, kept, None)
    database.parent.mkdir(parents=True, exist_ok=True)
    try:
        with closing(_connect(backup)) as src, closing(_connect(database)) as dst:
            _copy(src, dst, progress)
    except sqlite3.Error as exc:
        raise BackupError(f"restore into {database} failed: {exc}") from exc
    engine = make_engine(settings.database_url)
    try:
        migrate(engine)
    finally:
        engine.dispose()
    logger.info("restored %s into %s", backup, database)
    return RestoreReport(restored=backup_snapshot, kept=kept)
