"""Comparisons that arrive without a shell: the ingest API and the console's import page.

Both read their input with the importer's own functions (one validation path with
``digest import``), then go through :func:`plan` — what each comparison would do to the
store: ``new``, ``update`` (naming the fields that change), ``unchanged`` (a replay),
or ``conflict`` (a sent issue featured it: what went out stays as it went out) — and
:func:`apply_plan`, which writes all of it in one transaction or nothing. The plan is
made again inside that transaction, so a send that started in between is seen.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC
from typing import Any, Literal

from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from digest.core.clock import utcnow
from digest.exceptions import ImportConflictError, ImportValidationError
from digest.store.engine import session_scope
from digest.store.importer import apply_comparison
from digest.store.models import Comparison, Issue, IssueComparison, IssueState
from digest.store.schema import ComparisonIn, comparison_to_dict

logger = logging.getLogger(__name__)

Action = Literal["new", "update", "unchanged", "conflict"]
#: Issue states in which an issue's comparisons have gone out (or are going out).
WENT_OUT = (IssueState.SENDING, IssueState.PAUSED, IssueState.SENT)
_PROBLEM = re.compile(r"^(?P<where>.*?): field (?P<field>\S+): (?P<reason>.*)$", re.DOTALL)


@dataclass(frozen=True)
class Change:
    """What one incoming comparison does to the store."""

    slug: str
    title: str
    action: Action
    #: the top-level fields (and tools) that differ, for an update
    fields: tuple[str, ...] = ()
    #: why it cannot change, for a conflict
    reason: str = ""
    #: open drafts that feature it (their preview is re-compiled after an update)
    drafts: tuple[int, ...] = ()
    #: a digest of the stored comparison this was planned against ("" for a new one)
    stored: str = ""


@dataclass
class Plan:
    items: list[ComparisonIn]
    changes: list[Change] = field(default_factory=list)

    @property
    def conflicts(self) -> list[Change]:
        return [c for c in self.changes if c.action == "conflict"]

    def count(self, action: Action) -> int:
        return sum(1 for c in self.changes if c.action == action)

    def fingerprint(self) -> str:
        """Names this plan: the console's confirm step refuses when the store moved on."""
        raw = json.dumps(
            [[c.slug, c.action, list(c.fields), c.stored] for c in self.changes]
            + [canonical(i) for i in self.items],
            sort_keys=True,
            default=str,
        )
        return hashlib.sha256(raw.encode()).hexdigest()[:32]


@dataclass(frozen=True)
class Applied:
    created: list[str]
    updated: list[str]
    unchanged: list[str]
    drafts: list[int]


def canonical(item: ComparisonIn) -> dict[str, Any]:
    """An incoming comparison as ``comparisons list --json`` would print it."""
    data = item.model_dump(mode="json")
    data["published_at"] = item.published_at.astimezone(UTC).isoformat()
    return data


def _stored(comparison: Comparison) -> dict[str, Any]:
    data = comparison_to_dict(comparison)
    data["published_at"] = comparison.published_at.astimezone(UTC).isoformat()
    return data


def _differences(before: dict[str, Any], after: dict[str, Any]) -> tuple[str, ...]:
    names = [k for k in ("title", "standfirst", "url", "published_at") if before[k] != after[k]]
    for index, (old, new) in enumerate(zip(before["tools"], after["tools"], strict=True)):
        if old != new:
            names.append(f"tool {'AB'[index]} ({new['name']})")
    return tuple(names)


def _featured_by(session: Session, comparison_id: int) -> list[Issue]:
    return list(
        session.exec(
            select(Issue)
            .join(IssueComparison, col(IssueComparison.issue_id) == Issue.id)
            .where(IssueComparison.comparison_id == comparison_id)
            .order_by(col(Issue.number))
        ).all()
    )


def _went_out(issue: Issue) -> bool:
    return issue.state in WENT_OUT or issue.started_at is not None


