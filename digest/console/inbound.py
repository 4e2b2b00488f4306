"""The console's "Replies" page: what came back by mail for people — readers' replies
(forwarded to DIGEST_REPLY_FORWARD when set) and notices that named no delivery of
ours by VERP address or signed link — newest first, each downloadable as the message it was.
Operators only: replies carry readers' words and addresses."""

from __future__ import annotations

import logging

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import func, select

from digest.console.auth import Operator
from digest.console.pages import ConsoleProblem, render
from digest.store.models import InboundMail

logger = logging.getLogger(__name__)

router = APIRouter(prefix="/console/mail", include_in_schema=False)
M = InboundMail.__table__  # type: ignore[attr-defined]
LIMIT = 100


@router.get("", response_class=HTMLResponse)
def mail_page(request: Request, viewer: Operator) -> Response:
    settings = request.app.state.settings
    with request.app.state.engine.connect() as conn:
        rows = conn.execute(
            select(
                M.c.id,
                M.c.kind,
                M.c.source,
                M.c.sender,
                M.c.subject,
                M.c.size,
                M.c.forwarded_to,
                M.c.forward_error,
                M.c.received_at,
            )
            .order_by(M.c.received_at.desc(), M.c.id.desc())
            .limit(LIMIT)
        ).all()
        total = conn.execute(select(func.count()).select_from(M)).scalar_one()
    return render(
        request,
        "mail.html",
        viewer,
        rows=rows,
        total=total,
        limit=LIMIT,
        forward_to=settings.reply_forward,
    )


@router.get("/{mail_id}.eml")
def mail_download(request: Request, mail_id: int, viewer: Operator) -> Response:
    with request.app.state.engine.connect() as conn:
        raw = conn.execute(select(M.c.raw).where(M.c.id == mail_id)).scalar()
    if raw is None:
        raise ConsoleProblem(404, f"there is no message {mail_id}", title="Not found")
    return Response(
        bytes(raw),
        media_type="message/rfc822",
        headers={"Content-Disposition": f'attachment; filename="reply-{mail_id}.eml"'},
    )
