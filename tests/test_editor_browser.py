"""The editorial workspace in headless Chromium against a real ``digest serve``: an
editor writes a note with a link and a <script> (the live preview shows the link, the
script is gone and never runs), previews two readers' copies side by side, schedules
the draft in the list's zone and approves it.

With ``EDITOR_SHOTS=docs/screenshots`` it also writes the README's screenshots of the
three new parts of the issue page (console-note.png, console-copies.png,
console-schedule.png)."""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from console_rig import EDITOR, Rig, console_rig, log_in
from servers import recording_smtp
from sqlalchemy import select, update

from digest.core.clock import local_text, utcnow
from digest.store.engine import make_engine
from digest.store.subscriber_models import Subscriber

pytestmark = [pytest.mark.slow, pytest.mark.clock]  # the scheduled time is now + 2 days

NOTE = (
    "A busy week: read [how we score](https://example.com/method) first.\n\n"
    '<script>alert("gotcha")</script>\n\n- *voice* agents\n- **spreadsheets**\n'
)


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    with recording_smtp() as smtp, console_rig(tmp_path, smtp) as running:
        yield running


def _topics(rig: Rig) -> None:
    """Three readers chose Productivity and Writing, two chose Data & Analytics."""
    engine = make_engine(rig.settings.database_url)
    S = Subscriber.__table__  # type: ignore[attr-defined]
    with engine.begin() as conn:
        ids = list(conn.execute(select(S.c.id).order_by(S.c.id)).scalars())
        words, sheets = ids[:3], ids[3:5]
        conn.execute(
            update(S)
            .where(S.c.id.in_(words))
            .values(topics=json.dumps(["Productivity", "Writing"]))
        )
        conn.execute(
            update(S).where(S.c.id.in_(sheets)).values(topics=json.dumps(["Data & Analytics"]))
        )
    engine.dispose()


def test_note_copies_side_by_side_schedule_approve(rig: Rig, chrome: Any, tmp_path: Path) -> None:
    from playwright.sync_api import expect

    shots = Path(os.environ.get("EDITOR_SHOTS") or tmp_path)
    context = chrome.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    alerts: list[str] = []
    page.on("dialog", lambda dialog: (alerts.append(dialog.message), dialog.dismiss()))
    log_in(page, rig.base, EDITOR)
    page.get_by_role("button", name="Freeze the next issue as a draft").click()
    page.wait_for_url(re.compile(r"/console/issues/1\?done=drafted"))
    _topics(rig)
    page.goto(f"{rig.base}/console/issues/1")

    # The note: the live preview (server-rendered, sanitised) shows the link, no script.
    box = page.get_by_label(re.compile("Editor’s note"))
    box.fill(NOTE)
    shown = page.locator("#note-preview")
    # The preview asks the server a moment after typing stops: generous on a busy machine.
    expect(shown.get_by_role("link", name="how we score")).to_have_attribute(
        "href", "https://example.com/method", timeout=30_000
    )
    expect(shown.locator("li em")).to_have_text("voice")
    assert shown.locator("script").count() == 0 and "gotcha" not in shown.inner_html()
    page.locator("section", has=page.get_by_role("heading", name="Edit")).screenshot(
        path=str(shots / "console-note.png")
    )
    save = page.get_by_role("button", name="Save and re-compile")
    save.scroll_into_view_if_needed()
    save.click()
    page.wait_for_url(re.compile(r"done=edited"))
    email = page.frame_locator('iframe[title="Preview of issue #1 at 600 pixels"]')
    expect(email.get_by_role("link", name="how we score")).to_be_visible()
    assert email.locator("script").count() == 0
    expect(page.locator("ol.history")).to_contain_text("note:")

    # Every copy: the two topic sets' copies side by side, each with its readers.
    table = page.locator("#copies-table")
    words = table.locator("tr", has_text="Productivity, Writing")
    sheets = table.locator("tr", has_text="Data & Analytics")
    expect(words).to_contain_text("3")
    expect(sheets).to_contain_text("2")
    page.get_by_label("Left").select_option(words.get_attribute("data-copy"))
    page.get_by_label("Right").select_option(sheets.get_attribute("data-copy"))
    show = page.get_by_role("button", name="Show side by side")
    # The previews above are still loading and moving the page: bring it in view first.
    show.scroll_into_view_if_needed()
    with page.expect_navigation():
        show.click()
    assert re.search(r"\?a=[0-9a-f]+&b=[0-9a-f]+", page.url), page.url
    frames = page.locator("#side-by-side iframe")
    expect(frames).to_have_count(2)
    left = page.frame_locator("#side-by-side figure:nth-child(1) iframe")
    right = page.frame_locator("#side-by-side figure:nth-child(2) iframe")
    expect(left.get_by_text("Cadence Notes vs Murmur Minutes").first).to_be_visible()
    expect(left.get_by_role("link", name="how we score")).to_be_visible()
    expect(right.get_by_text("Tessellate vs GridSage").first).to_be_visible()
    assert left.get_by_text("Tessellate vs GridSage").count() == 0
    one, two = (frames.nth(i).bounding_box() for i in range(2))
    assert one is not None and two is not None
    assert abs(one["y"] - two["y"]) < 1 and one["x"] + one["width"] <= two["x"]
    page.locator("#copies").screenshot(path=str(shots / "console-copies.png"))

    # Schedule it in the list's zone, then approve.
    at = (utcnow() + timedelta(days=2)).replace(second=0, microsecond=0)
    local = at.astimezone(rig.settings.tz)
    page.get_by_label(re.compile(r"Send at \(Europe/Berlin\)")).fill(f"{local:%Y-%m-%dT%H:%M}")
    page.get_by_role("button", name="Schedule", exact=True).click()
    page.wait_for_url(re.compile(r"done=scheduled"))
    expect(page.locator("#next-send")).to_contain_text(local_text(at, rig.settings.tz))
    page.locator("#schedule").screenshot(path=str(shots / "console-schedule.png"))
    page.get_by_role("button", name="Approve").click()
    page.wait_for_url(re.compile(r"done=approved"))
    expect(page.locator(".state.approved").first).to_be_visible()
    page.goto(f"{rig.base}/console")
    expect(page.locator("td[data-schedule]").first).to_contain_text(
        f"goes out {local_text(at, rig.settings.tz)}"
    )
    assert alerts == [] and rig.smtp.messages == []
    context.close()
