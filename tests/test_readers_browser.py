"""A reader in headless Chromium against a real ``digest serve``: the sign-up form
takes the browser's own time zone (the one script of the public pages), topics and a
frequency, and they are stored with the pending address whose confirmation arrives."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from console_rig import browser, console_rig
from servers import recording_smtp, wait_for
from sqlalchemy import select

from digest.core.tokens import TokenMinter
from digest.store.engine import make_engine, session_scope
from digest.store.subscriber_models import Subscriber
from subscribers.service import add_subscriber

pytestmark = pytest.mark.slow

S = Subscriber.__table__  # type: ignore[attr-defined]


def test_sign_up_takes_the_browsers_time_zone(tmp_path: Path) -> None:
    from playwright.sync_api import expect

    with (
        recording_smtp() as smtp,
        console_rig(tmp_path, smtp, DIGEST_SEND_LOCAL_TIME="09:00") as rig,
        browser() as chrome,
    ):
        context = chrome.new_context(timezone_id="Pacific/Auckland", locale="en-NZ")
        page = context.new_page()
        page.goto(f"{rig.base}/subscribe")
        expect(page).to_have_title(re.compile(r"^Subscribe · "))
        expect(page.locator("#timezone")).to_have_value("Pacific/Auckland")
        page.get_by_label("Email address").fill("kiri@example.com")
        page.get_by_label("Developer Tools").check()
        page.get_by_label("Once a month").check()
        page.get_by_role("button", name="Subscribe").click()
        expect(page.get_by_role("heading", level=1)).to_contain_text("inbox")
        wait_for(lambda: rig.to("kiri@example.com"), "the confirmation email")
        engine = make_engine(rig.settings.database_url)
        with engine.connect() as conn:
            row = conn.execute(
                select(S.c.status, S.c.topics, S.c.frequency, S.c.timezone).where(
                    S.c.email == "kiri@example.com"
                )
            ).one()
        engine.dispose()
        assert tuple(row) == ("pending", '["Developer Tools"]', "monthly", "Pacific/Auckland")
        context.close()


def test_preferences_preselect_the_browsers_zone_and_the_feed_reads_as_a_page(
    tmp_path: Path,
) -> None:
    from playwright.sync_api import expect

    with recording_smtp() as smtp, console_rig(tmp_path, smtp) as rig, browser() as chrome:
        engine = make_engine(rig.settings.database_url)
        with session_scope(engine) as session:
            reader, _created = add_subscriber(session, "kenji@example.com", "Kenji")
            reader_id = reader.id
        engine.dispose()
        assert reader_id is not None
        token = TokenMinter(rig.settings, "unsubscribe").for_address(reader_id, "kenji@example.com")
        context = chrome.new_context(timezone_id="Asia/Tokyo", locale="ja-JP")
        page = context.new_page()
        page.goto(f"{rig.base}/preferences/{token}")
        # No zone chosen yet: the browser's is preselected, grouped under its region.
        expect(page.locator("#timezone")).to_have_value("Asia/Tokyo")
        assert page.locator('optgroup[label="Asia"] option[value="Asia/Tokyo"]').count() == 1
        page.get_by_role("button", name="Save my choices").click()
        expect(page.get_by_role("status")).to_contain_text("Saved.")
        engine = make_engine(rig.settings.database_url)
        with engine.connect() as conn:
            zone = conn.execute(select(S.c.timezone).where(S.c.id == reader_id)).scalar()
        engine.dispose()
        assert zone == "Asia/Tokyo"
        # The Atom feed opened in a browser is a page a person can read.
        page.goto(f"{rig.base}/archive/feed.atom")
        expect(page.get_by_role("heading", level=1)).to_contain_text("feed")
        expect(page.locator("code.feed-url")).to_contain_text("/archive/feed.atom")
        context.close()
