"""``/healthz`` (the process answers) and ``/readyz`` (the database answers and its
schema is at the code's Alembic head; 503 with the reason otherwise)."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from servers import free_port
from subscriber_support import WebApp, make_web

from digest.core.settings import Settings
from digest.ops.health import code_heads, scripts
from digest.store.engine import alembic_config, make_engine


def test_healthz_answers_without_asking_the_database(settings: Settings) -> None:
    unreachable = make_engine(f"postgresql://postgres@127.0.0.1:{free_port()}/test")
    app = make_web(settings, unreachable)
    response = app.client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}


def test_readyz_is_ready_on_a_migrated_store(web: WebApp) -> None:
    response = web.client.get("/readyz")
    assert response.status_code == 200, response.text
    assert response.json() == {"status": "ready", "schema": ", ".join(sorted(code_heads()))}


def test_readyz_reports_a_schema_behind_the_code_until_it_is_current(
    sqlite_web: WebApp,
) -> None:
    (head,) = code_heads()
    down = scripts().get_revision(head).down_revision
    assert down is not None
    previous = down if isinstance(down, str) else sorted(down)[-1]  # a merge: one parent
    cfg = alembic_config(sqlite_web.engine)
    command.stamp(cfg, previous, purge=True)

    response = sqlite_web.client.get("/readyz")
    assert response.status_code == 503
    reason = response.json()["reason"]
    assert reason.startswith("migrations not current")
    assert f"database at {previous}" in reason and f"code expects {head}" in reason
    assert "digest init" in reason

    command.stamp(cfg, "heads", purge=True)  # as `digest init` leaves it
    assert sqlite_web.client.get("/readyz").status_code == 200


def test_readyz_reports_an_empty_database(settings: Settings, tmp_path: Path) -> None:
    empty = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    response = make_web(settings, empty).client.get("/readyz")
    assert response.status_code == 503
    assert "database at no schema" in response.json()["reason"]


def test_readyz_reports_an_unreachable_database_without_its_password(
    settings: Settings,
) -> None:
    url = f"postgresql://digest:hunter2-secret@127.0.0.1:{free_port()}/test"
    response = make_web(settings, make_engine(url)).client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["reason"] == "database unreachable"
    assert "hunter2" not in response.text
