"""Shared pieces of the webhook tests: an app on a real store, readers, lookups."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from fastapi.testclient import TestClient
from provider_server import configure
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from digest.core.clock import utcnow
from digest.core.settings import Settings
from digest.store.engine import session_scope
from digest.store.subscriber_models import Subscriber
from digest.web.app import create_app
from digest.webhooks.events import MailEventRecord
from subscribers.service import add_subscriber


def event_time(ago: timedelta = timedelta(minutes=1)) -> str:
    """When a provider says the event happened: a minute before the test's now, in the
    ISO form providers send. Never a literal date: the soft-bounce window and the
    webhook age limit are counted back from now."""
    return (utcnow() - ago).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def client_for(settings: Settings, engine: Engine, **webhook_settings: Any) -> TestClient:
    app = create_app(configure(settings, **webhook_settings), engine=engine)
    return TestClient(app)


def add_reader(engine: Engine, email: str) -> int:
    with session_scope(engine) as session:
        sub, _ = add_subscriber(session, email, "Reader")
        assert sub.id is not None
        return sub.id


def status_of(engine: Engine, email: str) -> str:
    with engine.connect() as conn:
        table = Subscriber.__table__  # type: ignore[attr-defined]
        return str(conn.execute(select(table.c.status).where(table.c.email == email)).scalar_one())


def event_count(engine: Engine) -> int:
    with engine.connect() as conn:
        table = MailEventRecord.__table__  # type: ignore[attr-defined]
        return int(conn.execute(select(func.count()).select_from(table)).scalar_one())
