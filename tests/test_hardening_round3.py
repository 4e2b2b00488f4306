"""Issue 22, round 3: secrets, readiness and the start-up checks (items 7, 8, 12, 13).

Each test drives the real entry point (``create_app``, ``digest serve`` as a process,
the ASGI app through its HTTP interface) and failed before its fix.
"""

from __future__ import annotations

import logging
import re
import subprocess
import sys
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from cli_support import settings_env
from conftest import TEST_SECRET, rig_settings
from fastapi.testclient import TestClient
from pydantic import SecretStr
from servers import free_port, serve_process
from sqlalchemy import select
from sqlalchemy.engine import Engine
from test_webhooks_ses import Fetcher, notification, sign
from test_webhooks_ses import bounce as ses_bounce
from test_webhooks_ses import client as ses_client
from test_webhooks_ses import post as ses_post
from webhook_helpers import add_reader, event_time, status_of

from digest.accounts.service import add_user
from digest.core.clock import utcnow
from digest.core.settings import Settings
from digest.core.tokens import TokenMinter, make_token
from digest.exceptions import ConfigError
from digest.http.accesslog import REDACTED, redact
from digest.store.engine import make_engine, session_scope
from digest.store.subscriber_models import Subscriber
from digest.web.app import create_app
from subscribers.service import add_subscriber

pytestmark = pytest.mark.clock

DIGEST = str(Path(sys.executable).with_name("digest"))
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def _subscriber(engine: Engine, email: str) -> int:
    with session_scope(engine) as session:
        add_subscriber(session, email, "")
    with engine.connect() as conn:
        table = Subscriber.__table__  # type: ignore[attr-defined]
        return int(conn.execute(select(table.c.id).where(table.c.email == email)).scalar_one())


# ---------------------------------------------------------------- 7: the previous secret


