"""The answers a send floods, given before the framework's routing (issue 28).

A click through ``/r/<token>`` whose target this process already knows, and an
archive page or the feed that the archive cache may serve as it is, need no
dependency injection, no route table walk and no thread: :class:`FastPaths` answers
them straight from memory — the same answer the routes would give, through the same
outer middleware (security headers, HEAD as GET, the request counter). Everything
else, including every first sight of a token or a page, goes on to the routes
(digest/web/readers.py, digest/web/archive.py), which fill the caches.
"""

from __future__ import annotations

import logging

from starlette.requests import Request
from starlette.responses import RedirectResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from digest.http.client import client_key
from digest.web.archive_cache import ArchiveCache, feed_response, page_response, wants_page
from digest.web.pages import ARCHIVE_CSP

logger = logging.getLogger(__name__)


class FastPaths:
    """Pure ASGI middleware: cache hits of ``/r/``, ``/archive/N`` and the feed."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "GET":
            path: str = scope["path"]
            if path.startswith("/r/") and await self._click(scope, receive, send, path[3:]):
                return
            if path.startswith("/archive/") and await self._archive(scope, receive, send, path[9:]):
                return
        await self.app(scope, receive, send)

    async def _click(self, scope: Scope, receive: Receive, send: Send, token: str) -> bool:
        state = scope["app"].state
        target = state.clicks.cached(token) if token and "/" not in token else None
        if target is None:
            return False
        request = Request(scope, receive)
        # HEAD (link checkers) is answered like GET but not counted.
        if not scope.get("digest.head"):
            state.clicks.record(target, client_key(request))
        response = RedirectResponse(target.url, 302, headers={"Cache-Control": "no-store"})
        await response(scope, receive, send)
        return True

    async def _archive(self, scope: Scope, receive: Receive, send: Send, ref: str) -> bool:
        cache: ArchiveCache = scope["app"].state.archive_cache
        if ref == "feed.atom":
            accept = Request(scope).headers.get("accept", "")
            if wants_page(accept):  # a browser: the route answers with a page
                return False
            entry = cache.fresh(("feed",))
            if entry is None:
                return False
            response = feed_response(Request(scope, receive), entry)
        else:
            root = scope.get("root_path", "").rstrip("/")
            entry = cache.fresh(("page", ref, root))
            if entry is None:
                return False
            response = page_response(Request(scope, receive), entry, ARCHIVE_CSP)
        await response(scope, receive, send)
        return True
