"""What the ingest API and the console's import page call: read the input the way
``digest import`` does, plan, write all of it or nothing, and re-compile an open draft
that features a comparison that changed (what an editor previews stays what is sent)."""

from __future__ import annotations

import logging
from datetime import datetime

from sqlalchemy.engine import Engine

from digest.core.clock import utcnow
from digest.core.settings import Settings
from digest.issue.editing import Edit, edit_issue
from digest.issue.freeze import find_issue, issue_rows
from digest.store.engine import session_scope
from digest.store.importer import parse_bytes
from digest.store.ingest import Applied, Plan, apply_plan, preview
from digest.store.models import IssueState
from digest.store.schema import ComparisonIn

logger = logging.getLogger(__name__)


def read_body(
    where: str, data: bytes, now: datetime | None = None
) -> tuple[list[ComparisonIn], set[str]]:
    """JSON (one object or a list) or one comparison page → validated items and the
    slugs that carried no date. Raises ImportValidationError with every problem."""
    undated: set[str] = set()
    items = parse_bytes(where, data, now or utcnow(), undated)
    return items, undated


def preview_import(engine: Engine, items: list[ComparisonIn], undated: set[str]) -> Plan:
    return preview(engine, items, undated)


def run_import(
    engine: Engine,
    settings: Settings,
    items: list[ComparisonIn],
    undated: set[str],
    *,
    imported_by: str,
    expected: str | None = None,
) -> tuple[Plan, Applied]:
    """Write the import (all or nothing), then bring affected drafts up to date."""
    plan, applied = apply_plan(engine, items, undated, imported_by=imported_by, expected=expected)
    for number in applied.drafts:
        _recompile(engine, settings, number, imported_by, applied.updated)
    return plan, applied


def _recompile(
    engine: Engine, settings: Settings, number: int, actor: str, slugs: list[str]
) -> None:
    with session_scope(engine) as session:
        issue = find_issue(session, number=number)
        if issue is None or issue.state != IssueState.DRAFT:
            return  # sent or cancelled in the meantime: its copy stays as it went out
        featured = [c.slug for c, _ in issue_rows(session, issue) if c.slug in slugs]
        # The editor's own path: words, note, takes and layout stay as they are.
        changes = edit_issue(session, issue, settings, Edit(updated=featured), actor=actor)
    if changes:
        logger.info("draft #%d re-compiled: %s changed", number, ", ".join(featured))
