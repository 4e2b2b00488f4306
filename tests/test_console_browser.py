"""The console in headless Chromium against a real ``digest serve`` and an aiosmtpd
SMTP server: an editor logs in, edits the subject, previews at 375 px, sends a test
that arrives, approves; an operator sends and watches the progress to the end; an
editor cannot send; axe-core finds no serious or critical violation on the pages."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from console_rig import (
    EDITOR,
    OPERATOR,
    Rig,
    axe_source,
    axe_violations,
    console_rig,
    log_in,
)
from servers import recording_smtp, wait_for
from sqlalchemy import select, update

from digest.core.clock import utcnow
from digest.jobs.weekly import weekly_job
from digest.store.engine import make_engine
from digest.store.subscriber_models import Subscriber
from digest.transports.memory import MemoryTransport

pytestmark = pytest.mark.slow

READERS = 48  # with the 12 sample subscribers: 60, sent at 30/s
NEW_SUBJECT = "Two voice agents, one verdict"


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    with (
        recording_smtp() as smtp,
        console_rig(tmp_path, smtp, readers=READERS, DIGEST_RATE_LIMIT="30") as running,
    ):
        yield running


def _expect() -> Any:
    from playwright.sync_api import expect

    return expect


def test_editor_reviews_then_operator_sends(rig: Rig, chrome: Any, tmp_path: Path) -> None:
    expect = _expect()
    base = rig.base
    editor = chrome.new_context(viewport={"width": 1280, "height": 900})
    page = editor.new_page()
    log_in(page, base, EDITOR)
    expect(page.get_by_role("heading", name="Issues", exact=True)).to_be_visible()
    page.get_by_role("button", name="Freeze the next issue as a draft").click()
    page.wait_for_url(re.compile(r"/console/issues/1\?done=drafted"))

    # Edit the subject; the page and the preview are re-compiled.
    page.get_by_label("Subject").fill(NEW_SUBJECT)
    save = page.get_by_role("button", name="Save and re-compile")
    save.scroll_into_view_if_needed()
    save.click()
    page.wait_for_url(re.compile(r"done=edited"))
    expect(page.get_by_role("heading", level=1)).to_contain_text(NEW_SUBJECT)
    expect(page.get_by_role("status").first).to_contain_text("Saved")
    history = page.locator("ol.history")
    expect(history).to_contain_text(f"edited by {EDITOR}")

    # The phone preview: the email laid out in 375 px, nothing wider than the screen.
    for title in (
        "Preview of issue #1 at 375 pixels",
        "Dark-mode preview of issue #1 at 375 pixels",
    ):
        frame = page.frame_locator(f'iframe[title="{title}"]')
        expect(frame.get_by_text("Hi Sample,")).to_be_visible()
    phone = editor.new_page()
    phone.set_viewport_size({"width": 375, "height": 800})
    phone.goto(f"{base}/console/issues/1/preview")
    assert phone.evaluate("document.documentElement.scrollWidth") <= 375
    phone.screenshot(path=str(tmp_path / "preview-375.png"), full_page=True)
    phone.goto(f"{base}/console/issues/1")
    assert phone.evaluate("document.documentElement.scrollWidth") <= 375

    # A test copy to any address arrives at the SMTP server, marked [TEST].
    page.get_by_label("Send a [TEST] copy to").fill("proofreader@example.com")
    page.get_by_role("button", name="Send test").click()
    page.wait_for_url(re.compile(r"done=tested"))
    [test_copy] = wait_for(lambda: rig.to("proofreader@example.com"), "the test copy")  # type: ignore[misc]
    assert test_copy.parsed()["Subject"] == f"[TEST] {NEW_SUBJECT}"
    expect(history).to_contain_text("proofreader@example.com")

    # An editor is not offered the send, and the server refuses it all the same.
    expect(page.get_by_role("link", name=re.compile("Send to"))).to_have_count(0)
    csrf = page.locator('input[name="csrf"]').first.get_attribute("value")
    refused = page.request.post(
        f"{base}/console/issues/1/send", form={"csrf": csrf}, headers={"Origin": base}
    )
    assert refused.status == 403 and "operator account" in refused.text()
    answer = page.goto(f"{base}/console/issues/1/send")
    assert answer is not None and answer.status == 403
    page.goto(f"{base}/console/issues/1")

    page.get_by_role("button", name="Approve").click()
    page.wait_for_url(re.compile(r"done=approved"))
    expect(page.locator(".state.approved").first).to_be_visible()
    assert rig.to("reader0000@example.com") == []
    editor.close()

    # The operator sends: the confirmation states the count, the transport and the From.
    operator = chrome.new_context(viewport={"width": 1280, "height": 900})
    page = operator.new_page()
    log_in(page, base, OPERATOR)
    page.goto(f"{base}/console/issues/1")
    page.get_by_role("link", name="Send to 60 subscribers…").click()
    confirm = page.locator("main")
    expect(confirm).to_contain_text("Send issue #1 to 60 subscribers?")
    expect(confirm).to_contain_text(f"SMTP to {rig.smtp.host}:{rig.smtp.port}")
    expect(confirm).to_contain_text("digest@verdicts.test")
    page.get_by_role("button", name="Send to 60 subscribers now").click()
    page.wait_for_url(re.compile(r"done=sending"))
    expect(page.get_by_role("heading", name="Progress")).to_be_visible()
    # The page refreshes itself until the send is over.
    expect(page.locator("#issue-state")).to_have_text("sent", timeout=90_000)
    expect(page.locator(".figures")).to_contain_text("60 sent")
    expect(page.locator(".figures")).to_contain_text("0 remaining")
    digests = [m for m in rig.smtp.messages if not m.parsed()["Subject"].startswith("[TEST]")]
    assert len(digests) == 60 and all(len(m.rcpt_tos) == 1 for m in digests)
    assert {m.parsed()["Subject"] for m in digests} == {NEW_SUBJECT}
    operator.close()


def _send_in_waves_and_click(rig: Rig) -> None:
    local = rig.settings.model_copy(update={"send_local_time": "09:00"})
    engine = make_engine(local.database_url)
    S = Subscriber.__table__  # type: ignore[attr-defined]
    with engine.begin() as conn:
        ids = list(conn.execute(select(S.c.id).order_by(S.c.id)).scalars())
        conn.execute(
            update(S).where(S.c.id.in_(ids[:9])).values(topics=json.dumps(["Developer Tools"]))
        )
        conn.execute(update(S).where(S.c.id.in_(ids[::4])).values(timezone="Asia/Tokyo"))
    outbox = MemoryTransport()
    later = utcnow() + timedelta(days=2)
    weekly_job(local, engine=engine, transport=outbox, issue=1, clock=lambda: later, max_wait=0)
    engine.dispose()
    token = re.search(rb"/r/([A-Za-z0-9_-]+)", outbox.outbox[0].raw)
    assert token is not None
    answer = httpx.get(f"{rig.base}/r/{token.group(1).decode()}", follow_redirects=False)
    assert answer.status_code == 302


def test_console_pages_pass_axe(rig: Rig, chrome: Any) -> None:
    source = axe_source()
    # axe is injected as an inline script, which the console's CSP forbids.
    context = chrome.new_context(bypass_csp=True, viewport={"width": 1280, "height": 900})
    page = context.new_page()
    page.goto(f"{rig.base}/console/login")
    problems = {"/console/login": axe_violations(page, source)}
    log_in(page, rig.base, OPERATOR)
    page.get_by_role("button", name="Freeze the next issue as a draft").click()
    page.wait_for_url(re.compile(r"/console/issues/1"))
    for path in (
        "/console",
        "/console/issues/1",
        "/console/issues/1/send",
        "/console/subscribers",
        "/console/subscribers/import/new",
    ):
        page.goto(f"{rig.base}{path}")
        problems[path] = axe_violations(page, source)
    # The issue goes out in variants and local-time waves, and readers click: the
    # pages with the readers' tables and charts.
    _send_in_waves_and_click(rig)
    for path in (
        "/console/issues/1",
        "/console/issues/1/deliveries",
        "/console/subscribers/1",
        "/console/charts",
    ):
        page.goto(f"{rig.base}{path}")
        for summary in page.locator("details > summary").all():
            summary.click()  # what a closed <details> hides is checked too
        problems[f"{path} (sent)"] = axe_violations(page, source)
    phone = context.new_page()
    phone.set_viewport_size({"width": 375, "height": 800})
    phone.goto(f"{rig.base}/console/issues/1")
    problems["/console/issues/1 at 375 px"] = axe_violations(phone, source)
    found = {path: v for path, v in problems.items() if v}
    assert found == {}, found
    context.close()
