"""The archive's answers, rendered once per process and served from memory.

A send brings every reader's "view in browser" click within minutes; rendering the
49 KB page (Jinja + MRML) for each made ``/archive/N`` as slow as the renderer
(issue 28). Each entry holds the finished body, its ETag and what it was made from
(the issue's id, state and ``updated_at``):

- **A sent issue's page is immutable**: served from memory for the life of the
  process, with no query at all.
- **An issue still sending or paused** may be edited: its row is looked at again
  (one small query) at most once every :data:`RECHECK_SECONDS`, and the page is
  rendered anew when it changed.
- **The feed** changes when an issue goes public or changes: the list of public
  issues (numbers, states, times — a small query) is looked at again at most once
  every :data:`RECHECK_SECONDS`.
- **The base URL, list name, logo …** are the process's settings: a change takes a
  restart, which empties the cache.

So every process serves what the store holds, at most one second late for an issue
that is still sending, and exactly for a sent one. Answers carry an ``ETag``; a
request whose ``If-None-Match`` matches gets ``304`` with no body.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import Response

logger = logging.getLogger(__name__)

FEED_TYPE = "application/atom+xml; charset=utf-8"
HTML_TYPE = "text/html; charset=utf-8"
#: How stale a page of an issue still sending (or the feed) may be, in seconds.
RECHECK_SECONDS = 1.0
MAX_ENTRIES = 512


@dataclass
class Entry:
    body: bytes
    etag: str
    stamp: Hashable  # what the body was made from; another stamp means render again
    immutable: bool
    checked: float


def etag_of(body: bytes) -> str:
    return '"' + hashlib.sha256(body).hexdigest()[:24] + '"'


class ArchiveCache:
    """Rendered archive answers of one process, by key (``("page", ref, root)`` …)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._entries: OrderedDict[Hashable, Entry] = OrderedDict()
        self._lock = threading.Lock()

    def fresh(self, key: Hashable) -> Entry | None:
        """The entry, when it may be served without asking the store (no I/O)."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.immutable or self.clock() - entry.checked < RECHECK_SECONDS:
            return entry
        return None

    def confirm(self, key: Hashable, stamp: Hashable) -> Entry | None:
        """The entry if it was made from ``stamp`` (the store still says so)."""
        entry = self._entries.get(key)
        if entry is None or entry.stamp != stamp:
            return None
        entry.checked = self.clock()
        return entry

    def put(self, key: Hashable, body: bytes, stamp: Hashable, *, immutable: bool) -> Entry:
        entry = Entry(body, etag_of(body), stamp, immutable, self.clock())
        with self._lock:
            self._entries[key] = entry
            self._entries.move_to_end(key)
            while len(self._entries) > MAX_ENTRIES:
                self._entries.popitem(last=False)
        return entry

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


def cached_response(
    request: Request,
    entry: Entry,
    media_type: str,
    cache_control: str,
    headers: dict[str, str] | None = None,
) -> Response:
    """``entry`` as an answer: ``304`` when the client holds this version."""
    common = {"ETag": entry.etag, "Cache-Control": cache_control, **(headers or {})}
    wanted = request.headers.get("if-none-match", "")
    if wanted and (wanted.strip() == "*" or entry.etag in [t.strip() for t in wanted.split(",")]):
        return Response(status_code=304, headers=common)
    return Response(entry.body, media_type=media_type, headers=common)


def page_response(request: Request, entry: Entry, csp: str) -> Response:
    """An issue's page: an hour in caches once sent, a minute while it may change."""
    cache_control = "public, max-age=3600" if entry.immutable else "public, max-age=60"
    return cached_response(
        request, entry, HTML_TYPE, cache_control, {"Content-Security-Policy": csp}
    )


def feed_response(request: Request, entry: Entry) -> Response:
    response = cached_response(request, entry, FEED_TYPE, "public, max-age=300")
    response.headers["Vary"] = "Accept"  # a browser gets a page at the same address
    return response


def wants_page(accept: str) -> bool:
    """A browser opening the feed (it asks for text/html, not for a feed type) gets a
    readable page; feed readers, and anything that names no type, get the Atom XML.
    (An XSLT stylesheet would do it inside the XML, but Chromium is dropping XSLT.)"""
    types = {part.split(";")[0].strip().lower() for part in accept.split(",")}
    feeds = {"application/atom+xml", "application/rss+xml"}
    return "text/html" in types and not types & feeds
