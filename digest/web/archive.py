"""The public archive: an index of issues that went out, each issue's page on the
website (the digest's "view in browser" link) and an Atom feed with every issue's full
content.

An issue is public once its send has started (``sending``, ``paused`` or ``sent``):
readers follow "view in browser" while the send is still running. Drafts and
cancelled issues are not public. The page is the digest template's web variant
(digest/web/issue_page.py): site header and navigation, a subscribe box, Open Graph
and feed discovery tags, no greeting and no subscription footer. Feed entry ids are
``urn:uuid:`` ids stored per issue, so a move to another domain changes none.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Hashable
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response
from sqlalchemy import select as sa_select
from sqlmodel import Session, col, select
from starlette.concurrency import run_in_threadpool

from digest.core.clock import parse_week, utcnow
from digest.core.settings import Settings
from digest.core.textsafe import xml_text
from digest.issue.render import week_label
from digest.mail.message import per_issue_values
from digest.mail.placeholders import placeholder
from digest.store.models import Issue, IssueState
from digest.web.archive_cache import (
    ArchiveCache,
    Entry,
    feed_response,
    page_response,
    wants_page,
)
from digest.web.issue_page import feed_content, has_selection, issue_url, web_page
from digest.web.pages import ARCHIVE_CSP, page, render_template

logger = logging.getLogger(__name__)

router = APIRouter()

PUBLIC_STATES = (IssueState.SENDING.value, IssueState.PAUSED.value, IssueState.SENT.value)
_ANY_PLACEHOLDER = re.compile(r"\[\[%[a-z_]{1,40}%\]\]")
FEED_ENTRIES = 50


def _public_issues(request: Request, limit: int | None = None) -> list[Issue]:
    with Session(request.app.state.engine) as session:
        query = (
            select(Issue)
            .where(col(Issue.state).in_(PUBLIC_STATES))
            .order_by(col(Issue.number).desc())
        )
        if limit:
            query = query.limit(limit)
        return list(session.exec(query))


def _issue_view(issue: Issue, settings: Settings) -> dict[str, Any]:
    published = issue.started_at or issue.created_at
    return {
        "id": issue.feed_id,
        "number": issue.number,
        "week": issue.week,
        "label": f"Issue #{issue.number} · {week_label(issue.week)}",
        "subject": issue.subject,
        "preheader": issue.preheader,
        "url": issue_url(settings, issue),
        "path": f"/archive/{issue.number}",
        "published": published,
        "updated": issue.finished_at or published,
    }


def public_html(issue: Issue, settings: Settings) -> str:
    """An issue with no stored selection (frozen outside the store's comparisons): its
    email HTML with the placeholders replaced by non-personal values."""
    html = per_issue_values(issue.html, issue.text, issue_url(settings, issue), settings.base_url)[
        0
    ]
    html = html.replace(placeholder("greeting"), "")
    html = html.replace(placeholder("unsubscribe_url"), f"{settings.base_url}/unsubscribe")
    # Any per-recipient placeholder added later must not show raw (or personal) either.
    return _ANY_PLACEHOLDER.sub("", html)


@router.get("/archive", response_class=HTMLResponse, summary="Index of published issues")
def archive_index(request: Request) -> HTMLResponse:
    settings: Settings = request.app.state.settings
    issues = [_issue_view(i, settings) for i in _public_issues(request)]
    return page(request, "archive_index.html", settings, issues=issues)


FEED_KEY = ("feed",)


@router.get("/archive/feed.atom", summary="Atom feed of published issues")
async def archive_feed(request: Request) -> Response:
    if wants_page(request.headers.get("accept", "")):
        return await run_in_threadpool(_feed_page, request)
    cache: ArchiveCache = request.app.state.archive_cache
    entry = cache.fresh(FEED_KEY)
    if entry is None:
        entry = await run_in_threadpool(_feed_entry, request, cache)
    return feed_response(request, entry)


def _feed_page(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    issues = [_issue_view(i, settings) for i in _public_issues(request, FEED_ENTRIES)]
    response = page(
        request,
        "feed_page.html",
        settings,
        issues=issues,
        self_url=f"{settings.base_url}/archive/feed.atom",
    )
    response.headers["Vary"] = "Accept"
    return response


def _feed_entry(request: Request, cache: ArchiveCache) -> Entry:
    """The feed as cached, rendered again only when a public issue came or changed."""
    table = Issue.__table__  # type: ignore[attr-defined]
    with request.app.state.engine.connect() as conn:
        stamp = tuple(
            tuple(row)
            for row in conn.execute(
                sa_select(
                    table.c.id,
                    table.c.state,
                    table.c.updated_at,
                    table.c.started_at,
                    table.c.finished_at,
                )
                .where(table.c.state.in_(PUBLIC_STATES))
                .order_by(table.c.number.desc())
                .limit(FEED_ENTRIES)
            )
        )
    entry = cache.confirm(FEED_KEY, stamp)
    if entry is not None:
        return entry
    return cache.put(FEED_KEY, _render_feed(request).encode(), stamp, immutable=False)


def _render_feed(request: Request) -> str:
    settings: Settings = request.app.state.settings
    with Session(request.app.state.engine) as session:
        issues = []
        for issue in _public_issues(request, FEED_ENTRIES):
            view = _issue_view(issue, settings)
            view["content"] = (
                feed_content(session, issue, settings)
                if has_selection(session, issue)
                else view["preheader"]
            )
            issues.append(view)
    updated: datetime = max((i["updated"] for i in issues), default=utcnow())
    body = render_template(
        "feed.xml",
        {
            "list_name": settings.list_name,
            "base_url": settings.base_url,
            "self_url": f"{settings.base_url}/archive/feed.atom",
            # Stable across a domain move too: named by the list, not the host.
            "feed_id": f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_DNS, settings.effective_list_id)}",
            "updated": updated,
            "issues": issues,
        },
    )
    # A stored text the importer let through before it checked must not break the XML.
    return xml_text(body)


@router.get(
    "/archive/{ref}",
    response_class=HTMLResponse,
    summary="One issue's web version (the email's 'view in browser' link)",
    responses={404: {"description": "No published issue by that number or week."}},
)
async def archive_issue(ref: str, request: Request) -> Response:
    """``/archive/12`` (the issue number), or ``/archive/2026-W47`` (links in issues
    sent before issues were numbered: the newest issue of that week)."""
    cache: ArchiveCache = request.app.state.archive_cache
    root = request.scope.get("root_path", "").rstrip("/")
    key = ("page", ref, root)
    entry = cache.fresh(key)
    if entry is None:
        entry = await run_in_threadpool(_page_entry, request, cache, key, ref, root)
    if entry is None:
        return _not_found(request, request.app.state.settings)
    return page_response(request, entry, ARCHIVE_CSP)


def _page_entry(
    request: Request, cache: ArchiveCache, key: Hashable, ref: str, root: str
) -> Entry | None:
    """The page as cached, rendered again only when its issue changed; None: no such
    public issue."""
    settings: Settings = request.app.state.settings
    query = select(Issue).where(col(Issue.state).in_(PUBLIC_STATES))
    # isdigit() alone accepts "²" and other digits int() refuses (a 500, issue 22).
    by_number = ref.isascii() and ref.isdigit() and len(ref) < 10
    if by_number:
        query = query.where(Issue.number == int(ref))
    else:
        try:
            parse_week(ref)
        except ValueError:
            return None
        query = query.where(Issue.week == ref.strip())
    with Session(request.app.state.engine) as session:
        issue = session.exec(query.order_by(col(Issue.number).desc())).first()
        if issue is None or issue.state not in PUBLIC_STATES:
            return None
        stamp = (issue.id, issue.state, issue.updated_at)
        entry = cache.confirm(key, stamp)
        if entry is not None:
            return entry
        if has_selection(session, issue):
            html = web_page(session, issue, settings, root)
        else:
            html = public_html(issue, settings)
    # By number, a sent issue's page is final; by week, a newer issue of that week
    # may still go out and take the address over.
    immutable = by_number and issue.state == IssueState.SENT.value
    return cache.put(key, html.encode(), stamp, immutable=immutable)


def _not_found(request: Request, settings: Settings) -> HTMLResponse:
    return page(
        request,
        "link_problem.html",
        settings,
        status_code=404,
        title="No such issue",
        reason="there is no published issue for that week",
        subscribe_again=False,
    )
