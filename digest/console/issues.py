"""The issues list and an issue's page: previews, the edit form, test copies, the
preflight report, the history, and the review (approve / hold / release).

Editors and operators alike may do all of this; sending is in :mod:`sending`.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from sqlmodel import Session

from digest.console.auth import Editor, EditorPost
from digest.console.copies import side_by_side
from digest.console.pages import PREVIEW_CSP, ConsoleProblem, render
from digest.console.reading import issue_reading
from digest.console.runner import send_runner
from digest.console.scheduling import console_now
from digest.console.views import (
    describe,
    get_issue,
    has_dark_styles,
    issue_line,
    issue_lines,
    preview_eml,
    preview_html,
    preview_text,
)
from digest.core.clock import utcnow
from digest.core.notes import NOTE_MAX_CHARS, note_html
from digest.core.settings import Settings
from digest.editorial.copies import check_copies
from digest.editorial.preflight import EXEMPT_TRANSPORTS, preflight
from digest.editorial.review import approve, blocked_reason, hold, release
from digest.exceptions import DigestError
from digest.issue.editing import Edit, edit_issue
from digest.issue.freeze import issue_message, issue_rows, issue_takes, started_in_week
from digest.issue.history import history
from digest.issue.selection import addable
from digest.jobs.schedule import prepare_draft
from digest.jobs.status import issue_status
from digest.jobs.weekly import active_count, weekly_job
from digest.readers.previews import copies
from digest.store.engine import session_scope
from digest.store.models import IssueState
from subscribers.service import normalize_email

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/console", include_in_schema=False)

REFRESH_SECONDS = 3
LAYOUTS = ("full", "link", "drop")


def back(number: int, done: str, anchor: str = "") -> RedirectResponse:
    # Only ever to our own console page: the number is an int, ``done`` a fixed key.
    return RedirectResponse(f"/console/issues/{number}?done={done}{anchor}", status_code=303)


@router.get("", response_class=HTMLResponse)
def issues_list(request: Request, viewer: Editor) -> Response:
    engine = request.app.state.engine
    lines = issue_lines(engine, request.app.state.settings)
    runner = send_runner(request)
    sending = any(line.issue.state == IssueState.SENDING for line in lines)
    with Session(engine) as session:
        subscribers = active_count(session)
    return render(
        request,
        "issues.html",
        viewer,
        lines=lines,
        subscribers=subscribers,
        has_open=any(line.issue.state in ("draft", "sending", "paused") for line in lines),
        last_summary=runner.last_summary,
        refresh=REFRESH_SECONDS if sending or runner.running else None,
    )


@router.post("/draft")
def freeze_draft(request: Request, viewer: EditorPost) -> Response:
    settings: Settings = request.app.state.settings
    try:
        with session_scope(request.app.state.engine) as session:
            frozen = prepare_draft(session, settings, actor=viewer.email)
            number = frozen.issue.number if frozen.issue is not None else None
    except DigestError as exc:
        raise ConsoleProblem(409, str(exc)) from exc
    if number is None:
        raise ConsoleProblem(409, f"{frozen.nothing_new}; no draft", title="Nothing new")
    return back(number, "drafted" if frozen.created else "unchanged")


def _history(session: Session, issue_id: int) -> list[dict[str, Any]]:
    entries = history(session, issue_id)
    return [
        {
            "at": datetime.fromisoformat(e["at"]),
            "actor": e["actor"],
            "action": e["action"],
            "detail": describe(e),
        }
        for e in reversed(entries)
    ]


@router.get("/issues/{number}", response_class=HTMLResponse)
def issue_page(request: Request, number: int, viewer: Editor) -> Response:
    settings: Settings = request.app.state.settings
    engine = request.app.state.engine
    runner = send_runner(request)
    with Session(engine) as session:
        issue = get_issue(session, number)
        assert issue.id is not None
        line = issue_line(session, settings, issue)
        rows = issue_rows(session, issue)
        draft = issue.state == IssueState.DRAFT
        featured = {c.slug for c, _full in rows}
        extra = [c for c in addable(session, settings, utcnow()) if c.slug not in featured]
        entries = _history(session, issue.id)
        already = started_in_week(session, settings, utcnow())
        subscribers = active_count(session)
        reading = issue_reading(session, issue, settings)
        takes = issue_takes(session, issue)
        every = copies(session, settings, issue) if draft else []
        now = console_now(request)
    real = settings.transport not in EXEMPT_TRANSPORTS
    # The health probe waits on the network: it runs on the send confirmation page.
    report = preflight(
        issue_message(issue, settings), settings, preheader=issue.preheader, real=real, health=None
    )
    if every:
        check_copies(report, every, [c for c, _f in rows])
    left, right = (
        side_by_side(every, request.query_params.get("a"), request.query_params.get("b"))
        if every
        else (None, None)
    )
    live = issue.state == IssueState.SENDING or (runner.running and runner.number == number)
    progress = None
    if live or issue.state == IssueState.PAUSED or line.total:
        progress = issue_status(engine, number=number, settings=settings)
    return render(
        request,
        "issue.html",
        viewer,
        issue=issue,
        line=line,
        rows=rows,
        draft=draft,
        addable=extra,
        layouts=LAYOUTS,
        history=entries,
        report=report,
        real=real,
        blocked=blocked_reason(issue, settings) if draft else None,
        other_this_week=already if already is not None and already.id != issue.id else None,
        subscribers=subscribers,
        text=preview_text(issue, settings),
        dark_styles=has_dark_styles(issue.html),
        progress=progress,
        reading=reading,
        last_summary=runner.last_summary if runner.number == number else None,
        refresh=REFRESH_SECONDS if live else None,
        settings=settings,
        takes=takes,
        note_preview=note_html(issue.note, styled=False),
        copies=every,
        left=left,
        right=right,
        schedule_value=(
            f"{issue.scheduled_for.astimezone(settings.tz):%Y-%m-%dT%H:%M}"
            if issue.scheduled_for
            else ""
        ),
        schedule_min=f"{now.astimezone(settings.tz):%Y-%m-%dT%H:%M}",
    )


def _preview_response(body: str | bytes, media_type: str, **headers: str) -> Response:
    response = Response(body, media_type=media_type)
    response.headers["Content-Security-Policy"] = PREVIEW_CSP
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    response.headers.update(headers)
    return response


@router.get("/issues/{number}/preview")
def issue_preview(request: Request, number: int, viewer: Editor, scheme: str = "light") -> Response:
    """The email exactly as sent (sample recipient); ``?scheme=dark`` as in dark mode."""
    if scheme not in ("light", "dark"):
        raise ConsoleProblem(422, "scheme must be light or dark")
    settings: Settings = request.app.state.settings
    with Session(request.app.state.engine) as session:
        issue = get_issue(session, number)
    return _preview_response(
        preview_html(issue, settings, dark=scheme == "dark"), "text/html; charset=utf-8"
    )


@router.get("/issues/{number}/text")
def issue_text(request: Request, number: int, viewer: Editor) -> Response:
    settings: Settings = request.app.state.settings
    with Session(request.app.state.engine) as session:
        issue = get_issue(session, number)
    return _preview_response(preview_text(issue, settings), "text/plain; charset=utf-8")


@router.get("/issues/{number}/eml")
def issue_eml(request: Request, number: int, viewer: Editor) -> Response:
    settings: Settings = request.app.state.settings
    with Session(request.app.state.engine) as session:
        issue = get_issue(session, number)
    return _preview_response(
        preview_eml(issue, settings),
        "message/rfc822",
        **{"Content-Disposition": f'attachment; filename="issue-{number}.eml"'},
    )


def edit_from_form(
    current: list[str],
    *,
    subject: str,
    preheader: str,
    intro: str,
    slugs: list[str],
    positions: list[str],
    layouts: list[str],
    add_slugs: list[str],
    add_layouts: list[str],
    note: str | None = None,
    takes: list[str] | None = None,
) -> Edit:
    """The form's rows (one per featured comparison: its position and full card, link
    or drop; one per addable comparison: skip, card or link) as an :class:`Edit`."""
    if not (len(slugs) == len(positions) == len(layouts)) or len(add_slugs) != len(add_layouts):
        raise ConsoleProblem(422, "the form's rows do not line up; reload the page")
    if takes is not None and len(takes) != len(slugs):
        raise ConsoleProblem(422, "the form's rows do not line up; reload the page")
    if sorted(slugs) != sorted(current):
        raise ConsoleProblem(409, "the issue changed since this form was loaded; reload the page")
    keyed: list[tuple[float, int, str]] = []
    drop: list[str] = []
    full: list[str] = []
    for index, (slug, position, layout) in enumerate(zip(slugs, positions, layouts, strict=True)):
        if layout not in LAYOUTS:
            raise ConsoleProblem(422, f"unknown layout {layout[:20]!r}")
        try:
            place = float(position)
        except ValueError:
            raise ConsoleProblem(422, f"position {position[:20]!r} is not a number") from None
        if layout == "drop":
            drop.append(slug)
            continue
        keyed.append((place, index, slug))
        if layout == "full":
            full.append(slug)
    add: list[str] = []
    for slug, layout in zip(add_slugs, add_layouts, strict=True):
        if layout in ("full", "link"):
            add.append(slug)
            if layout == "full":
                full.append(slug)
    order = [slug for _p, _i, slug in sorted(keyed)]
    return Edit(
        subject=subject.strip(),
        preheader=preheader.strip(),
        intro=intro.strip(),
        order=order + add if order != current or add else None,
        drop=drop,
        add=add,
        full=full,
        note=note.strip() if note is not None else None,
        takes=(
            {s: t for s, t, layout in zip(slugs, takes, layouts, strict=True) if layout != "drop"}
            if takes is not None
            else None
        ),
    )


Rows = Annotated[list[str] | None, Form()]


@router.post("/issues/{number}/edit")
def issue_edit(
    request: Request,
    number: int,
    viewer: EditorPost,
    subject: Annotated[str, Form(max_length=300)] = "",
    preheader: Annotated[str, Form(max_length=300)] = "",
    intro: Annotated[str, Form(max_length=5000)] = "",
    slug: Rows = None,
    position: Rows = None,
    layout: Rows = None,
    add_slug: Rows = None,
    add_layout: Rows = None,
    note: Annotated[str | None, Form(max_length=NOTE_MAX_CHARS)] = None,
    take: Rows = None,
) -> Response:
    settings: Settings = request.app.state.settings
    if not subject.strip():
        raise ConsoleProblem(422, "the subject may not be empty")
    try:
        with session_scope(request.app.state.engine) as session:
            issue = get_issue(session, number)
            current = [c.slug for c, _f in issue_rows(session, issue)]
            edit = edit_from_form(
                current,
                subject=subject,
                preheader=preheader,
                intro=intro,
                slugs=slug or [],
                positions=position or [],
                layouts=layout or [],
                add_slugs=add_slug or [],
                add_layouts=add_layout or [],
                note=note,
                takes=take,
            )
            changes = edit_issue(session, issue, settings, edit, actor=viewer.email)
    except DigestError as exc:
        raise ConsoleProblem(409, str(exc), title="Not saved") from exc
    return back(number, "edited" if changes else "unchanged", "#preview")


@router.post("/issues/{number}/test")
def issue_test(
    request: Request,
    number: int,
    viewer: EditorPost,
    to: Annotated[str, Form(max_length=320)] = "",
) -> Response:
    settings: Settings = request.app.state.settings
    try:
        address = normalize_email(to)
    except DigestError as exc:
        raise ConsoleProblem(422, f"no test sent: {exc}") from exc
    factory = request.app.state.transport_factory
    try:
        weekly_job(
            settings,
            engine=request.app.state.engine,
            transport=factory(settings) if factory else None,
            issue=number,
            test_to=address,
            actor=viewer.email,
        )
    except DigestError as exc:
        raise ConsoleProblem(502, f"no test sent: {exc}", title="Test not sent") from exc
    return back(number, "tested")


@router.post("/issues/{number}/review")
def issue_review(
    request: Request,
    number: int,
    viewer: EditorPost,
    decision: Annotated[str, Form()] = "",
    note: Annotated[str, Form(max_length=1000)] = "",
) -> Response:
    actions = {"approve": approve, "hold": hold}
    if decision not in ("approve", "hold", "release"):
        raise ConsoleProblem(422, "decide approve, hold or release")
    try:
        with session_scope(request.app.state.engine) as session:
            issue = get_issue(session, number)
            if decision == "release":
                release(session, issue, viewer.email)
            else:
                actions[decision](session, issue, viewer.email, note.strip())
    except DigestError as exc:
        raise ConsoleProblem(409, str(exc)) from exc
    done = {"approve": "approved", "hold": "held", "release": "released"}[decision]
    return back(number, done)
