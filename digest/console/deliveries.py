"""An issue's delivery outcomes, per recipient: filters (failed, bounced, complained)
and a CSV export. Operators only: the rows carry addresses."""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterator
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response, StreamingResponse
from sqlalchemy import and_, exists, func, or_, select
from sqlalchemy.engine import Connection
from sqlmodel import Session

from digest.console.auth import Operator
from digest.console.pages import ConsoleProblem, render
from digest.console.views import get_issue
from digest.store.models import Delivery, MailEventRecord
from digest.store.subscriber_models import Subscriber
from digest.webhooks.events import EventKind

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/console", include_in_schema=False)

D = Delivery.__table__  # type: ignore[attr-defined]
S = Subscriber.__table__  # type: ignore[attr-defined]
E = MailEventRecord.__table__  # type: ignore[attr-defined]

PAGE_SIZE = 100
FILTERS = {
    "all": "every recipient",
    "failed": "failed (refused for good)",
    "bounced": "bounced (provider reports)",
    "complained": "complained (marked as spam)",
}
_KINDS = {
    "bounced": (EventKind.BOUNCED_HARD.value, EventKind.BOUNCED_SOFT.value),
    "complained": (EventKind.COMPLAINED.value,),
}
#: How the page names provider events (the CSV keeps the machine names).
EVENT_NAMES = {
    "bounced_hard": "hard bounce",
    "bounced_soft": "soft bounce",
    "complained": "spam complaint",
    "unsubscribed": "unsubscribed at the provider",
}
CSV_COLUMNS = ("email", "state", "attempts", "sent_at", "provider_id", "last_error", "events")


def _about(issue_id: int) -> Any:
    """SQL: a mail event is about this delivery."""
    return and_(
        E.c.issue_id == issue_id,
        or_(E.c.delivery_id == D.c.id, E.c.subscriber_id == D.c.subscriber_id),
    )


def _query(issue_id: int, show: str) -> Any:
    query = (
        select(
            S.c.email,
            D.c.state,
            D.c.attempts,
            D.c.sent_at,
            D.c.provider_id,
            D.c.last_error,
            D.c.id,
        )
        .join(S, S.c.id == D.c.subscriber_id)
        .where(D.c.issue_id == issue_id)
    )
    if show == "failed":
        query = query.where(D.c.state == "failed")
    elif show in _KINDS:
        query = query.where(exists().where(_about(issue_id), E.c.kind.in_(_KINDS[show])))
    return query.order_by(D.c.id)


def _kinds(
    conn: Connection, issue_id: int, ids: list[int], *, names: dict[str, str] | None = None
) -> dict[int, str]:
    """The provider events of these deliveries, by delivery id (``bounced_soft, …``)."""
    if not ids:
        return {}
    rows = conn.execute(
        select(D.c.id, E.c.kind)
        .join(E, _about(issue_id))
        .where(D.c.id.in_(ids))
        .order_by(D.c.id, E.c.occurred_at)
    ).all()
    out: dict[int, list[str]] = {}
    for did, kind in rows:
        out.setdefault(int(did), []).append((names or {}).get(str(kind), str(kind)))
    return {k: ", ".join(dict.fromkeys(v)) for k, v in out.items()}


def _filter(show: str) -> str:
    if show not in FILTERS:
        raise ConsoleProblem(422, f"show must be one of {', '.join(FILTERS)}")
    return show


@router.get("/issues/{number}/deliveries", response_class=HTMLResponse)
def deliveries(
    request: Request, number: int, viewer: Operator, show: str = "all", page: int = 1
) -> Response:
    show = _filter(show)
    page = max(1, page)
    with Session(request.app.state.engine) as session:
        issue = get_issue(session, number)
        assert issue.id is not None
        conn = session.connection()
        query = _query(issue.id, show)
        total = conn.execute(select(func.count()).select_from(query.subquery())).scalar_one()
        rows = conn.execute(query.limit(PAGE_SIZE).offset((page - 1) * PAGE_SIZE)).all()
        kinds = _kinds(conn, issue.id, [int(r.id) for r in rows], names=EVENT_NAMES)
    return render(
        request,
        "deliveries.html",
        viewer,
        issue=issue,
        rows=rows,
        kinds=kinds,
        show=show,
        filters=FILTERS,
        total=total,
        page=page,
        pages=max(1, -(-total // PAGE_SIZE)),
    )


def _cell(value: object) -> str:
    text = "" if value is None else value.isoformat() if hasattr(value, "isoformat") else str(value)
    # Never a formula when the export is opened in a spreadsheet (CSV injection).
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


@router.get("/issues/{number}/deliveries.csv")
def deliveries_csv(request: Request, number: int, viewer: Operator, show: str = "all") -> Response:
    show = _filter(show)
    engine = request.app.state.engine
    with Session(engine) as session:
        issue = get_issue(session, number)
    assert issue.id is not None
    issue_id = issue.id

    def lines() -> Iterator[str]:
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(CSV_COLUMNS)
        with engine.connect() as conn:
            query = _query(issue_id, show)
            offset = 0
            while True:
                rows = conn.execute(query.limit(1000).offset(offset)).all()
                if not rows:
                    break
                kinds = _kinds(conn, issue_id, [int(r.id) for r in rows])
                for r in rows:
                    writer.writerow(
                        [
                            _cell(v)
                            for v in (
                                r.email,
                                r.state,
                                r.attempts,
                                r.sent_at,
                                r.provider_id,
                                r.last_error,
                                kinds.get(int(r.id), ""),
                            )
                        ]
                    )
                yield buffer.getvalue()
                buffer.seek(0)
                buffer.truncate()
                offset += len(rows)
        if buffer.getvalue():
            yield buffer.getvalue()

    filename = f"issue-{number}-{show}.csv"
    return StreamingResponse(
        lines(),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{filename}"',
            "Cache-Control": "no-store",
        },
    )
