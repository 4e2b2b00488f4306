"""The ASGI middleware every response of ``digest serve`` passes through, public site
and console alike: security headers (a default CSP where a page set none) and HEAD
answered as GET. (What a request body may be: digest/http/bodies.py.)"""

from __future__ import annotations

import logging

from starlette.types import ASGIApp, Message, Receive, Scope, Send

logger = logging.getLogger(__name__)

#: Styles are inline in the page (no third-party request); the only script is our own
#: /static/timezone.js, which fills the sign-up form's time zone (everything works
#: without it).
PAGE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; script-src 'self'; "
    "img-src 'self' https: data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)


class SecurityHeaders:
    """Pure ASGI middleware: security headers on every response."""

    def __init__(self, app: ASGIApp, *, hsts: bool) -> None:
        self.app = app
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")

        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                for key, value in self._headers(path):
                    if key not in present:
                        headers.append((key, value))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            # Starlette answers an unhandled error outside every middleware, i.e. without
            # these headers: answer it here, with them, and let it go on to be logged.
            if not started:
                await send_with_headers(
                    {
                        "type": "http.response.start",
                        "status": 500,
                        "headers": [(b"content-type", b"text/plain; charset=utf-8")],
                    }
                )
                await send({"type": "http.response.body", "body": b"Internal Server Error"})
            raise

    def _headers(self, path: str) -> list[tuple[bytes, bytes]]:
        headers = [
            (b"x-content-type-options", b"nosniff"),
            (b"x-frame-options", b"DENY"),
            # Links carry tokens in their path: never leak them to another site.
            (b"referrer-policy", b"no-referrer"),
            (b"permissions-policy", b"interest-cohort=(), camera=(), microphone=()"),
            (b"cross-origin-opener-policy", b"same-origin"),
        ]
        headers.append((b"content-security-policy", PAGE_CSP.encode()))
        if self.hsts:
            headers.append((b"strict-transport-security", b"max-age=31536000"))
        return headers


class HeadAsGet:
    """HEAD on any GET route: answered as the GET, with the headers and without the body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        # Marked, so a route whose GET has an effect (a click count) can tell.
        await self.app({**scope, "method": "GET", "digest.head": True}, receive, headers_only)
