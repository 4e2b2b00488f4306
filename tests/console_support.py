"""The console on a seeded store for TestClient tests: accounts for an editor and an
operator, and a browser-like client that logs in through the form."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from httpx import Response
from sqlalchemy.engine import Engine
from store_support import seed_store

from digest.accounts.service import add_user
from digest.core.settings import Settings
from digest.jobs.weekly import current_week
from digest.store.engine import session_scope
from digest.transports.memory import MemoryTransport
from digest.web.app import create_app

EDITOR, OPERATOR = "ed@example.com", "op@example.com"
PASSWORD = "correct horse battery staple"
BASE = "http://digest.test"
_CSRF = re.compile(r'name="csrf" value="([^"]+)"')


def csrf_of(page: Response) -> str:
    found = _CSRF.search(page.text)
    assert found, page.text[:2000]
    return found.group(1)


@dataclass
class Console:
    app: FastAPI
    settings: Settings
    engine: Engine
    outbox: MemoryTransport

    def client(self) -> TestClient:
        return TestClient(self.app, base_url=BASE)

    def login(self, email: str, password: str = PASSWORD) -> tuple[TestClient, str]:
        """A client logged in as ``email`` and its session's CSRF token."""
        client = self.client()
        form = client.get("/console/login")
        answer = client.post(
            "/console/login",
            data={"email": email, "password": password, "csrf": csrf_of(form)},
            follow_redirects=False,
        )
        assert answer.status_code == 303, answer.text
        home = client.get("/console")
        assert home.status_code == 200
        return client, csrf_of(home)

    def wait_for_send(self) -> None:
        runner = getattr(self.app.state, "send_runner", None)
        if runner is not None:
            runner.join(timeout=60)


def make_console(
    settings: Settings, engine: Engine, tmp_path: Path, **overrides: object
) -> Console:
    settings = settings.model_copy(update=overrides)
    seed_store(engine, settings, tmp_path, week=current_week(settings))
    with session_scope(engine) as session:
        add_user(session, EDITOR, "editor", PASSWORD)
        add_user(session, OPERATOR, "operator", PASSWORD)
    outbox = MemoryTransport()
    app = create_app(settings, engine=engine, transport_factory=lambda _s: outbox)
    return Console(app, settings, engine, outbox)


@pytest.fixture
def console(settings: Settings, engine: Engine, tmp_path: Path) -> Console:
    return make_console(settings, engine, tmp_path)
