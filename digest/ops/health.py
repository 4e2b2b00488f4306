"""Liveness and readiness probes for load balancers, systemd and orchestrators.

``GET /healthz``: the process answers (no database call: a slow database must not get
a live process restarted). ``GET /readyz``: the links in emails can be made and read
(the signing keys work), the database answers *and* its schema is at the code's
Alembic head; otherwise 503 with a short reason, so traffic waits while a database is
down or a deploy's migration has not run (``digest init``). The driver's own error text
(host, port, database name) goes to the log only.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cache

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from digest.core.settings import Settings
from digest.core.tokens import make_token, read_token
from digest.exceptions import DigestError
from digest.store.engine import alembic_config

logger = logging.getLogger(__name__)

router = APIRouter(include_in_schema=False)

#: A database that is away is usually back within seconds (a restart, a failover).
RETRY_AFTER_SECONDS = 5


@cache
def scripts() -> ScriptDirectory:
    """This code's migrations (read once per process)."""
    return ScriptDirectory.from_config(alembic_config())


def code_heads() -> frozenset[str]:
    """The Alembic head revisions this code's migrations/ folder ends in."""
    return frozenset(scripts().get_heads())


@dataclass(frozen=True)
class Readiness:
    ready: bool
    reason: str
    revision: str | None = None


def _describe(exc: SQLAlchemyError) -> str:
    # The driver's own message (refused, unknown host, auth) without SQLAlchemy's
    # statement dump; never the URL, which may hold a password.
    orig = getattr(exc, "orig", None)
    return " ".join(str(orig or exc).split())[:300]


def links_work(settings: Settings) -> bool:
    """Whether a link signed now reads back with the keys every token route uses."""
    try:
        return read_token(settings, "unsubscribe", make_token(settings, "unsubscribe", 1)) == 1
    except (DigestError, ValueError):
        logger.exception("links cannot be signed or read with the configured keys")
        return False


def readiness(engine: Engine, settings: Settings | None = None) -> Readiness:
    """Whether the app can serve: its links work, the store is reachable and migrated
    to the code's head."""
    if settings is not None and not links_work(settings):
        return Readiness(
            False, "links cannot work: check DIGEST_SECRET_KEY and DIGEST_SECRET_KEY_PREVIOUS"
        )
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
            current = frozenset(MigrationContext.configure(conn).get_current_heads())
    except SQLAlchemyError as exc:
        # The driver's text names the host, port and database: the log's, not the
        # probe's (anyone can read /readyz).
        logger.warning("readiness: database unreachable: %s", _describe(exc))
        return Readiness(False, "database unreachable")
    expected = code_heads()
    if current != expected:
        have = ", ".join(sorted(current)) or "no schema"
        return Readiness(
            False,
            f"migrations not current: database at {have}, code expects "
            f"{', '.join(sorted(expected))}; run `digest init`",
        )
    return Readiness(True, "ok", ", ".join(sorted(current)))


@router.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz")
def readyz(request: Request) -> JSONResponse:
    state = readiness(request.app.state.engine, request.app.state.settings)
    if state.ready:
        return JSONResponse({"status": "ready", "schema": state.revision})
    logger.warning("not ready: %s", state.reason)
    return JSONResponse(
        {"status": "unavailable", "reason": state.reason},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )
