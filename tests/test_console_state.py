"""One state, shown the same everywhere (issue 24 item 4): the console's issue list, the
issue page, `digest status --json` and `digest history` show the review and the
schedule that :func:`digest.jobs.schedule.send_plan` gives, and the scheduler does what
they say."""

from __future__ import annotations

import html
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from cli_support import DigestCLI, settings_env
from console_support import EDITOR, Console, make_console
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine
from sqlmodel import Session
from store_support import sample_items, write_json

from digest.core.clock import local_text, week_bounds, week_of
from digest.core.settings import Settings
from digest.editorial.review import approve, hold, release
from digest.issue.freeze import find_issue, freeze_next
from digest.jobs.schedule import (
    WHY_ALREADY,
    WHY_AWAITING,
    WHY_HELD,
    WHY_SENT,
    next_send,
    scheduler_tick,
    send_plan,
)
from digest.jobs.schedule import prepare_draft as draft_now
from digest.jobs.weekly import weekly_job
from digest.store.engine import session_scope
from digest.store.importer import import_comparisons

pytestmark = pytest.mark.clock  # sends at chosen instants, slots a week on


def _row(listing: str, number: int) -> str:
    found = re.search(
        rf'<tr>\s*<th scope="row" data-label="Issue"><a href="/console/issues/{number}">.*?</tr>',
        listing,
        re.S,
    )
    assert found, listing[:3000]
    return found.group(0)


def _text(fragment: str) -> str:
    return html.unescape(re.sub(r"<[^>]+>", "", fragment)).strip()


def views(client: TestClient, cli: DigestCLI, number: int, **env: str) -> dict[str, Any]:
    """Review and schedule of issue ``number`` as each of the four places shows them."""
    row = _row(client.get("/console").text, number)
    review_cell = re.search(r"<span [^>]*data-review>(.*?)</span>", row, re.S)
    schedule_cell = re.search(r"<td [^>]*data-schedule[^>]*>(.*?)</td>", row, re.S)
    assert review_cell and schedule_cell, row
    page = client.get(f"/console/issues/{number}").text
    page_review = re.search(r'id="issue-review">review: (.*?)</span>', page)
    page_schedule = re.search(r'<span id="issue-schedule"[^>]*>(.*?)</span>', page)
    assert page_review and page_schedule
    api = client.get(f"/console/api/status?number={number}").json()["issue"]
    status = cli.json("status", "--issue", str(number), "--json", **env)
    first = cli.ok("history", "--issue", str(number), **env).stdout.splitlines()[0]
    head = re.fullmatch(rf"issue #{number} \(\S+\): (\w+), review (\w+); (.*)", first)
    assert head, first
    return {
        "list": (_text(review_cell.group(1)), _text(schedule_cell.group(1))),
        "page": (_text(page_review.group(1)), _text(page_schedule.group(1))),
        "status": (status["review"], status["schedule"]["text"]),
        "history": (head.group(2), head.group(3)),
        "api": (api["review"], api["schedule"]["text"]),
        "why_not": status["schedule"]["why_not"],
        "next_send": status["schedule"]["next_send"],
        "page_html": page,
    }


def agreed(found: dict[str, Any]) -> tuple[str, str]:
    """The one (review, schedule) the four places (and the console's JSON) agree on."""
    shown = {found[place] for place in ("list", "page", "status", "history", "api")}
    assert len(shown) == 1, shown
    return shown.pop()


def _new_comparisons(engine: Engine, tmp_path: Path, when: datetime) -> None:
    items = []
    for index, item in enumerate(sample_items()[:2]):
        item = dict(item, slug=f"fresh-{index}", title=f"Fresh {index} vs Other", url=None)
        item["published_at"] = when.isoformat()
        items.append(item)
    import_comparisons(engine, [write_json(tmp_path / "fresh.json", items)])


@pytest.fixture
def strict(settings: Settings, engine: Engine, tmp_path: Path) -> Console:
    """The console, Berlin time, the default Monday 09:00 slot, approval required."""
    return make_console(settings, engine, tmp_path, timezone="Europe/Berlin", require_approval=True)


