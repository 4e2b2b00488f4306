"""An issue as a page of the website and as an Atom entry, rendered from the issue
(its frozen selection, order and words) rather than by editing the email's HTML.

The web version is the digest template with ``web`` set: the site's header and
navigation, the issue's title as the page's h1, a subscribe box, Open Graph and feed
discovery tags, and no greeting or subscription footer — nothing personal to strip.
The feed entry is the same content as plain article HTML. Both are cached per issue
version (an edit changes ``updated_at``).
"""

from __future__ import annotations

import logging
from typing import Any

from sqlmodel import Session

from digest.core.settings import Settings
from digest.issue.freeze import issue_comparisons, issue_takes
from digest.issue.render import compile_mjml, issue_context, mjml_source
from digest.issue.screen import screen
from digest.store.models import Comparison, Issue
from digest.web.pages import render_template

logger = logging.getLogger(__name__)

TEMPLATE = "email/digest"
_CACHE: dict[tuple[object, ...], str] = {}
_CACHE_SIZE = 256


def issue_url(settings: Settings, issue: Issue) -> str:
    return f"{settings.base_url}/archive/{issue.number}"


def _shown(session: Session, issue: Issue) -> tuple[list[Comparison], list[Comparison]]:
    # An issue frozen before import refused unrenderable text may still list such a
    # comparison: the page and the feed leave it out rather than fail (a 500, a feed
    # that is not XML). Its email went out, or was skipped, when it was frozen.
    full, links = issue_comparisons(session, issue)
    return screen(full)[0], screen(links)[0]


def _context(session: Session, issue: Issue, settings: Settings, root: str) -> dict[str, Any]:
    full, links = _shown(session, issue)
    context = issue_context(
        week=issue.week,
        number=issue.number,
        full=full,
        links=links,
        settings=settings,
        subject=issue.subject,
        preheader=issue.preheader,
        intro=issue.intro,
        note=issue.note,
        takes=issue_takes(session, issue),
    )
    url = issue_url(settings, issue)
    context.update(
        subscriber=False,
        archive_url=url,
        web={
            "root": root,
            "url": url,
            "feed_url": f"{settings.base_url}/archive/feed.atom",
            "site_url": settings.site_url,
            "subscribe_url": f"{settings.base_url}/subscribe",
        },
    )
    return context


def _cached(kind: str, issue: Issue, settings: Settings, root: str, make: Any) -> str:
    key = (
        kind,
        issue.id,
        issue.updated_at,
        root,
        settings.base_url,
        settings.site_url,
        settings.list_name,
        settings.postal_address,
        settings.logo_url,
        settings.logo_alt,
    )
    found = _CACHE.get(key)
    if found is None:
        found = make()
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[key] = found
    return found


def has_selection(session: Session, issue: Issue) -> bool:
    full, links = _shown(session, issue)
    return bool(full or links)


def page_source(session: Session, issue: Issue, settings: Settings, root: str = "") -> str:
    """The web variant's MJML (what :func:`web_page` compiles; validators read it)."""
    return mjml_source(TEMPLATE, _context(session, issue, settings, root))


def web_page(session: Session, issue: Issue, settings: Settings, root: str = "") -> str:
    """The issue's page on the website (a full HTML document)."""

    def make() -> str:
        return compile_mjml(page_source(session, issue, settings, root), f"{TEMPLATE}.mjml")

    return _cached("page", issue, settings, root, make)


def feed_content(session: Session, issue: Issue, settings: Settings) -> str:
    """The issue's full content as article HTML for its Atom entry (absolute links)."""

    def make() -> str:
        return render_template("feed_entry.html", _context(session, issue, settings, ""))

    return _cached("feed", issue, settings, "", make)
