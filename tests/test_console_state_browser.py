"""What a person sees and presses (issue 24 items 4, 5, 7, 8), in headless Chromium
against a real ``digest serve`` mailing through an aiosmtpd server: the issue's state
shown alike on the list, its page and `digest status`; the send page's live probe of
the unsubscribe host (the server itself); a test copy's view-in-browser link; chart
labels on their gridlines as drawn; the subscriber CSV export, and an import that
skips bad rows with the skipped lines to download."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cli_support import DigestCLI
from console_rig import EDITOR, OPERATOR, Rig, console_rig, log_in
from servers import recording_smtp, wait_for

pytestmark = pytest.mark.slow

#: Each y-axis label's centre against its gridline, in the SVG's own units.
_LABEL_OFFSETS = """
() => [...document.querySelectorAll('svg.chart')].flatMap(svg => {
  const lines = [...svg.querySelectorAll('line')].map(l => +l.getAttribute('y1'));
  return [...svg.querySelectorAll('text[dominant-baseline="central"]')].map(t => {
    const box = t.getBBox();
    const y = +t.getAttribute('y');
    return {chart: svg.id || svg.getAttribute('aria-labelledby'), label: t.textContent,
            line: lines.includes(y), offset: Math.abs(box.y + box.height / 2 - y)};
  });
})
"""


@pytest.fixture
def rig(tmp_path: Path) -> Iterator[Rig]:
    with recording_smtp() as smtp, console_rig(tmp_path, smtp) as running:
        yield running


def _cli(rig: Rig) -> DigestCLI:
    return DigestCLI(env={k: v for k, v in rig.env.items() if k.startswith("DIGEST_")})


def test_state_probe_test_link_and_charts_as_a_person_sees_them(
    rig: Rig, chrome: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    base = rig.base
    editor = chrome.new_context(viewport={"width": 1280, "height": 900})
    page = editor.new_page()
    log_in(page, base, EDITOR)
    page.get_by_role("button", name="Freeze the next issue as a draft").click()
    page.wait_for_url(re.compile(r"/console/issues/1"))
    expect(page.locator("#issue-review")).to_have_text("review: pending")
    planned = page.locator("#issue-schedule").inner_text()
    assert planned.startswith("goes out ")
    status = _cli(rig).json("status", "--json")
    assert (status["review"], status["schedule"]["text"]) == ("pending", planned)

    # A test copy's "view in browser" link opens the issue (the archive has no draft).
    page.get_by_label("Send a [TEST] copy to").fill("proofreader@example.com")
    page.get_by_role("button", name="Send test").click()
    page.wait_for_url(re.compile(r"done=tested"))
    [copy] = wait_for(lambda: rig.to("proofreader@example.com"), "the test copy")  # type: ignore[misc]
    html = copy.parsed().get_body(("html",)).get_content()
    link = re.search(r'<a href="([^"]+)"[^>]*>View this issue in your browser</a>', html)
    assert link and link.group(1).startswith(base)
    opened = page.goto(link.group(1))
    assert opened is not None and opened.status == 200
    subject = copy.parsed()["Subject"].removeprefix("[TEST] ")
    expect(page).to_have_title(subject)
    editor.close()

    # The operator's send page probes this very server's /healthz and says what it means.
    operator = chrome.new_context(viewport={"width": 1280, "height": 900})
    page = operator.new_page()
    log_in(page, base, OPERATOR)
    page.goto(f"{base}/console/issues/1")
    page.get_by_role("link", name=re.compile(r"Send to 12 subscribers")).click()
    probe = page.locator('tr[data-check="unsubscribe host"]')
    expect(probe).to_contain_text("ok")
    expect(probe).to_contain_text(f"{base}/healthz answers")
    expect(probe.locator("[data-meaning]")).to_contain_text("Readers can unsubscribe")
    expect(page.locator('tr[data-check="links"] [data-meaning]')).to_contain_text(
        "Does not block this send."
    )
    page.get_by_role("button", name="Send to 12 subscribers now").click()
    page.wait_for_url(re.compile(r"done=sending"))
    expect(page.locator("#issue-state")).to_have_text("sent", timeout=90_000)

    # Sent: its real review and its real send time, the same on the list and the page.
    expect(page.locator("#issue-review")).to_have_text("review: unreviewed")
    shown = page.locator("#issue-schedule").inner_text()
    assert shown.startswith("sent ") and "goes out" not in shown
    page.goto(f"{base}/console")
    row = page.locator("tr", has=page.locator('a[href="/console/issues/1"]'))
    expect(row.locator("[data-review]")).to_have_text("unreviewed")
    expect(row.locator("[data-schedule]")).to_have_text(shown)
    status = _cli(rig).json("status", "--json")
    assert (status["review"], status["schedule"]["text"]) == ("unreviewed", shown)

    # The charts' axis labels, as Chromium draws them, sit centred on their gridlines.
    page.goto(f"{base}/console/charts")
    labels = page.evaluate(_LABEL_OFFSETS)
    assert len(labels) >= 15  # three charts with an axis, five labels each
    off = [label for label in labels if not label["line"] or label["offset"] > 1.5]
    assert off == [], off
    operator.close()


def test_subscriber_csv_export_and_an_import_that_skips_bad_rows(
    rig: Rig, chrome: Any, tmp_path: Path
) -> None:
    from playwright.sync_api import expect

    context = chrome.new_context(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    page = context.new_page()
    log_in(page, rig.base, OPERATOR)
    page.goto(f"{rig.base}/console/subscribers")
    with page.expect_download() as exported:
        page.get_by_role("link", name="Export all as CSV").click()
    rows = list(csv.DictReader(io.StringIO(Path(exported.value.path()).read_text("utf-8"))))
    assert len(rows) == 12
    assert {"topics", "frequency", "timezone", "consent_source"} <= set(rows[0])

    upload = tmp_path / "readers.csv"
    upload.write_text(
        "email,name\nnew1@example.com,One\nnot-an-address,Bad\nnew2@example.com,Two\n",
        encoding="utf-8",
    )
    page.get_by_role("link", name="Import a CSV").click()
    page.get_by_label("CSV file").set_input_files(str(upload))
    page.get_by_label("Where and how these people agreed").fill("meetup sign-up sheet")
    page.get_by_label("Skip bad rows: import the valid ones").check()
    page.get_by_role("button", name="Import").click()
    status = page.get_by_role("status")
    expect(status).to_contain_text("Imported: 2 added", timeout=30_000)
    expect(status).to_contain_text("1 bad line left out")
    expect(page.locator("#skipped")).to_contain_text("not-an-address")
    with page.expect_download() as skipped:
        page.get_by_role("link", name=re.compile("Download the 1 skipped line")).click()
    report = list(csv.DictReader(io.StringIO(Path(skipped.value.path()).read_text("utf-8"))))
    assert [(r["line"], r["email"]) for r in report] == [("3", "not-an-address")]
    page.goto(f"{rig.base}/console/subscribers?q=new")
    expect(page.locator("main")).to_contain_text("new1@example.com")
    expect(page.locator("main")).to_contain_text("new2@example.com")
    context.close()