def test_list_page_status_and_history_agree_and_the_scheduler_does_what_they_say(
    strict: Console, tmp_path: Path
) -> None:
    settings, engine, tz = strict.settings, strict.engine, strict.settings.tz
    cli = DigestCLI(env=settings_env(settings))
    env = {"DIGEST_REQUIRE_APPROVAL": "true"}
    editor, csrf = strict.login(EDITOR)
    # Issue #1 goes out by hand two hours ago; #2 is frozen for a slot in that same week.
    sent_at = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    if week_of(sent_at, tz) != week_of(sent_at + timedelta(minutes=1), tz):
        sent_at -= timedelta(minutes=2)  # keep #2's slot in #1's week
    with session_scope(engine) as session:
        first = draft_now(session, settings, now=sent_at).issue
        assert first is not None
        approve(session, first, EDITOR)
    assert weekly_job(settings, engine=engine, transport=strict.outbox, issue=1, now=sent_at)
    _new_comparisons(engine, tmp_path, sent_at + timedelta(seconds=30))
    slot = sent_at + timedelta(minutes=1)
    with session_scope(engine) as session:
        second = freeze_next(session, settings, scheduled_for=slot, actor=EDITOR).issue
        assert second is not None and second.number == 2

    # #1: its real review and its real send time, nothing "scheduled".
    one = views(editor, cli, 1, **env)
    assert agreed(one) == ("approved", f"sent {local_text(sent_at, tz)}")
    assert one["why_not"] == WHY_SENT and one["next_send"] is None

    # #2 waits for approval: no next send.
    two = views(editor, cli, 2, **env)
    review, schedule = agreed(two)
    assert review == "pending" and "awaiting an editor's approval" in schedule
    assert two["why_not"] == WHY_AWAITING and two["next_send"] is None

    with session_scope(engine) as session:
        draft = find_issue(session, number=2)
        assert draft is not None
        hold(session, draft, EDITOR, "pricing is wrong")
    two = views(editor, cli, 2, **env)
    review, schedule = agreed(two)
    assert review == "held" and "held by ed@example.com: pricing is wrong" in schedule
    assert two["why_not"] == WHY_HELD and two["next_send"] is None

    # Approved, on a week that already had #1: not at its slot, at the next week's.
    with session_scope(engine) as session:
        draft = find_issue(session, number=2)
        assert draft is not None
        release(session, draft, EDITOR)
    approved = editor.post("/console/issues/2/review", data={"csrf": csrf, "decision": "approve"})
    assert approved.status_code == 200 and "goes out at its time" not in approved.text
    week_end = week_bounds(week_of(slot, tz), tz)[1]
    deferred = next_send(settings, week_end)
    assert deferred is not None
    two = views(editor, cli, 2, **env)
    review, schedule = agreed(two)
    assert review == "approved"
    assert schedule == (
        f"goes out {local_text(deferred, tz)}, not {local_text(slot, tz)}: issue #1 already "
        "went out that week (one issue a week)"
    )
    assert two["why_not"] == WHY_ALREADY
    assert datetime.fromisoformat(two["next_send"]) == deferred
    assert "goes out at its time" not in two["page_html"]

    # The scheduler keeps to it: nothing at the turn of the week, the send at that slot.
    quiet = week_end + timedelta(minutes=5)
    assert scheduler_tick(settings, engine=engine, now=quiet, transport=strict.outbox) is None
    said = scheduler_tick(settings, engine=engine, now=deferred, transport=strict.outbox)
    assert said is not None and "sent" in said
    two = views(editor, cli, 2, **env)
    assert agreed(two) == ("approved", f"sent {local_text(deferred, tz)}")


def test_an_issue_sent_without_approval_reads_unreviewed_not_pending(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    console = make_console(settings, engine, tmp_path)
    assert weekly_job(console.settings, engine=engine, transport=console.outbox).outcome == "sent"
    editor, _csrf = console.login(EDITOR)
    cli = DigestCLI(env=settings_env(console.settings))
    found = views(editor, cli, 1)
    review, schedule = agreed(found)
    assert review == "unreviewed" and schedule.startswith("sent ")
    with Session(engine) as session:
        issue = find_issue(session, number=1)
        assert issue is not None and issue.review == "pending"  # as stored: never reviewed
        assert send_plan(session, console.settings, issue).review == "unreviewed"


def test_a_draft_with_nothing_in_its_way_goes_at_its_slot(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    console = make_console(settings, engine, tmp_path, timezone="Europe/Berlin")
    editor, csrf = console.login(EDITOR)
    assert editor.post("/console/draft", data={"csrf": csrf}).status_code == 200
    cli = DigestCLI(env=settings_env(console.settings))
    found = views(editor, cli, 1)
    slot = next_send(console.settings, datetime.now(UTC))
    assert slot is not None
    assert agreed(found) == ("pending", f"goes out {local_text(slot, console.settings.tz)}")
    assert found["why_not"] is None and datetime.fromisoformat(found["next_send"]) == slot
