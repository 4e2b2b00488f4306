"""Fixtures for the subscriber and web tests: a store on SQLite and (when
DIGEST_TEST_POSTGRES_URL is set) on PostgreSQL in a throw-away schema, the web app on
it with an in-memory transport, and helpers to read the confirmation link."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from conftest import throwaway_postgres
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from digest.core.clock import window
from digest.core.settings import Settings
from digest.store.engine import make_engine, migrate
from digest.store.importer import import_comparisons
from digest.transports.memory import MemoryTransport
from digest.web.app import create_app


@dataclass
class Store:
    settings: Settings
    engine: Engine


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, settings: Settings) -> Iterator[Store]:
    """The same test on SQLite and on PostgreSQL (skipped without DIGEST_TEST_POSTGRES_URL)."""
    if request.param == "sqlite":
        engine = make_engine(settings.database_url)
        migrate(engine)
        yield Store(settings, engine)
        engine.dispose()
        return
    with throwaway_postgres() as url:
        engine = make_engine(url)
        migrate(engine)
        try:
            yield Store(settings.model_copy(update={"database_url": url}), engine)
        finally:
            engine.dispose()


@dataclass
class WebApp:
    client: TestClient
    outbox: MemoryTransport
    settings: Settings
    engine: Engine

    def confirmation_links(self) -> list[str]:
        """The confirm link of every confirmation email so far, in order."""
        links = []
        for stored in self.outbox.outbox:
            msg = parse(stored.raw)
            body = msg.get_body(("plain",))
            assert body is not None
            found = re.search(r"https?://\S+/confirm/[A-Za-z0-9_-]+", body.get_content())
            if found:
                links.append(found.group(0))
        return links

    def path(self, url: str) -> str:
        assert url.startswith(self.settings.base_url)
        return url[len(self.settings.base_url) :]


def parse(raw: bytes) -> EmailMessage:
    msg = message_from_bytes(raw, policy=policy.default)
    assert isinstance(msg, EmailMessage)
    return msg


def make_web(settings: Settings, engine: Engine, **overrides: object) -> WebApp:
    s = settings.model_copy(update={"subscribe_rate_limit": 1000, **overrides})
    outbox = MemoryTransport()
    app = create_app(s, engine=engine, transport_factory=lambda _s: outbox)
    return WebApp(TestClient(app, follow_redirects=False), outbox, s, engine)


@pytest.fixture
def web(store: Store) -> WebApp:
    """The app on the parametrised store, confirmations captured in memory."""
    return make_web(store.settings, store.engine)


@pytest.fixture
def sqlite_web(settings: Settings, engine: Engine) -> WebApp:
    return make_web(settings, engine)


SAMPLE = Path(__file__).resolve().parent.parent / "digest" / "sample" / "comparisons.json"


def import_sample(
    engine: Engine, settings: Settings, tmp_path: Path, week: str, count: int = 2
) -> None:
    """``count`` sample comparisons published inside ``week``'s window (own slugs)."""
    items = json.loads(SAMPLE.read_text(encoding="utf-8"))[:count]
    start, _ = window(week, settings.tz)
    for index, item in enumerate(items):
        item["published_at"] = (start + timedelta(hours=12 + index)).isoformat()
        item["slug"] = f"sample-{index}-{week.lower()}"
    src = tmp_path / f"sample-{week}.json"
    src.write_text(json.dumps(items), encoding="utf-8")
    import_comparisons(engine, [src])


def write(path: Path, content: str) -> Path:
    path.write_text(content, encoding="utf-8")
    return path
