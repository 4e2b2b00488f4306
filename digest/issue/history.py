"""An issue's history: one row per thing that happened to it, with who and what."""

from __future__ import annotations

import json
import logging
from typing import Any

from sqlmodel import Session, col, select

from digest.core.clock import utcnow
from digest.store.models import IssueEvent

logger = logging.getLogger(__name__)


def record(session: Session, issue_id: int, actor: str, action: str, **detail: Any) -> None:
    """Add one history entry (``detail`` must be JSON-serialisable)."""
    session.add(
        IssueEvent(
            issue_id=issue_id,
            at=utcnow(),
            actor=actor[:320],
            action=action[:30],
            detail=json.dumps(detail, ensure_ascii=False, default=str),
        )
    )
    session.flush()


def history(session: Session, issue_id: int) -> list[dict[str, Any]]:
    """The issue's history, oldest first."""
    rows = session.exec(
        select(IssueEvent).where(IssueEvent.issue_id == issue_id).order_by(col(IssueEvent.id))
    ).all()
    return [
        {"at": r.at.isoformat(), "actor": r.actor, "action": r.action, **json.loads(r.detail)}
        for r in rows
    ]
