"""Polish (issue 24 item 8): chart axis labels name their own gridlines, counts of one
are singular, an empty intro means none, and a test copy's "view in browser" link
works before the issue is sent."""

from __future__ import annotations

import re
from email import message_from_bytes, policy
from email.message import EmailMessage

import pytest
from console_support import EDITOR, OPERATOR, Console
from sqlalchemy import update
from sqlmodel import col

from digest.console.svg import HEIGHT, PLOT_H, TOP, Series, bar_chart, line_chart
from digest.issue.freeze import issue_rows
from digest.issue.render import default_intro
from digest.jobs.schedule import prepare_draft
from digest.store.engine import session_scope
from digest.store.subscriber_models import Subscriber

pytestmark = pytest.mark.clock  # freezing takes what is new since the last issue

_LINE = re.compile(r'<line x1="\d+" x2="\d+" y1="([\d.]+)" y2="[\d.]+" stroke="#d1d5db"/>')
_LABEL = re.compile(
    r'<text x="\d+" y="([\d.]+)" text-anchor="end" dominant-baseline="central" '
    r'fill="#4b5563">([\d.,]+)(%?)</text>'
)
MARK = "newest AI tool comparisons"  # words of the default intro
_BAR = re.compile(r'<rect x="[\d.]+" y="([\d.]+)" width="[\d.]+" height="([\d.]+)" [^>]*><title>')


@pytest.mark.parametrize(
    ("values", "unit"),
    [
        ([0.3, 0.1], "%"),  # the old axis said 0.1% / 0.2% / 0.4% beside 0.125 / 0.25 / 0.375
        ([1.6, 0.5], "%"),
        ([0.05, 0.0], "%"),
        ([0.0, 0.0], "%"),
        ([3, 1], ""),  # counts: never a 0.75 subscriber
        ([37, 12], ""),
        ([480, 60], ""),
    ],
)
def test_each_axis_label_sits_on_its_gridline_and_names_its_value(
    values: list[float], unit: str
) -> None:
    svg = str(bar_chart("t", "T", "D", ["#1", "#2"], [Series("S", "#b91c1c", values)], unit=unit))
    lines = [float(y) for y in _LINE.findall(svg)]
    labels = [(float(y), float(text.replace(",", ""))) for y, text, _u in _LABEL.findall(svg)]
    assert len(lines) == len(labels) == 5
    assert [y for y, _v in labels] == lines  # each label centred on its own line
    # Read the axis off the bars: a bar of value v is v/top of the plot's height.
    bars = [(float(y), float(h)) for y, h in _BAR.findall(svg)]
    tallest = max(range(len(values)), key=lambda i: values[i])
    peak = values[tallest]
    top = peak * PLOT_H / bars[tallest][1] if peak > 0 else labels[-1][1]
    for y, shown in labels:
        # to the bars' printed precision (0.1 px), far finer than the old rounding
        assert shown == pytest.approx(top * (TOP + PLOT_H - y) / PLOT_H, abs=top * 0.002)
        if unit != "%":
            assert shown == int(shown)
    assert labels[-1][1] >= max(values)


def test_the_line_chart_uses_the_same_axis() -> None:
    svg = str(line_chart("a", "A", "D", ["w1", "w2", "w3"], [Series("A", "#1d4ed8", [5, 9, 13])]))
    labels = [(float(y), text) for y, text, _u in _LABEL.findall(svg)]
    assert [t for _y, t in labels] == ["0", "4", "8", "12", "16"]
    assert labels[0][0] == TOP + PLOT_H and labels[0][0] < HEIGHT


def test_one_is_singular_on_the_pages(console: Console) -> None:
    with session_scope(console.engine) as session:
        keep = session.exec(  # type: ignore[call-overload]
            update(Subscriber)
            .where(col(Subscriber.email) != "ada@example.com")
            .values(status="unsubscribed")
        )
        assert keep.rowcount > 1
        prepare_draft(session, console.settings)
    operator, _csrf = console.login(OPERATOR)
    listing = operator.get("/console").text
    issue = operator.get("/console/issues/1").text
    send = operator.get("/console/issues/1/send").text
    assert "1 active subscriber ·" in listing
    assert "Send to 1 subscriber…" in issue
    assert "Send issue #1 to 1 subscriber?" in send and "Send to 1 subscriber now" in send
    for page in (listing, issue, send):
        wrong = re.findall(r"\b1 (?:readers|subscribers|errors|warnings|rows|links|checks)\b", page)
        assert not wrong, wrong


def _part(raw: bytes, kind: str) -> str:
    message = message_from_bytes(raw, policy=policy.default)
    assert isinstance(message, EmailMessage)
    body = message.get_body((kind,))
    assert body is not None
    return str(body.get_content())


def test_an_empty_intro_means_none(console: Console) -> None:
    with session_scope(console.engine) as session:
        issue = prepare_draft(session, console.settings).issue
        assert issue is not None
        written = issue.intro
        subject, preheader = issue.subject, issue.preheader
        rows = issue_rows(session, issue)
    # The form shows the intro the email carries, so emptying it is a change.
    editor, csrf = console.login(EDITOR)
    page = editor.get("/console/issues/1").text
    assert written and written == default_intro([])
    assert re.search(r'<textarea id="intro" name="intro"[^>]*>([^<]+)</textarea>', page)
    assert MARK in editor.get("/console/issues/1/preview").text
    answer = editor.post(
        "/console/issues/1/edit",
        data={
            "csrf": csrf,
            "subject": subject,
            "preheader": preheader,
            "intro": "",
            "slug": [c.slug for c, _full in rows],
            "position": [str(i + 1) for i in range(len(rows))],
            "layout": ["full" if full else "link" for _c, full in rows],
        },
    )
    assert answer.status_code == 200
    html = editor.get("/console/issues/1/preview").text
    text = editor.get("/console/issues/1/text").text
    assert MARK not in html and MARK not in text
    assert "intro: “" in answer.text  # recorded: the old words → none
    # The test copy (what a reader gets) carries none either.
    editor.post("/console/issues/1/test", data={"csrf": csrf, "to": "proof@example.com"})
    [copy] = console.outbox.outbox
    assert MARK not in _part(copy.raw, "html")


def test_a_test_copys_view_in_browser_link_opens_the_issue(console: Console) -> None:
    with session_scope(console.engine) as session:
        issue = prepare_draft(session, console.settings).issue
        assert issue is not None
        subject = issue.subject
    editor, csrf = console.login(EDITOR)
    editor.post("/console/issues/1/test", data={"csrf": csrf, "to": "proof@example.com"})
    [copy] = console.outbox.outbox
    html, text = _part(copy.raw, "html"), _part(copy.raw, "plain")
    found = re.search(r'<a href="([^"]+)"[^>]*>View this issue in your browser</a>', html)
    assert found, html[:2000]
    link = found.group(1)
    assert link == f"{console.settings.base_url}/console/issues/1/preview" and link in text
    path = link.removeprefix(console.settings.base_url)
    # The public archive has no unsent issue; the link goes where the issue is.
    assert console.client().get("/archive/1").status_code == 404
    opened = editor.get(path)
    assert opened.status_code == 200 and subject in opened.text
    anonymous = console.client().get(path, follow_redirects=False)
    assert anonymous.status_code == 303
    assert anonymous.headers["location"] == "/console/login?next=/console/issues/1/preview"
