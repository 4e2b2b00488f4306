"""What the console's pages show about issues, gathered from the store."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from digest.console.pages import ConsoleProblem
from digest.core.clock import utcnow
from digest.core.settings import Settings
from digest.delivery.queue import OPEN_STATES, counts
from digest.issue.freeze import find_issue, issue_message
from digest.jobs.preview import SAMPLE_RECIPIENT
from digest.jobs.schedule import SendPlan, send_plan
from digest.store.models import Issue
from digest.webhooks.events import provider_events

logger = logging.getLogger(__name__)

LIST_LIMIT = 100
OPEN = tuple(state.value for state in OPEN_STATES)
_DARK_QUERY = re.compile(
    r"@media\s+(?:only\s+)?(?:screen\s+and\s+)?\(\s*prefers-color-scheme\s*:\s*dark\s*\)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class IssueLine:
    """One issue with its delivery figures (the issues list, the issue page)."""

    issue: Issue
    total: int
    sent: int
    remaining: int
    failed: int
    skipped: int
    bounced: int
    complained: int
    #: bounces and complaints by how they came: webhook, inbound (digest inbound), mailbox
    by_source: dict[str, dict[str, int]]
    #: review, when it goes out or why not: the same answer `digest status` gives
    plan: SendPlan


def issue_line(session: Session, settings: Settings, issue: Issue) -> IssueLine:
    assert issue.id is not None
    conn = session.connection()
    by_state = counts(conn, issue.id)
    events = provider_events(conn, issue.id)
    return IssueLine(
        issue=issue,
        total=sum(by_state.values()),
        sent=by_state.get("sent", 0),
        remaining=sum(by_state.get(s, 0) for s in OPEN),
        failed=by_state.get("failed", 0),
        skipped=by_state.get("skipped", 0),
        bounced=int(events["bounces"]["total"]),
        complained=int(events["complaints"]),
        by_source=events["by_source"],
        plan=send_plan(session, settings, issue, utcnow()),
    )


def issue_lines(engine: Engine, settings: Settings, limit: int = LIST_LIMIT) -> list[IssueLine]:
    with Session(engine) as session:
        issues = session.exec(select(Issue).order_by(col(Issue.number).desc()).limit(limit)).all()
        return [issue_line(session, settings, issue) for issue in issues]


def get_issue(session: Session, number: int) -> Issue:
    issue = find_issue(session, number=number)
    if issue is None:
        raise ConsoleProblem(404, f"there is no issue #{number}", title="No such issue")
    return issue


def preview_html(issue: Issue, settings: Settings, *, dark: bool = False) -> str:
    """The issue's HTML as a subscriber gets it (a sample recipient). ``dark`` applies
    the email's own ``prefers-color-scheme: dark`` styles unconditionally, as a mail
    client in dark mode would."""
    html = issue_message(issue, settings).html_for(SAMPLE_RECIPIENT)
    if not dark:
        return html
    html = _DARK_QUERY.sub("@media all", html)
    marker = '<meta name="color-scheme" content="dark"><style>:root{color-scheme:dark}</style>'
    head = re.search(r"<head[^>]*>", html, re.IGNORECASE)
    if head is None:
        return marker + html
    return html[: head.end()] + marker + html[head.end() :]


def preview_text(issue: Issue, settings: Settings) -> str:
    return issue_message(issue, settings).text_for(SAMPLE_RECIPIENT)


def preview_eml(issue: Issue, settings: Settings) -> bytes:
    return issue_message(issue, settings).as_bytes(SAMPLE_RECIPIENT)


def has_dark_styles(html: str) -> bool:
    return _DARK_QUERY.search(html) is not None


_WORDS = ("subject", "preheader", "intro", "note")


def _short(value: object, limit: int = 120) -> str:
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def describe(entry: dict[str, Any]) -> str:
    """One history entry's details as a short line for people."""
    # The cutoff is on the page already; the ISO timestamp would only be noise.
    rest = {k: v for k, v in entry.items() if k not in ("at", "actor", "action", "cutoff")}
    parts = []
    for key, value in rest.items():
        if value in (None, "", [], {}):
            continue
        if isinstance(value, list) and len(value) == 2 and key in _WORDS:
            parts.append(f"{key}: “{_short(value[0])}” → “{_short(value[1])}”")
        elif key == "takes" and isinstance(value, dict):
            parts.extend(
                f"take on {slug}: “{_short(new)}”" if new else f"take on {slug} removed"
                for slug, (_old, new) in value.items()
            )
        elif isinstance(value, dict) and "after" in value:
            parts.append(f"{key}: {', '.join(value['after'])}")
        elif isinstance(value, list):
            parts.append(f"{key}: {', '.join(str(v) for v in value)}")
        else:
            parts.append(f"{key}: {value}")
    return "; ".join(parts)