def plan(session: Session, items: Sequence[ComparisonIn], undated: set[str]) -> Plan:
    """What writing ``items`` would do. An undated item keeps the date it has in the
    store (a replayed page changes nothing); a new undated one is dated now."""
    now = utcnow()
    result = Plan(items=[])
    for item in items:
        existing = session.exec(select(Comparison).where(Comparison.slug == item.slug)).first()
        if existing is None:
            if item.slug in undated:
                item = item.model_copy(update={"published_at": now})
            result.items.append(item)
            result.changes.append(Change(item.slug, item.title, "new"))
            continue
        if item.slug in undated:
            item = item.model_copy(update={"published_at": existing.published_at})
        result.items.append(item)
        assert existing.id is not None
        issues = _featured_by(session, existing.id)
        drafts = tuple(i.number for i in issues if i.state == IssueState.DRAFT)
        before = _stored(existing)
        stored = hashlib.sha256(json.dumps(before, sort_keys=True).encode()).hexdigest()[:16]
        fields = _differences(before, canonical(item))
        gone = [i for i in issues if _went_out(i)]
        if not fields:
            change = Change(item.slug, item.title, "unchanged", drafts=drafts, stored=stored)
        elif gone:
            first = gone[0]
            reason = (
                f"{item.slug!r} went out in issue {first.label} ({first.state}); what was "
                f"sent stays as it was sent — publish the change under a new slug"
            )
            change = Change(item.slug, item.title, "conflict", fields, reason, stored=stored)
        else:
            change = Change(item.slug, item.title, "update", fields, drafts=drafts, stored=stored)
        result.changes.append(change)
    return result


def preview(engine: Engine, items: Sequence[ComparisonIn], undated: set[str]) -> Plan:
    """The plan, read without writing (the console's preview step)."""
    with Session(engine) as session:
        return plan(session, items, undated)


def apply_plan(
    engine: Engine,
    items: Sequence[ComparisonIn],
    undated: set[str],
    *,
    imported_by: str,
    expected: str | None = None,
) -> tuple[Plan, Applied]:
    """Write every new and changed comparison in one transaction, or nothing: a
    conflict anywhere raises :class:`ImportConflictError`; ``expected`` (a plan's
    fingerprint) refuses when the store no longer matches what was previewed."""
    try:
        with session_scope(engine) as session:
            result = plan(session, items, undated)
            if result.conflicts:
                raise ImportConflictError([c.reason for c in result.conflicts])
            if expected is not None and result.fingerprint() != expected:
                raise ImportConflictError(
                    [
                        "the store changed since the preview (another import or a send); "
                        "nothing was written — preview it again"
                    ]
                )
            for item, change in zip(result.items, result.changes, strict=True):
                if change.action in ("new", "update"):
                    apply_comparison(session, item, imported_by)
    except IntegrityError as exc:
        # Two requests brought the same new slug at once; the other one won.
        raise ImportConflictError(
            ["another import brought the same comparison at the same moment; send it again"]
        ) from exc
    applied = Applied(
        created=[c.slug for c in result.changes if c.action == "new"],
        updated=[c.slug for c in result.changes if c.action == "update"],
        unchanged=[c.slug for c in result.changes if c.action == "unchanged"],
        drafts=sorted({n for c in result.changes if c.action == "update" for n in c.drafts}),
    )
    logger.info(
        "ingest by %s: %d new, %d updated, %d unchanged",
        imported_by,
        len(applied.created),
        len(applied.updated),
        len(applied.unchanged),
    )
    return result, applied


def problem_fields(problems: Sequence[str]) -> list[dict[str, str | None]]:
    """The importer's problem lines as ``{"where", "field", "reason"}`` (``field`` is
    None for a problem of the whole body, such as invalid JSON)."""
    out: list[dict[str, str | None]] = []
    for problem in problems:
        match = _PROBLEM.match(problem)
        if match:
            out.append(match.groupdict())
        else:
            where, _, reason = problem.partition(": ")
            out.append({"where": where, "field": None, "reason": reason or problem})
    return out


__all__ = [
    "Applied",
    "Change",
    "ImportConflictError",
    "ImportValidationError",
    "Plan",
    "apply_plan",
    "canonical",
    "plan",
    "preview",
    "problem_fields",
]
