"""Editors adjust a draft: its words (subject, preheader, intro, the note in Markdown,
a one-line take per comparison) and its comparisons (order, full card or link, drop,
add). Every edit re-compiles the issue and is written to its history.

The subject and preheader are *automatic* until an editor writes their own: then they
follow the comparisons — after a reorder the subject names the new lead, and each
reader's copy (digest/readers/variants.py) names its own lead. Saving the form with
the subject as it was keeps it automatic.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from sqlmodel import Session

from digest.core.clock import utcnow
from digest.core.notes import NOTE_MAX_CHARS, one_line_take
from digest.core.settings import Settings
from digest.core.textsafe import text_problem
from digest.exceptions import IssueStateError
from digest.issue.clicks import linker
from digest.issue.freeze import arrange, issue_rows, issue_takes
from digest.issue.history import record
from digest.issue.render import default_preheader, default_subject, render_issue
from digest.issue.screen import words_problem
from digest.issue.selection import addable
from digest.store.models import Comparison, Issue, IssueState, ReviewState

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Edit:
    """What an editor asks to change; None / empty means "leave as it is".

    ``order`` is the new order of the issue's slugs (after ``drop`` and ``add``; slugs
    it leaves out keep their relative order at the end), ``full`` the slugs that get
    full cards (the others become links). ``takes`` maps slugs to their one-line take
    ("" removes one); ``note`` is the editor's note in Markdown ("" removes it).
    ``updated`` names comparisons that changed in the store since the issue was compiled
    (an import, digest/jobs/ingest.py): the issue is re-compiled even when nothing else
    changes, and the history says *recompiled*.
    """

    subject: str | None = None
    preheader: str | None = None
    intro: str | None = None
    order: Sequence[str] | None = None
    drop: Sequence[str] = ()
    add: Sequence[str] = ()
    full: Sequence[str] | None = None
    note: str | None = None
    takes: Mapping[str, str] | None = None
    updated: Sequence[str] = ()

    @property
    def empty(self) -> bool:
        return (
            self.subject is None
            and self.preheader is None
            and self.intro is None
            and self.order is None
            and not self.drop
            and not self.add
            and self.full is None
            and self.note is None
            and not self.takes
            and not self.updated
        )


def _rearranged(
    session: Session, settings: Settings, current: list[tuple[Comparison, bool]], edit: Edit
) -> list[tuple[Comparison, bool]]:
    by_slug = {c.slug: (c, full) for c, full in current}
    for slug in edit.drop:
        if slug not in by_slug:
            raise IssueStateError(f"cannot drop {slug!r}: the issue does not feature it")
        del by_slug[slug]
    if edit.add:
        candidates = {c.slug: c for c in addable(session, settings, utcnow())}
        for slug in edit.add:
            if slug in by_slug:
                raise IssueStateError(f"cannot add {slug!r}: the issue already features it")
            if slug not in candidates:
                raise IssueStateError(
                    f"cannot add {slug!r}: not a new comparison (unknown, featured by "
                    f"another issue, or older than {settings.max_age_days} days)"
                )
            by_slug[slug] = (candidates[slug], False)
    slugs = list(by_slug)
    if edit.order is not None:
        unknown = [s for s in edit.order if s not in by_slug]
        if unknown:
            raise IssueStateError(f"cannot order by {', '.join(unknown)}: not in the issue")
        if len(set(edit.order)) != len(edit.order):
            raise IssueStateError("the new order names a comparison twice")
        slugs = list(edit.order) + [s for s in slugs if s not in edit.order]
    if edit.full is not None:
        unknown = [s for s in edit.full if s not in by_slug]
        if unknown:
            raise IssueStateError(f"cannot give {', '.join(unknown)} a full card: not in the issue")
        wanted = set(edit.full)
        return [(by_slug[s][0], s in wanted) for s in slugs]
    return [by_slug[s] for s in slugs]


def _words_only(edit: Edit) -> bool:
    return edit.order is None and not edit.drop and not edit.add and edit.full is None


def _automatic(given: str | None, current: str, auto: bool, made: str) -> tuple[bool, str]:
    """(automatic?, the words) for a subject or preheader: automatic when the editor
    gave nothing, left an automatic one as it was, or gave exactly what it would be."""
    if given is None:
        return auto, made if auto else current
    given = given.strip()
    if not given or given == made or (auto and given == current):
        return True, made
    return False, given


def _new_takes(current: dict[str, str], edit: Edit, slugs: Sequence[str]) -> dict[str, str]:
    takes = dict(current)
    for slug, take in (edit.takes or {}).items():
        if slug not in slugs:
            raise IssueStateError(f"cannot give {slug!r} a take: not in the issue")
        take = one_line_take(take)
        if take:
            takes[slug] = take
        else:
            takes.pop(slug, None)
    return {s: t for s, t in takes.items() if s in slugs}


def edit_issue(
    session: Session, issue: Issue, settings: Settings, edit: Edit, *, actor: str = "cli"
) -> dict[str, object]:
    """Apply ``edit`` to a draft, re-compile it and record who changed what; returns the
    changes (``field: [old, new]``). An approved draft needs approving again."""
    if issue.state != IssueState.DRAFT:
        raise IssueStateError(f"issue {issue.label} is {issue.state}; only drafts can be edited")
    assert issue.id is not None
    if edit.note is not None and len(edit.note) > NOTE_MAX_CHARS:
        raise IssueStateError(f"the note is {len(edit.note)} characters; at most {NOTE_MAX_CHARS}")
    # An editor's words meet the same text checks as an imported comparison's.
    if problem := words_problem(edit.subject, edit.preheader, edit.intro):
        raise IssueStateError(problem)
    if edit.note and (problem := text_problem(edit.note)):
        raise IssueStateError(f"the note {problem}")
    for slug, take in (edit.takes or {}).items():
        if take and (problem := text_problem(take, one_line=True)):
            raise IssueStateError(f"the take on {slug} {problem}")
    before = issue_rows(session, issue)
    after = _rearranged(session, settings, before, edit) if not _words_only(edit) else before
    if not after:
        raise IssueStateError("an issue needs at least one comparison; cancel it instead")
    comparisons = [c for c, _f in after]
    subject_auto, subject = _automatic(
        edit.subject, issue.subject, issue.subject_auto, default_subject(comparisons)
    )
    preheader_auto, preheader = _automatic(
        edit.preheader, issue.preheader, issue.preheader_auto, default_preheader(comparisons)
    )
    old_takes = issue_takes(session, issue)
    takes = _new_takes(old_takes, edit, [c.slug for c in comparisons])
    note = edit.note.strip() if edit.note is not None else issue.note
    intro = edit.intro if edit.intro is not None else issue.intro
    rendered = render_issue(
        week=issue.week,
        number=issue.number,
        full=[c for c, f in after if f],
        links=[c for c, f in after if not f],
        settings=settings,
        subject=subject,
        preheader=preheader,
        intro=intro,
        linker=linker(session, settings, issue.id),
        note=note,
        takes=takes,
    )
    changes: dict[str, object] = {}
    for name, new in (
        ("subject", rendered.subject),
        ("preheader", rendered.preheader),
        ("intro", intro),
        ("note", note),
    ):
        old = getattr(issue, name)
        if new != old:
            changes[name] = [old, new]
            setattr(issue, name, new)
    # Whether the words are automatic shows in the subject's own change; not a change alone.
    issue.subject_auto, issue.preheader_auto = subject_auto, preheader_auto
    if takes != old_takes:
        changes["takes"] = {
            slug: [old_takes.get(slug, ""), takes.get(slug, "")]
            for slug in sorted(set(takes) | set(old_takes))
            if takes.get(slug) != old_takes.get(slug)
        }
    old_layout = [(c.slug, f) for c, f in before]
    new_layout = [(c.slug, f) for c, f in after]
    if new_layout != old_layout:
        changes["comparisons"] = {
            "before": [f"{s}{'' if f else ' (link)'}" for s, f in old_layout],
            "after": [f"{s}{'' if f else ' (link)'}" for s, f in new_layout],
        }
    if new_layout != old_layout or takes != old_takes:
        arrange(session, issue.id, after, takes)
    recompiled = bool(edit.updated) and (rendered.html, rendered.text) != (issue.html, issue.text)
    if not changes and not recompiled:
        return changes
    if edit.updated:
        changes["comparisons updated"] = list(edit.updated)
    issue.html, issue.text = rendered.html, rendered.text
    issue.updated_at = utcnow()
    if issue.review == ReviewState.APPROVED:
        issue.review = ReviewState.PENDING
        changes["review"] = ["approved", "pending (edited after approval: approve again)"]
    session.add(issue)
    session.flush()
    record(session, issue.id, actor, "recompiled" if edit.updated else "edited", **changes)
    return changes
