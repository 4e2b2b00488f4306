"""Subscribers in the console (operators only: these pages carry personal data):
search, one subscriber's state, consent log and deliveries; add, unsubscribe, forget;
CSV import with progress and an error report by line."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, File, Form, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response, StreamingResponse
from sqlalchemy import func, or_, select
from sqlmodel import Session

from digest.console.auth import Operator, OperatorPost
from digest.console.pages import ConsoleProblem, render
from digest.console.runner import import_runner, private_copy
from digest.core.clock import utcnow
from digest.exceptions import DigestError
from digest.store.engine import session_scope
from digest.store.models import Delivery, Issue
from digest.store.subscriber_models import Subscriber, SubscriberStatus
from subscribers.preferences import FREQUENCIES, ZONES, catalog, set_preferences, topics_list
from subscribers.privacy import export_lines, forget, show, unsubscribe_address
from subscribers.service import add_subscriber, skipped_csv

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/console/subscribers", include_in_schema=False)

S = Subscriber.__table__  # type: ignore[attr-defined]
D = Delivery.__table__  # type: ignore[attr-defined]
I = Issue.__table__  # type: ignore[attr-defined]  # noqa: E741
PAGE_SIZE = 50
STATUSES = [s.value for s in SubscriberStatus]


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped.lower()}%"


@router.get("", response_class=HTMLResponse)
def subscriber_list(
    request: Request, viewer: Operator, q: str = "", status: str = "", page: int = 1
) -> Response:
    q = q.strip()[:200]
    if status and status not in STATUSES:
        raise ConsoleProblem(422, f"status must be one of {', '.join(STATUSES)}")
    page = max(1, page)
    query = select(S.c.id, S.c.email, S.c.name, S.c.status, S.c.source, S.c.created_at)
    if q:
        pattern = _like(q)
        query = query.where(
            or_(
                func.lower(S.c.email).like(pattern, escape="\\"),
                func.lower(S.c.name).like(pattern, escape="\\"),
            )
        )
    if status:
        query = query.where(S.c.status == status)
    with request.app.state.engine.connect() as conn:
        total = conn.execute(select(func.count()).select_from(query.subquery())).scalar_one()
        rows = conn.execute(
            query.order_by(S.c.id.desc()).limit(PAGE_SIZE).offset((page - 1) * PAGE_SIZE)
        ).all()
        by_status = dict(conn.execute(select(S.c.status, func.count()).group_by(S.c.status)).all())
    return render(
        request,
        "subscribers.html",
        viewer,
        rows=rows,
        q=q,
        status=status,
        statuses=STATUSES,
        by_status={s: int(by_status.get(s, 0)) for s in STATUSES},
        total=total,
        page=page,
        pages=max(1, -(-total // PAGE_SIZE)),
    )


@router.get("/export.csv")
def subscriber_export(request: Request, viewer: Operator) -> Response:
    """Every subscriber as ``digest subscribers export`` writes them: state, consent
    time and source, topics, frequency and time zone; streamed, formulas neutralised."""
    logger.info("subscriber export downloaded by %s", viewer.email)
    stamp = utcnow().strftime("%Y-%m-%d")
    return StreamingResponse(
        export_lines(request.app.state.engine),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="subscribers-{stamp}.csv"',
            "Cache-Control": "no-store",
        },
    )


def _subscriber(request: Request, subscriber_id: int) -> Subscriber:
    with Session(request.app.state.engine) as session:
        found = session.get(Subscriber, subscriber_id)
    if found is None:
        raise ConsoleProblem(404, "no such subscriber (perhaps forgotten)", title="Not found")
    return found


@router.get("/{subscriber_id}", response_class=HTMLResponse)
def subscriber_page(request: Request, subscriber_id: int, viewer: Operator) -> Response:
    person = _subscriber(request, subscriber_id)
    info = show(request.app.state.engine, person.email)
    with request.app.state.engine.connect() as conn:
        deliveries = conn.execute(
            select(I.c.number, I.c.week, D.c.state, D.c.attempts, D.c.sent_at, D.c.last_error)
            .join(I, I.c.id == D.c.issue_id)
            .where(D.c.subscriber_id == subscriber_id)
            .order_by(I.c.number.desc())
            .limit(100)
        ).all()
        topics = catalog(conn)
    return render(
        request,
        "subscriber.html",
        viewer,
        person=person,
        info=info,
        deliveries=deliveries,
        topics=topics,
        chosen=set(topics_list(person.topics) or topics),
        frequencies=FREQUENCIES,
        zones=ZONES,
        settings_local_time=request.app.state.settings.send_local_time,
        active=person.status in (SubscriberStatus.ACTIVE, SubscriberStatus.PENDING),
    )


@router.post("/add")
def subscriber_add(
    request: Request,
    viewer: OperatorPost,
    email: Annotated[str, Form(max_length=320)] = "",
    name: Annotated[str, Form(max_length=200)] = "",
    consent: Annotated[str, Form(max_length=150)] = "",
) -> Response:
    if not consent.strip():
        raise ConsoleProblem(422, "say where and how this person agreed (the consent source)")
    try:
        with session_scope(request.app.state.engine) as session:
            person, created = add_subscriber(
                session, email, name, source=f"{consent.strip()} (added by {viewer.email})"
            )
            subscriber_id = person.id
    except DigestError as exc:
        raise ConsoleProblem(422, f"not added: {exc}") from exc
    done = "added" if created else "unchanged"
    return RedirectResponse(f"/console/subscribers/{subscriber_id}?done={done}", status_code=303)


@router.post("/{subscriber_id}/preferences")
def subscriber_preferences(
    request: Request,
    subscriber_id: int,
    viewer: OperatorPost,
    topic: Annotated[list[str] | None, Form()] = None,
    frequency: Annotated[str, Form(max_length=20)] = "weekly",
    timezone: Annotated[str, Form(max_length=64)] = "",
) -> Response:
    """An operator sets what a reader asked for (by mail, say): topics, frequency and
    the time zone the local-time send uses."""
    person = _subscriber(request, subscriber_id)
    try:
        set_preferences(
            request.app.state.engine,
            subscriber_id,
            topics=topic or [],
            frequency=frequency,
            timezone=timezone,
        )
    except DigestError as exc:
        raise ConsoleProblem(422, f"not saved: {exc}") from exc
    logger.info("preferences of subscriber %s set by %s", person.id, viewer.email)
    return RedirectResponse(
        f"/console/subscribers/{subscriber_id}?done=preferences", status_code=303
    )


@router.post("/{subscriber_id}/unsubscribe")
def subscriber_unsubscribe(request: Request, subscriber_id: int, viewer: OperatorPost) -> Response:
    person = _subscriber(request, subscriber_id)
    try:
        changed = unsubscribe_address(
            request.app.state.engine,
            person.email,
            source="console",
            detail=f"unsubscribed by {viewer.email}",
        )
    except DigestError as exc:
        raise ConsoleProblem(409, str(exc)) from exc
    done = "unsubscribed" if changed else "unchanged"
    return RedirectResponse(f"/console/subscribers/{subscriber_id}?done={done}", status_code=303)


@router.post("/{subscriber_id}/forget")
def subscriber_forget(
    request: Request,
    subscriber_id: int,
    viewer: OperatorPost,
    sure: Annotated[str, Form()] = "",
) -> Response:
    if sure != "yes":
        raise ConsoleProblem(422, "tick “yes, erase this person” to forget them; nothing changed")
    person = _subscriber(request, subscriber_id)
    forget(request.app.state.engine, person.email)
    logger.info("subscriber %s forgotten by %s", subscriber_id, viewer.email)
    return RedirectResponse("/console/subscribers?done=forgotten", status_code=303)


@router.get("/import/new", response_class=HTMLResponse)
def import_form(request: Request, viewer: Operator) -> Response:
    return render(request, "import.html", viewer, job=None)


@router.post("/import/new")
async def import_upload(
    request: Request,
    viewer: OperatorPost,
    file: Annotated[UploadFile | None, File()] = None,
    consent: Annotated[str, Form(max_length=150)] = "",
    skip_invalid: Annotated[str, Form()] = "",
) -> Response:
    if file is None or not file.filename:
        raise ConsoleProblem(422, "choose a CSV file to import")
    if not consent.strip():
        raise ConsoleProblem(422, "say where and how these people agreed (the consent source)")
    # The body is at most DIGEST_CONSOLE_IMPORT_MAX_BYTES (digest/http/bodies.py).
    target = private_copy(file.filename)
    with target.open("wb") as out:
        while chunk := await file.read(1 << 20):
            out.write(chunk)
    job = import_runner(request).start(
        target,
        filename=target.name,
        source=f"{consent.strip()} (imported by {viewer.email})",
        by=viewer.email,
        skip_invalid=skip_invalid == "yes",
    )
    return RedirectResponse(f"/console/subscribers/import/{job.id}", status_code=303)


@router.get("/import/{job_id}", response_class=HTMLResponse)
def import_progress(request: Request, job_id: str, viewer: Operator) -> Response:
    job = import_runner(request).get(job_id)
    if job is None:
        raise ConsoleProblem(404, "no such import (the server forgets old ones)")
    return render(request, "import.html", viewer, job=job, refresh=None if job.finished else 2)


@router.get("/import/{job_id}/skipped.csv")
def import_skipped(request: Request, job_id: str, viewer: Operator) -> Response:
    """The lines an import with "skip bad rows" left out: line, email as given, problem."""
    job = import_runner(request).get(job_id)
    if job is None:
        raise ConsoleProblem(404, "no such import (the server forgets old ones)")
    if not job.finished or job.report is None:
        raise ConsoleProblem(409, "this import has not finished; its report comes at the end")
    stem = job.filename.rsplit(".", 1)[0] or "import"
    return Response(
        skipped_csv(job.report.skipped, job.report.skipped_total),
        media_type="text/csv; charset=utf-8",
        headers={
            "Content-Disposition": f'attachment; filename="{stem}-skipped.csv"',
            "Cache-Control": "no-store",
        },
    )
