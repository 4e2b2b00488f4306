"""The words each reader's copy carries: subject, preheader, intro and note.

By default a copy takes the issue's words, except where they are automatic: an
automatic subject or preheader is made again from what that copy carries, so it names
the copy's own lead. An editor may set any of the four for one preference set (a
per-variant override, stored on the issue by preference-set key); an empty value
follows the issue again. The monthly round-up has words of its own.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlmodel import Session

from digest.core.clock import utcnow
from digest.core.mailsafe import header_text, one_line
from digest.core.notes import NOTE_MAX_CHARS
from digest.exceptions import IssueStateError
from digest.issue.history import record
from digest.issue.render import default_preheader, default_subject
from digest.issue.subject import SUBJECT_TARGET, matchup
from digest.store.models import Comparison, Issue, IssueState, ReviewState

logger = logging.getLogger(__name__)

FIELDS = ("subject", "preheader", "intro", "note")
LIMITS = {"subject": 200, "preheader": 200, "intro": 5000, "note": NOTE_MAX_CHARS}


@dataclass(frozen=True)
class Words:
    subject: str
    preheader: str
    intro: str | None
    note: str
    #: the fields this copy's editor set for it alone
    own: tuple[str, ...] = ()


def monthly_words(comparisons: Sequence[Comparison], month: str) -> tuple[str, str]:
    """The round-up's subject and preheader: the month and its lead matchup within the
    inbox's width where the names allow (else the count), and the rest after it."""
    lead = matchup(comparisons[0])[1]
    subject = f"The month in verdicts: {month} — {lead}"
    preheader = "Your monthly round-up."
    if len(subject) > SUBJECT_TARGET:
        count = len(comparisons)
        subject = f"The month in verdicts: {month} ({count} verdict{'s' if count != 1 else ''})"
        preheader += f" Led by {lead}."
    if len(comparisons) > 1:
        preheader += f" {default_preheader(comparisons)}"
    return subject, one_line(preheader, 200)


def overrides(issue: Issue) -> dict[str, dict[str, str]]:
    """Per-variant words by preference-set key (``weekly|["Writing"]``)."""
    try:
        stored = json.loads(issue.variant_words or "{}")
    except ValueError:
        return {}
    return stored if isinstance(stored, dict) else {}


def copy_words(
    issue: Issue, key: str, comparisons: Sequence[Comparison], month: str | None = None
) -> Words:
    """What the copy for preference set ``key`` says, carrying ``comparisons``
    (``month`` names the month of a round-up)."""
    if month is not None:
        subject, preheader = monthly_words(comparisons, month)
        intro: str | None = (
            f"Your monthly round-up: every comparison from {month} in your topics, "
            "newest first, with who the panel would ship."
        )
        note = ""
    else:
        subject = default_subject(comparisons) if issue.subject_auto else issue.subject
        preheader = default_preheader(comparisons) if issue.preheader_auto else issue.preheader
        intro = issue.intro  # as written: empty means none
        note = issue.note
    own = {k: v for k, v in overrides(issue).get(key, {}).items() if k in FIELDS and v.strip()}
    return Words(
        subject=header_text(own.get("subject", subject), 200),
        preheader=one_line(own.get("preheader", preheader), 200),
        intro=own.get("intro", intro),
        note=own.get("note", note),
        own=tuple(k for k in FIELDS if k in own),
    )


def set_copy_words(
    session: Session, issue: Issue, key: str, words: Mapping[str, str], *, actor: str
) -> dict[str, object]:
    """Set (or, with "", clear) one copy's own words; recorded in the issue's history.
    Returns the changes. An approved draft needs approving again."""
    if issue.state != IssueState.DRAFT:
        raise IssueStateError(f"issue {issue.label} is {issue.state}; only drafts can be edited")
    assert issue.id is not None
    stored = overrides(issue)
    mine = dict(stored.get(key, {}))
    changes: dict[str, object] = {}
    for name in FIELDS:
        if name not in words:
            continue
        value = words[name].strip()
        if len(value) > LIMITS[name]:
            raise IssueStateError(f"the {name} is {len(value)} characters; at most {LIMITS[name]}")
        if value != mine.get(name, ""):
            changes[name] = [mine.get(name, ""), value]
        if value:
            mine[name] = value
        else:
            mine.pop(name, None)
    if not changes:
        return changes
    if mine:
        stored[key] = mine
    else:
        stored.pop(key, None)
    issue.variant_words = json.dumps(stored, ensure_ascii=False, sort_keys=True)
    issue.updated_at = utcnow()
    if issue.review == ReviewState.APPROVED:
        issue.review = ReviewState.PENDING
        changes["review"] = ["approved", "pending (edited after approval: approve again)"]
    session.add(issue)
    session.flush()
    record(session, issue.id, actor, "copy words", copy=key, **changes)
    return changes