def test_an_empty_previous_secret_is_ignored_and_every_link_works(
    tmp_path: Path, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As an env file's `DIGEST_SECRET_KEY_PREVIOUS=` line sets it.
    monkeypatch.setenv("DIGEST_SECRET_KEY_PREVIOUS", "")
    settings = rig_settings(tmp_path)
    assert settings.secret_key_previous is None
    client = TestClient(create_app(settings, engine=engine), follow_redirects=False)
    sid = _subscriber(engine, "reader@example.com")
    token = TokenMinter(settings, "unsubscribe").for_address(sid, "reader@example.com")
    assert client.get(f"/unsubscribe/{token}").status_code == 200
    assert client.get(f"/preferences/{token}").status_code == 200
    assert client.get(f"/r/{make_token(settings, 'click', 1)}").status_code == 404
    confirm = f"/confirm/{make_token(settings, 'confirm', sid, issued_at=utcnow())}"
    assert client.get(confirm).status_code == 200
    assert client.post(confirm).status_code == 200  # already active: "confirmed"
    one_click = client.post(
        f"/unsubscribe/{token}", content=b"List-Unsubscribe=One-Click", headers=FORM
    )
    assert one_click.status_code == 200
    assert client.get("/readyz").json()["status"] == "ready"


@pytest.mark.parametrize("previous", ["short", "changeme", "   x   "])
def test_an_unusable_previous_secret_is_refused_at_start_up_by_name(
    tmp_path: Path, engine: Engine, previous: str
) -> None:
    settings = rig_settings(tmp_path, secret_key_previous=previous)
    with pytest.raises(ConfigError, match="DIGEST_SECRET_KEY_PREVIOUS"):
        create_app(settings, engine=engine)


def test_digest_serve_refuses_an_unusable_previous_secret(tmp_path: Path) -> None:
    env = {
        "PATH": "/usr/bin:/bin",
        "DIGEST_DATABASE_URL": f"sqlite:///{tmp_path / 'digest.db'}",
        "DIGEST_SECRET_KEY": TEST_SECRET,
        "DIGEST_SECRET_KEY_PREVIOUS": "changeme",
    }
    done = subprocess.run(
        [DIGEST, "serve", "--port", "0"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 1, done.stdout + done.stderr
    assert "DIGEST_SECRET_KEY_PREVIOUS" in done.stdout + done.stderr
    assert "Traceback" not in done.stdout + done.stderr


def test_readyz_is_not_ready_when_links_cannot_work(
    settings: Settings, engine: Engine, caplog: pytest.LogCaptureFixture
) -> None:
    app = create_app(settings, engine=engine)
    client = TestClient(app)
    assert client.get("/readyz").status_code == 200
    # Keys that no longer work, e.g. settings swapped in by a reload.
    app.state.settings = settings.model_copy(update={"secret_key_previous": SecretStr("short")})
    with caplog.at_level(logging.ERROR):
        answer = client.get("/readyz")
    assert answer.status_code == 503
    assert "links cannot work" in answer.json()["reason"]
    assert "DIGEST_SECRET_KEY_PREVIOUS" in answer.json()["reason"]


# ---------------------------------------------------------------- 12: /readyz says little


def test_readyz_says_database_unreachable_and_logs_the_detail(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    port = free_port()
    url = f"postgresql://digest:hunter2@127.0.0.1:{port}/verdicts_private_db"
    client = TestClient(create_app(settings, engine=make_engine(url)))
    with caplog.at_level(logging.WARNING, logger="digest.ops.health"):
        answer = client.get("/readyz")
    assert answer.status_code == 503
    assert answer.json() == {"status": "unavailable", "reason": "database unreachable"}
    for private in (str(port), "127.0.0.1", "verdicts_private_db", "hunter2"):
        assert private not in answer.text
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "database unreachable" in logged and str(port) in logged
    assert "hunter2" not in logged


# ---------------------------------------------------------------- 8: blank secrets are unset


@pytest.mark.parametrize("blank", ["", "   "])
def test_an_empty_admin_token_opens_nothing(
    tmp_path: Path, engine: Engine, monkeypatch: pytest.MonkeyPatch, blank: str
) -> None:
    monkeypatch.setenv("DIGEST_ADMIN_TOKEN", blank)
    monkeypatch.setenv("DIGEST_POSTMARK_WEBHOOK_USER", "hook")
    monkeypatch.setenv("DIGEST_POSTMARK_WEBHOOK_PASSWORD", blank)
    settings = rig_settings(tmp_path)
    assert settings.admin_token is None and settings.postmark_webhook_password is None
    client = TestClient(create_app(settings, engine=engine))
    for header in ("Bearer ", "Bearer", "bearer  ", f"Bearer {blank}"):
        answer = client.get("/console/api/status", headers={"Authorization": header})
        assert answer.status_code == 401, header
    hook = client.post("/webhooks/postmark", json={"RecordType": "Bounce"}, auth=("hook", ""))
    assert hook.status_code == 403


def test_a_set_admin_token_still_works(tmp_path: Path, engine: Engine) -> None:
    token = "an-admin-token-0123456789"
    client = TestClient(create_app(rig_settings(tmp_path, admin_token=token), engine=engine))
    assert (
        client.get("/console/api/status", headers={"Authorization": "Bearer x"}).status_code == 401
    )
    ok = client.get("/console/api/status", headers={"Authorization": f"Bearer {token}"})
    assert ok.status_code == 200


# ---------------------------------------------------------------- 9: tokens out of the log


def _paths(routes: list[Any], prefix: str = "") -> Iterator[str]:
    """Every route's path, through included routers (FastAPI includes them lazily)."""
    for route in routes:
        included = getattr(route, "original_router", None)
        if included is not None:
            yield from _paths(included.routes, prefix + route.include_context.prefix)
        elif isinstance(getattr(route, "path", None), str):
            yield prefix + route.path


def test_every_route_with_a_token_is_redacted_from_the_one_list(
    settings: Settings, engine: Engine
) -> None:
    app = create_app(settings, engine=engine)
    token_routes = [path for path in _paths(app.routes) if "{token}" in path]
    assert "/console/setup/{token}" in token_routes and "/r/{token}" in token_routes
    for path in token_routes:
        sample = re.sub(r"\{[a-z_]+\}", "1", path.replace("{token}", "Tok3n-VALUE_x"))
        logged = redact(f"{sample}?next=/console")
        assert "Tok3n-VALUE_x" not in logged and REDACTED in logged, path


def test_digest_serve_never_logs_a_set_password_link(
    tmp_path: Path, engine: Engine, settings: Settings
) -> None:
    with session_scope(engine) as session:
        token = add_user(session, "new@example.com", "editor").setup_token
    assert token is not None
    env = {**settings_env(settings), "PATH": "/usr/bin:/bin"}
    port = free_port()
    with serve_process(env, tmp_path, port):
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/console/setup/{token}").status_code == 200
        assert httpx.get(f"{base}/console/setup/not-a-real-token-at-all").status_code == 404
    log = (tmp_path / "serve.log").read_text()
    assert "/console/setup/[token]" in log
    assert token not in log and "not-a-real-token-at-all" not in log


# ---------------------------------------------------------------- 13: the SNS Timestamp


@pytest.mark.parametrize(
    ("stamp", "accepted"),
    [
        (lambda: event_time(timedelta(seconds=30)), True),
        (lambda: event_time(timedelta(seconds=400)), False),  # older than 300 s
        (lambda: event_time(timedelta(seconds=-400)), False),  # from the future
        (lambda: "nan", False),
        (lambda: "2026-13-45T99:00:00Z", False),
        (lambda: event_time().replace("Z", ""), False),  # no zone: not SNS's form
    ],
)
def test_the_sns_timestamp_is_held_to_the_webhook_age(
    settings: Settings, engine: Engine, stamp: Any, accepted: bool
) -> None:
    add_reader(engine, "b@example.com")
    client = ses_client(settings, engine, Fetcher(), webhook_max_age_seconds=300)
    message = {**notification(ses_bounce("b@example.com")), "Timestamp": stamp()}
    answer = ses_post(client, sign(message))
    if accepted:
        assert answer.status_code == 200, answer.text
        assert status_of(engine, "b@example.com") == "bounced"
    else:
        assert answer.status_code == 401, answer.text
        assert "timestamp" in answer.json()["detail"]
        assert status_of(engine, "b@example.com") == "active"
