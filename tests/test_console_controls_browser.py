"""Pause, resume and cancel from the console in headless Chromium (issue 24): a real
``digest serve`` sending through an aiosmtpd server at a throttled rate
(``DIGEST_RATE_LIMIT=2``) with a batch far larger than the list. The counts asserted
are those of the SMTP server's outbox: after Pause at most the message in the
transport's hands (plus the one the rate let through before the pause was read) goes
out, the page's figures match the outbox at every step, Resume finishes the list with
exactly one copy each, and the last-send summary keeps the real totals."""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from console_rig import OPERATOR, Rig, console_rig, log_in
from servers import recording_smtp, wait_for

pytestmark = pytest.mark.slow

READERS = 8  # with the 12 sample subscribers: 20
TOTAL = 20
_FIGURE = re.compile(r"(\d[\d,]*)")


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    with (
        recording_smtp() as smtp,
        console_rig(
            tmp_path,
            smtp,
            readers=READERS,
            DIGEST_RATE_LIMIT="2",
            DIGEST_BATCH_SIZE="10000",
        ) as running,
    ):
        yield running


def digests(rig: Rig) -> list[Any]:
    return [m for m in rig.smtp.messages if not m.parsed()["Subject"].startswith("[TEST]")]


def figure(page: Any, name: str) -> int:
    text = page.locator(f'[data-figure="{name}"] strong').inner_text()
    found = _FIGURE.search(text)
    assert found, text
    return int(found.group(1).replace(",", ""))


def start_send(page: Any, base: str) -> None:
    page.get_by_role("button", name="Freeze the next issue as a draft").click()
    page.wait_for_url(re.compile(r"/console/issues/1"))
    page.get_by_role("link", name=f"Send to {TOTAL} subscribers…").click()
    page.get_by_role("button", name=f"Send to {TOTAL} subscribers now").click()
    page.wait_for_url(re.compile(r"done=sending"))


def test_pause_resume_from_the_console(rig: Rig, chrome: Any) -> None:
    from playwright.sync_api import expect

    page = chrome.new_context(viewport={"width": 1280, "height": 900}).new_page()
    log_in(page, rig.base, OPERATOR)
    start_send(page, rig.base)
    # Right from the first second: every reader is counted, nothing says "0 remaining".
    assert figure(page, "remaining") == TOTAL - figure(page, "sent")
    assert figure(page, "remaining") > 0

    wait_for(lambda: len(digests(rig)) >= 3, "the first messages")
    page.goto(f"{rig.base}/console/issues/1")  # a fresh page: the click beats its refresh
    page.get_by_role("button", name="Pause").click()
    page.wait_for_url(re.compile(r"done=paused"))
    at_pause = len(digests(rig))
    expect(page.locator("#issue-state")).to_have_text("paused")
    time.sleep(2)  # at 2/s, four more would have gone out had the pause not held
    after = len(digests(rig))
    assert after - at_pause <= 2, (at_pause, after)
    page.goto(f"{rig.base}/console/issues/1")
    assert figure(page, "sent") == after
    assert figure(page, "remaining") == TOTAL - after
    assert figure(page, "queued") == TOTAL - after  # back in the queue, untouched
    expect(page.get_by_role("status").filter(has_text="Last send")).to_contain_text(f"{after} sent")

    page.get_by_role("button", name="Resume").click()
    page.wait_for_url(re.compile(r"done=resumed"))
    expect(page.locator("#issue-state")).to_have_text("sent", timeout=90_000)
    sent = digests(rig)
    assert len(sent) == TOTAL
    assert len({m.rcpt_tos for m in sent}) == TOTAL  # exactly one copy each
    assert figure(page, "sent") == TOTAL and figure(page, "remaining") == 0
    expect(page.get_by_role("status").filter(has_text="Last send")).to_contain_text(f"{TOTAL} sent")


def test_cancel_from_the_console(rig: Rig, chrome: Any) -> None:
    from playwright.sync_api import expect

    page = chrome.new_context(viewport={"width": 1280, "height": 900}).new_page()
    log_in(page, rig.base, OPERATOR)
    start_send(page, rig.base)
    wait_for(lambda: len(digests(rig)) >= 3, "the first messages")
    page.goto(f"{rig.base}/console/issues/1")
    page.get_by_label("yes, cancel it").check()
    page.get_by_role("button", name="Cancel the rest").click()
    page.wait_for_url(re.compile(r"done=cancelled"))
    at_cancel = len(digests(rig))
    expect(page.locator("#issue-state")).to_have_text("cancelled")
    time.sleep(2)
    after = len(digests(rig))
    assert after - at_cancel <= 2, (at_cancel, after)
    page.goto(f"{rig.base}/console/issues/1")
    assert figure(page, "sent") == after
    assert figure(page, "skipped") == TOTAL - after
    assert figure(page, "remaining") == 0
