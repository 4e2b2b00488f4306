"""The operator console: auth, CSRF, trigger a send, live counts, pause/resume/cancel."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy.engine import Engine
from store_support import sample_emails, seed_store

from digest.config import Settings
from digest.db import session_scope
from digest.editorial.schedule import prepare_draft
from digest.jobs import current_week
from digest.transports.memory import MemoryTransport
from digest.web.app import create_app
from digest.web.console import csrf_token

TOKEN = "operator-token-for-tests-0123456789"


@pytest.fixture
def console(settings: Settings, engine: Engine, tmp_path: Path):  # type: ignore[no-untyped-def]
    settings = settings.model_copy(update={"admin_token": SecretStr(TOKEN)})
    seed_store(engine, settings, tmp_path, week=current_week(settings))
    outbox = MemoryTransport()
    app = create_app(settings, engine=engine, transport_factory=lambda _s: outbox)
    client = TestClient(app, base_url="http://digest.test")
    client.auth = ("operator", TOKEN)
    return client, app, outbox, settings


def _wait(app) -> None:  # type: ignore[no-untyped-def]
    app.state.send_runner.join(timeout=60)


def test_console_is_off_without_a_token(settings: Settings, engine: Engine) -> None:
    client = TestClient(create_app(settings, engine=engine))
    assert client.get("/console").status_code == 404


def test_console_requires_the_token(console) -> None:  # type: ignore[no-untyped-def]
    client, *_ = console
    anonymous = TestClient(client.app, base_url="http://digest.test")
    answer = anonymous.get("/console")
    assert answer.status_code == 401
    assert answer.headers["www-authenticate"].startswith("Basic")
    assert anonymous.get("/console", auth=("operator", "wrong")).status_code == 401
    bearer = anonymous.get("/console/api/status", headers={"Authorization": f"Bearer {TOKEN}"})
    assert bearer.status_code == 200


def test_send_from_the_console_and_watch_counts(console) -> None:  # type: ignore[no-untyped-def]
    client, app, outbox, settings = console
    answer = client.post(
        "/console/send", data={"csrf": csrf_token(settings)}, follow_redirects=False
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/console/issues/1"
    _wait(app)
    assert sorted(m.recipient.email for m in outbox.outbox) == sorted(sample_emails())
    status = client.get("/console/api/status", params={"number": 1}).json()
    assert status["issue"]["state"] == "sent"
    assert status["issue"]["counts"]["sent"] == len(sample_emails())
    assert status["sender_running"] is False
    page = client.get("/console/issues/1")
    assert page.status_code == 200 and "Issue #1 (" in page.text and "): sent" in page.text
    # A second trigger sends nobody anything twice.
    client.post("/console/send", data={"csrf": csrf_token(settings), "number": "1"})
    _wait(app)
    assert len(outbox.outbox) == len(sample_emails())


def test_forms_need_the_csrf_token_and_our_origin(console) -> None:  # type: ignore[no-untyped-def]
    client, _app, outbox, settings = console
    assert client.post("/console/send", data={}).status_code == 403
    foreign = client.post(
        "/console/send",
        data={"csrf": csrf_token(settings)},
        headers={"Origin": "https://evil.example"},
    )
    assert foreign.status_code == 403
    assert outbox.outbox == []


def test_pause_resume_and_cancel(console) -> None:  # type: ignore[no-untyped-def]
    client, app, outbox, settings = console
    form = {"csrf": csrf_token(settings)}
    # A GET never changes anything: no issue yet, no preview.
    assert client.get("/console/issues/1/preview").status_code == 404
    with session_scope(app.state.engine) as session:
        assert prepare_draft(session, settings).created
    preview = client.get("/console/issues/1/preview")
    assert preview.status_code == 200 and "Hi Sample," in preview.text
    assert "[[%" not in preview.text
    assert client.post("/console/issues/1/pause", data=form).status_code == 200
    status = client.get("/console/api/status", params={"number": 1}).json()
    assert status["issue"]["state"] == "paused"
    # A paused issue is not sent by the weekly trigger.
    client.post("/console/send", data=form)
    _wait(app)
    assert outbox.outbox == []
    client.post("/console/issues/1/resume", data=form)
    _wait(app)
    assert len(outbox.outbox) == len(sample_emails())
    # Cancelling a finished issue is refused with a reason.
    refused = client.post("/console/issues/1/cancel", data=form)
    assert refused.status_code == 409 and "sent" in refused.text
    assert client.post("/console/issues/1/explode", data=form).status_code == 404
    assert client.get("/console/issues/not-a-number").status_code == 422
    assert client.get("/console/issues/99").status_code == 404
