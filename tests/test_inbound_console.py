"""Operators see what came back by mail: the issue page counts bounces and complaints
by source (webhook, inbound, mailbox), ``digest status --json`` too, and the Replies
page lists readers' replies with the message to download (operators only)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from bounce_corpus import sample
from cli_support import DigestCLI, settings_env
from console_support import BASE, EDITOR, OPERATOR, PASSWORD, csrf_of
from fastapi.testclient import TestClient
from inbound_support import WEEK, send_with_verp, verp_settings
from sqlalchemy.engine import Engine

from digest.accounts.service import add_user
from digest.core.settings import Settings
from digest.store.engine import session_scope
from digest.web.app import create_app
from digest.webhooks.events import EventKind, MailEvent, apply_events
from digest.webhooks.mail_events import take_in

READERS = ["a@example.com", "b@example.com", "c@example.com", "d@example.com", "e@example.com"]


def _login(client: TestClient, email: str) -> None:
    form = client.get("/console/login")
    answer = client.post(
        "/console/login",
        data={"email": email, "password": PASSWORD, "csrf": csrf_of(form)},
        follow_redirects=False,
    )
    assert answer.status_code == 303


def _came_back(settings: Settings, engine: Engine, tmp_path: Path) -> Settings:
    """One issue sent; back: a bounce by webhook, two by inbound, a complaint by the
    mailbox, and a reply."""
    s = verp_settings(settings)
    sent = send_with_verp(s, engine, tmp_path, READERS)
    apply_events(
        engine,
        [
            MailEvent(
                "postmark",
                "pm-1",
                EventKind.BOUNCED_HARD,
                "a@example.com",
                datetime.now(UTC),
                hints={"digest_issue": "1"},
            )
        ],
        s,
    )
    take_in(engine, s, sample("postfix-hard", sent["b@example.com"]), source="inbound")
    take_in(engine, s, sample("exim-mailbox-full", sent["c@example.com"]), source="inbound")
    take_in(engine, s, sample("arf-yahoo", sent["d@example.com"]), source="mailbox")
    take_in(engine, s, sample("human-reply", sent["e@example.com"]), source="inbound")
    return s


def test_status_json_counts_bounces_and_complaints_by_source(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    s = _came_back(settings, engine, tmp_path)
    status = DigestCLI(env=settings_env(s)).json("status", "--week", WEEK, "--json")
    assert status["by_source"] == {
        "webhook": {"bounces": 1, "complaints": 0},
        "inbound": {"bounces": 2, "complaints": 0},
        "mailbox": {"bounces": 0, "complaints": 1},
    }
    assert status["bounces"] == {"hard": 2, "soft": 1, "total": 3}
    assert status["complaints"] == 1


def test_the_console_shows_sources_and_lists_replies(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    s = _came_back(settings, engine, tmp_path)
    with session_scope(engine) as session:
        add_user(session, EDITOR, "editor", PASSWORD)
        add_user(session, OPERATOR, "operator", PASSWORD)
    app = create_app(s, engine=engine)

    operator = TestClient(app, base_url=BASE)
    _login(operator, OPERATOR)
    page = operator.get("/console/issues/1")
    assert page.status_code == 200
    table = page.text.split('id="by-source"')[1].split("</table>")[0]
    rows = [r for r in table.split("<tr>") if 'scope="row"' in r]
    cells = [[c.split("<")[0] for c in r.split("<td>")[1:]] for r in rows]
    assert cells == [["1", "0"], ["2", "0"], ["0", "1"]]  # webhook, inbound, mailbox

    replies = operator.get("/console/mail")
    assert replies.status_code == 200
    assert "e@example.com" in replies.text and "Re: SmolVLM 2.5" in replies.text
    assert "digest inbound" in replies.text
    link = replies.text.split('href="/console/mail/')[1].split('"')[0]
    eml = operator.get(f"/console/mail/{link}")
    assert eml.headers["content-type"].startswith("message/rfc822")
    assert b"Could you do the 7B models next?" in eml.content
    assert operator.get("/console/mail/999999.eml").status_code == 404

    editor = TestClient(app, base_url=BASE)
    _login(editor, EDITOR)
    assert editor.get("/console/mail").status_code == 403
    assert editor.get(f"/console/mail/{link}").status_code == 403
