"""Every copy of an issue in the console: each copy the send will produce (one per
topic set, the monthly round-up) with its readers, two previews side by side, the
words an editor sets for one copy, and the live preview of the editor's note."""

from __future__ import annotations

import logging
from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, Response
from sqlmodel import Session

from digest.console.auth import Editor, EditorPost
from digest.console.pages import PREVIEW_CSP, ConsoleProblem, render
from digest.console.views import get_issue
from digest.core.notes import NOTE_MAX_CHARS, note_html
from digest.core.settings import Settings
from digest.exceptions import DigestError
from digest.jobs.preview import SAMPLE_RECIPIENT
from digest.mail.message import IssueMessage
from digest.readers.previews import Copy, copies, render_copy
from digest.readers.words import set_copy_words
from digest.store.engine import session_scope
from digest.store.models import Issue

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/console", include_in_schema=False)


def find_copy(session: Session, settings: Settings, issue: Issue, ident: str) -> Copy:
    for copy in copies(session, settings, issue):
        if copy.ident == ident:
            return copy
    raise ConsoleProblem(404, "no such copy of this issue (readers may have changed their topics)")


def side_by_side(every: list[Copy], a: str | None, b: str | None) -> tuple[Copy, Copy | None]:
    """The two copies to show: those asked for, else the issue and the first other copy
    that goes to someone."""
    sendable = [c for c in every if not c.skipped]
    by_ident = {c.ident: c for c in sendable}
    left = by_ident.get(a or "") or sendable[0]
    others = [c for c in sendable if c.ident != left.ident and c.readers]
    right = by_ident.get(b or "") or (others[0] if others else None)
    return left, right


def _copy_html(session: Session, settings: Settings, issue: Issue, copy: Copy) -> str:
    assert issue.id is not None
    rendered = render_copy(session, settings, issue, copy)
    message = IssueMessage(
        issue_id=issue.id,
        week=issue.week,
        number=issue.number,
        subject=rendered.subject,
        html=rendered.html,
        text=rendered.text,
        settings=settings,
    )
    return message.html_for(SAMPLE_RECIPIENT)


@router.get("/issues/{number}/copies/{ident}/preview")
def copy_preview(request: Request, number: int, ident: str, viewer: Editor) -> Response:
    """One copy as its readers get it (a sample reader)."""
    settings: Settings = request.app.state.settings
    with Session(request.app.state.engine) as session:
        issue = get_issue(session, number)
        copy = find_copy(session, settings, issue, ident)
        if copy.skipped:
            raise ConsoleProblem(404, f"this preference set gets no email: {copy.skipped}")
        html = _copy_html(session, settings, issue, copy)
    response = Response(html, media_type="text/html; charset=utf-8")
    response.headers["Content-Security-Policy"] = PREVIEW_CSP
    response.headers["X-Frame-Options"] = "SAMEORIGIN"
    response.headers["Referrer-Policy"] = "no-referrer"
    response.headers["Cache-Control"] = "no-store"
    return response


@router.get("/issues/{number}/copies/{ident}", response_class=HTMLResponse)
def copy_page(request: Request, number: int, ident: str, viewer: Editor) -> Response:
    settings: Settings = request.app.state.settings
    with Session(request.app.state.engine) as session:
        issue = get_issue(session, number)
        copy = find_copy(session, settings, issue, ident)
    return render(
        request, "copy.html", viewer, issue=issue, copy=copy, draft=issue.state == "draft"
    )


@router.post("/issues/{number}/copies/{ident}/words")
def copy_words_edit(
    request: Request,
    number: int,
    ident: str,
    viewer: EditorPost,
    subject: Annotated[str, Form(max_length=300)] = "",
    preheader: Annotated[str, Form(max_length=300)] = "",
    intro: Annotated[str, Form(max_length=5000)] = "",
    note: Annotated[str, Form(max_length=NOTE_MAX_CHARS)] = "",
) -> Response:
    """Set this copy's own words; an empty field follows the issue's."""
    settings: Settings = request.app.state.settings
    try:
        with session_scope(request.app.state.engine) as session:
            issue = get_issue(session, number)
            copy = find_copy(session, settings, issue, ident)
            if copy.is_issue:
                raise ConsoleProblem(409, "these are the issue's own words: edit the issue")
            changes = set_copy_words(
                session,
                issue,
                copy.key,
                {"subject": subject, "preheader": preheader, "intro": intro, "note": note},
                actor=viewer.email,
            )
    except DigestError as exc:
        raise ConsoleProblem(409, str(exc), title="Not saved") from exc
    done = "edited" if changes else "unchanged"
    return Response(
        status_code=303,
        headers={"Location": f"/console/issues/{number}/copies/{ident}?done={done}"},
    )


@router.post("/issues/{number}/note-preview")
def note_preview(
    request: Request,
    number: int,
    viewer: EditorPost,
    note: Annotated[str, Form(max_length=NOTE_MAX_CHARS)] = "",
) -> Response:
    """The note as the email shows it (safe HTML: links, emphasis, lists), for the
    live preview beside the note's box."""
    with Session(request.app.state.engine) as session:
        get_issue(session, number)
    response = Response(note_html(note, styled=False), media_type="text/html; charset=utf-8")
    response.headers["Content-Security-Policy"] = "default-src 'none'"
    response.headers["Cache-Control"] = "no-store"
    return response
