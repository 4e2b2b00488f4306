"""The per-reader digest in the console: an issue's variants (recipients each) and
local-time waves, its clicks per comparison, the most read over the last issues, and
a reader's preferences, which an operator can set; the same from the CLI."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from email import message_from_bytes, policy
from pathlib import Path

from cli_support import DigestCLI
from console_support import BASE, EDITOR, OPERATOR, Console, make_console
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.engine import Engine
from sqlmodel import Session
from store_support import sample_emails

from digest.core.clock import utcnow
from digest.core.settings import Settings
from digest.delivery.send_loop import deliver
from digest.issue.freeze import issue_message
from digest.jobs.weekly import weekly_job
from digest.store.models import Issue
from digest.store.subscriber_models import Subscriber

S = Subscriber.__table__  # type: ignore[attr-defined]
TOKEN = re.compile(r"http://digest\.test/r/([A-Za-z0-9_-]+)")


def _table(page: str, table_id: str) -> str:
    start = page.index(f'id="{table_id}"')
    return page[start : page.index("</table>", start)]


def _prefer(engine: Engine, emails: list[str], **values: object) -> None:
    with engine.begin() as conn:
        conn.execute(update(S).where(S.c.email.in_(emails)).values(**values))


def _subscriber_id(engine: Engine, email: str) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(S.c.id).where(S.c.email == email)).scalar_one())


def _local_time_console(settings: Settings, engine: Engine, tmp_path: Path) -> Console:
    console = make_console(settings, engine, tmp_path, send_local_time="09:00", timezone="UTC")
    emails = sample_emails()
    _prefer(console.engine, emails[:3], topics=json.dumps(["Developer Tools"]))
    _prefer(console.engine, emails[3:5], topics=json.dumps(["Productivity", "Writing"]))
    _prefer(console.engine, emails[:2], timezone="Pacific/Auckland")
    _prefer(console.engine, emails[5:8], timezone="America/Los_Angeles")
    return console


def test_an_issue_page_shows_variants_waves_and_clicks(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    console = _local_time_console(settings, engine, tmp_path)
    editor, _ = console.login(EDITOR)
    started = utcnow()
    result = weekly_job(
        console.settings,
        engine=console.engine,
        transport=console.outbox,
        now=started,
        clock=lambda: started,
        max_wait=0,
    )
    assert result.number is not None
    page = editor.get(f"/console/issues/{result.number}").text
    variants = _table(page, "variants")
    # Three preference sets, one compile each; the recipients of each on its row.
    assert "every topic" in variants and "the issue as edited" in variants
    assert re.search(r"Developer Tools</th>.*?>3</td></tr>", variants, re.S)
    assert re.search(r"Productivity, Writing</th>.*?>2</td></tr>", variants, re.S)
    assert re.search(r"every topic.*?>7</td></tr>", variants, re.S)
    waves = _table(page, "waves")
    assert waves.count("<tr>") == 4  # the header, and Auckland, Los Angeles, UTC (default)
    assert "Pacific/Auckland" in waves and "America/Los_Angeles" in waves
    assert "UTC (default)" in waves
    assert 'id="clicks"' not in page  # nothing went out yet: no clicks to show

    # Two days later every wave is out; readers click; the page charts the clicks.
    later = started + timedelta(days=2)
    with console.engine.connect() as conn:
        issue_id = conn.execute(
            select(Issue.__table__.c.id).where(Issue.__table__.c.number == result.number)  # type: ignore[attr-defined]
        ).scalar_one()
    with Session(console.engine) as session:
        issue = session.get(Issue, issue_id)
        assert issue is not None
        message = issue_message(issue, console.settings)
    deliver(
        console.engine,
        issue_id,
        message,
        console.outbox,
        console.settings,
        clock=lambda: later,
        max_wait=0,
    )
    assert len(console.outbox.outbox) == 12
    text = (
        message_from_bytes(console.outbox.outbox[0].raw, policy=policy.default)
        .get_body(("plain",))
        .get_content()  # type: ignore[union-attr]
    )
    tokens = TOKEN.findall(text)
    assert tokens
    # Three readers on three networks (one client counts once per link per hour).
    for n in range(3):
        reader = TestClient(console.app, base_url=BASE, client=(f"198.51.100.{n + 1}", 1000))
        assert reader.get(f"/r/{tokens[0]}", follow_redirects=False).status_code == 302
    assert reader.get(f"/r/{tokens[-1]}", follow_redirects=False).status_code == 302
    console.app.state.clicks.flush()
    page = editor.get(f"/console/issues/{result.number}").text
    assert 'id="clicks"' in page and 'aria-labelledby="clicks-t clicks-d"' in page
    clicks = _table(page, "clicks")
    assert re.search(r"<td class=\"num\">3</td>", clicks)
    charts = editor.get("/console/charts").text
    assert "Most read over the last 8 issues" in charts
    assert 'aria-labelledby="most-read-t most-read-d"' in charts
    assert "leads with 3" in charts or "leads with 4" in charts


def test_a_draft_shows_what_its_start_will_compile(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    console = _local_time_console(settings, engine, tmp_path)
    editor, csrf = console.login(EDITOR)
    drafted = editor.post("/console/draft", data={"csrf": csrf})
    assert drafted.status_code == 200
    assert "3 different sets of topics and frequency" in drafted.text
    assert "Developer Tools, weekly: 3 readers" in drafted.text


def test_an_operator_sets_a_readers_preferences(console: Console) -> None:
    email = sample_emails()[0]
    sid = _subscriber_id(console.engine, email)
    operator, csrf = console.login(OPERATOR)
    page = operator.get(f"/console/subscribers/{sid}").text
    assert 'id="pref-topics">every topic<' in page and 'id="pref-frequency">weekly<' in page
    saved = operator.post(
        f"/console/subscribers/{sid}/preferences",
        data={
            "csrf": csrf,
            "topic": ["Developer Tools"],
            "frequency": "monthly",
            "timezone": "Europe/Berlin",
        },
    )
    assert saved.status_code == 200 and "Preferences saved" in saved.text
    assert 'id="pref-topics">Developer Tools<' in saved.text
    assert 'id="pref-timezone">Europe/Berlin<' in saved.text
    with console.engine.connect() as conn:
        row = conn.execute(select(S.c.topics, S.c.frequency, S.c.timezone).where(S.c.id == sid))
        assert tuple(row.one()) == ('["Developer Tools"]', "monthly", "Europe/Berlin")
    for bad in ({"timezone": "Mars/Olympus"}, {"frequency": "daily"}, {"topic": ["Knitting"]}):
        refused = operator.post(
            f"/console/subscribers/{sid}/preferences", data={"csrf": csrf, **bad}
        )
        assert refused.status_code == 422 and "not saved" in refused.text, bad
    # Personal data: editors may not see or change it.
    editor, editor_csrf = console.login(EDITOR)
    assert (
        editor.post(
            f"/console/subscribers/{sid}/preferences",
            data={"csrf": editor_csrf, "timezone": "Asia/Tokyo"},
        ).status_code
        == 403
    )
    with console.engine.connect() as conn:
        assert conn.execute(select(S.c.timezone).where(S.c.id == sid)).scalar() == "Europe/Berlin"


def test_the_cli_shows_and_sets_preferences(
    settings: Settings, engine: Engine, tmp_path: Path, digest_cli: DigestCLI
) -> None:
    make_console(settings, engine, tmp_path)
    email = sample_emails()[1]
    shown = digest_cli("subscribers", "preferences", email)
    assert shown.exit_code == 0, shown.output
    assert "every topic; weekly; time zone the default" in shown.output
    assert "Developer Tools" in shown.output  # the topics to choose from
    changed = digest_cli(
        "subscribers", "preferences", email, "--topic", "Writing", "--timezone", "Asia/Tokyo"
    )
    assert changed.exit_code == 0, changed.output
    assert "topics Writing; weekly; time zone Asia/Tokyo" in changed.output
    kept = digest_cli("subscribers", "preferences", email, "--frequency", "monthly")
    assert "topics Writing; monthly; time zone Asia/Tokyo" in kept.output
    reset = digest_cli("subscribers", "preferences", email, "--all-topics", "--timezone", "")
    assert "every topic; monthly; time zone the default" in reset.output
    bad = digest_cli("subscribers", "preferences", email, "--timezone", "Nowhere/Land")
    assert bad.exit_code != 0 and "unknown time zone" in bad.output
    info = digest_cli.json("subscribers", "show", email, "--json")
    assert (info["topics"], info["frequency"], info["timezone"]) == (None, "monthly", None)
