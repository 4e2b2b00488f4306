"""Issue 22, round 3: secrets, readiness and the start-up checks (items 7, 8, 12, 13).

Each test drives the real entry point (``create_app``, ``digest serve`` as a process,
the ASGI app through its HTTP interface) and failed before its fix.
"""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TEST_SECRET, rig_settings
from fastapi.testclient import TestClient
from pydantic import SecretStr
from servers import free_port
from sqlalchemy import select
from sqlalchemy.engine import Engine

from digest.core.clock import utcnow
from digest.core.settings import Settings
from digest.core.tokens import TokenMinter, make_token
from digest.exceptions import ConfigError
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
