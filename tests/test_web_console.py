"""The operator console: auth, CSRF, trigger a send, live counts, pause/resume/cancel."""

from __future__ import annotations

from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy.engine import Engine
from store_support import WEEK, sample_emails, seed_store

from digest.config import Settings
from digest.transports.memory import MemoryTransport
from digest.web.app import create_app
from digest.web.console import csrf_token

TOKEN = "operator-token-for-tests-0123456789"


@pytest.fixture
def console(settings: Settings, engine: Engine, tmp_path: Path):  # type: ignore[no-untyped-def]
    settings = settings.model_copy(update={"admin_token": SecretStr(TOKEN)})
    seed_store(engine, settings, tmp_path)
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
        "/console/send", data={"csrf": csrf_token(settings), "week": WEEK}, follow_redirects=False
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/console/issues/{WEEK}"
    _wait(app)
    assert sorted(m.recipient.email for m in outbox.outbox) == sorted(sample_emails())
    status = client.get("/console/api/status", params={"week": WEEK}).json()
    assert status["issue"]["state"] == "sent"
    assert status["issue"]["counts"]["sent"] == len(sample_emails())
    assert status["sender_running"] is False
    page = client.get(f"/console/issues/{WEEK}")
    assert page.status_code == 200 and "Issue 2026-W47: sent" in page.text
    # A second trigger sends nobody anything twice.
    client.post("/console/send", data={"csrf": csrf_token(settings), "week": WEEK})
    _wait(app)
    assert len(outbox.outbox) == len(sample_emails())


def test_forms_need_the_csrf_token_and_our_origin(console) -> None:  # type: ignore[no-untyped-def]
    client, _app, outbox, settings = console
    assert client.post("/console/send", data={"week": WEEK}).status_code == 403
    foreign = client.post(
        "/console/send",
        data={"csrf": csrf_token(settings), "week": WEEK},
        headers={"Origin": "https://evil.example"},
    )
    assert foreign.status_code == 403
    assert outbox.outbox == []


def test_pause_resume_and_cancel(console) -> None:  # type: ignore[no-untyped-def]
    client, app, outbox, settings = console
    form = {"csrf": csrf_token(settings)}
    # The preview freezes a draft an editor can read before anything is sent.
    preview = client.get(f"/console/issues/{WEEK}/preview")
    assert preview.status_code == 200 and "Hi Sample," in preview.text
    assert "[[%" not in preview.text
    assert client.post(f"/console/issues/{WEEK}/pause", data=form).status_code == 200
    status = client.get("/console/api/status", params={"week": WEEK}).json()
    assert status["issue"]["state"] == "paused"
    # A paused issue is not sent by the weekly trigger.
    client.post("/console/send", data={**form, "week": WEEK})
    _wait(app)
    assert outbox.outbox == []
    client.post(f"/console/issues/{WEEK}/resume", data=form)
    _wait(app)
    assert len(outbox.outbox) == len(sample_emails())
    # Cancelling a finished issue is refused with a reason.
    refused = client.post(f"/console/issues/{WEEK}/cancel", data=form)
    assert refused.status_code == 409 and "sent" in refused.text
    assert client.post(f"/console/issues/{WEEK}/explode", data=form).status_code == 404
    assert client.get("/console/issues/not-a-week").status_code == 404
