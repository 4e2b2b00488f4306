"""Scheduling a draft from the console: pick, move or clear its time (in the list's
zone); the scheduler honours it; one issue a week stays the rule; the issue list
shows the real next send. Now comes from one clock, injected into the console."""

from __future__ import annotations

import html
import re
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from console_support import EDITOR, Console, make_console
from sqlalchemy import update
from sqlalchemy.engine import Engine

from digest.core.clock import local_text, utcnow
from digest.core.settings import Settings
from digest.issue.freeze import find_issue
from digest.issue.history import history
from digest.jobs.schedule import local_moment, next_send, prepare_draft, scheduler_tick
from digest.jobs.weekly import weekly_job
from digest.store.engine import session_scope
from digest.store.models import Issue

pytestmark = pytest.mark.clock  # scheduled times, the week's one issue, DST

from pathlib import Path  # noqa: E402


def _minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


def _field(moment: datetime, console: Console) -> str:
    """What the datetime-local field sends for ``moment``, in the list's zone."""
    return f"{moment.astimezone(console.settings.tz):%Y-%m-%dT%H:%M}"


def _setup(console: Console) -> datetime:
    now = utcnow()
    console.app.state.clock = lambda: now
    with session_scope(console.engine) as session:
        assert prepare_draft(session, console.settings, now=now).issue is not None
    return now


def _issue(console: Console) -> Issue:
    with session_scope(console.engine) as session:
        issue = find_issue(session, number=1)
        assert issue is not None
        session.expunge(issue)
        return issue


def _next_send_cell(page: str, number: int) -> str:
    """The list's "Goes out" cell of issue ``number`` (digest.jobs.schedule.send_plan)."""
    row = re.search(rf'<a href="/console/issues/{number}">.*?</tr>', page, re.S)
    assert row, page[:3000]
    found = re.search(r"data-schedule[^>]*>(.*?)</td>", row.group(0), re.S)
    assert found, row.group(0)
    return html.unescape(re.sub(r"<[^>]+>", " ", found.group(1)))


def test_a_draft_scheduled_in_the_console_goes_out_then(console: Console) -> None:
    now = _setup(console)
    at = _minute(now + timedelta(days=2, hours=3))
    editor, csrf = console.login(EDITOR)
    answer = editor.post(
        "/console/issues/1/schedule",
        data={"csrf": csrf, "when": _field(at, console), "action": "schedule"},
        follow_redirects=False,
    )
    assert answer.status_code == 303 and "done=scheduled" in answer.headers["location"]
    assert _issue(console).scheduled_for == at
    shown = local_text(at, console.settings.tz)
    page = editor.get("/console/issues/1").text
    assert f'value="{_field(at, console)}"' in page and f"Goes out {shown}" in page
    assert _next_send_cell(editor.get("/console").text, 1).strip() == f"goes out {shown}"
    # The scheduler: the regular slot before it does not send it; its own minute does.
    before = weekly_job(
        console.settings,
        engine=console.engine,
        transport=console.outbox,
        now=at - timedelta(minutes=1),
        scheduled=True,
    )
    assert before.outcome == "not-due"
    assert (
        scheduler_tick(console.settings, engine=console.engine, now=at - timedelta(minutes=1))
        is None
    )
    said = scheduler_tick(console.settings, engine=console.engine, now=at, transport=console.outbox)
    assert said is not None and "sent" in said
    sent = _issue(console)
    assert sent.state == "sent" and sent.started_at == at and console.outbox.outbox
    assert [e["action"] for e in history_of(console)][:2] == ["frozen", "scheduled"]


def history_of(console: Console) -> list[dict[str, object]]:
    with session_scope(console.engine) as session:
        return history(session, _issue(console).id or 0)


def test_move_clear_and_bad_times(console: Console) -> None:
    now = _setup(console)
    editor, csrf = console.login(EDITOR)
    first, second = (_minute(now + timedelta(days=d)) for d in (1, 3))
    for at in (first, second):
        done = editor.post(
            "/console/issues/1/schedule",
            data={"csrf": csrf, "when": _field(at, console), "action": "schedule"},
        )
        assert done.status_code == 200
    assert _issue(console).scheduled_for == second
    moved = [e for e in history_of(console) if e["action"] == "scheduled"]
    assert moved[-1]["before"] == local_text(first, console.settings.tz)
    cleared = editor.post("/console/issues/1/schedule", data={"csrf": csrf, "action": "clear"})
    assert cleared.status_code == 200 and "no time of its own: the next regular send" in (
        cleared.text
    )
    assert _issue(console).scheduled_for is None
    slot = next_send(console.settings, now)
    assert slot is not None
    cell = _next_send_cell(editor.get("/console").text, 1)
    assert cell.strip() == f"goes out {local_text(slot, console.settings.tz)}"
    # Without a time of its own, the regular slot sends it.
    job = weekly_job(
        console.settings, engine=console.engine, transport=console.outbox, now=slot, scheduled=True
    )
    assert job.outcome == "sent"
    # Bad input: not a time, a time past, a form that asks for something else.
    for data, status in (
        ({"when": "next tuesday"}, 422),
        ({"when": "2026-13-40T25:00"}, 422),
        ({"when": _field(now, console), "action": "dance"}, 422),
    ):
        refused = editor.post("/console/issues/1/schedule", data={"csrf": csrf, **data})
        assert refused.status_code == status, data


def test_a_past_time_and_a_week_that_had_its_issue_are_refused(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    strict = make_console(settings, engine, tmp_path, require_approval=True)
    now = _setup(strict)
    editor, csrf = strict.login(EDITOR)
    past = editor.post(
        "/console/issues/1/schedule",
        data={"csrf": csrf, "when": _field(now - timedelta(hours=1), strict)},
    )
    assert past.status_code == 409 and "has passed" in past.text
    # A draft waiting for approval: the list says so beside its time.
    assert "awaiting an editor's approval" in _next_send_cell(editor.get("/console").text, 1)
    # Another issue went out in the week of the time asked for: one issue a week.
    at = _minute(now + timedelta(days=2))
    with session_scope(strict.engine) as session:
        session.add(
            Issue(number=99, week="x", cutoff=now, subject="s", state="sent", started_at=at)
        )
    refused = editor.post(
        "/console/issues/1/schedule", data={"csrf": csrf, "when": _field(at, strict)}
    )
    assert refused.status_code == 409 and "one issue a week" in refused.text
    assert "digest send --again" in refused.text
    assert _issue(strict).scheduled_for != at


def test_a_local_time_the_clocks_skip_is_refused() -> None:
    berlin = ZoneInfo("Europe/Berlin")
    assert local_moment("2026-07-01T09:30", berlin).hour == 7
    with pytest.raises(ValueError, match="does not exist"):
        local_moment("2026-03-29T02:30", berlin)
    with pytest.raises(ValueError, match="without a zone"):
        local_moment("2026-07-01T09:30+02:00", berlin)


def test_only_a_draft_is_scheduled(console: Console) -> None:
    _setup(console)
    with session_scope(console.engine) as session:
        session.exec(update(Issue).values(state="cancelled"))  # type: ignore[call-overload]
    editor, csrf = console.login(EDITOR)
    refused = editor.post(
        "/console/issues/1/schedule",
        data={"csrf": csrf, "when": _field(utcnow() + timedelta(days=1), console)},
    )
    assert refused.status_code == 409 and "only a draft" in refused.text
