"""HTML pages for the public web: one autoescaping Jinja environment over
templates/web, the security headers every response carries, and the limits on what
a public form may send."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from digest.core.resources import TEMPLATES_DIR
from digest.core.settings import Settings
from subscribers.preferences import catalog

logger = logging.getLogger(__name__)

_ENV = Environment(
    loader=FileSystemLoader(str(TEMPLATES_DIR / "web")),
    autoescape=select_autoescape(enabled_extensions=("html", "xml"), default=True),
    undefined=StrictUndefined,
    trim_blocks=True,
    lstrip_blocks=True,
)

#: Styles are inline in the page (no third-party request); the only script is our own
#: /static/timezone.js, which fills the sign-up form's time zone (everything works
#: without it).
PAGE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; script-src 'self'; "
    "img-src 'self' https: data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
#: An issue's page is the digest template's web variant: inline styles, remote images
#: (a logo), links, and the subscribe box's form.
ARCHIVE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' https: data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)

#: Public POST bodies (subscribe, confirm, one-click unsubscribe) are tiny.
MAX_FORM_BYTES = 64 * 1024
LIMITED_PREFIXES = ("/subscribe", "/unsubscribe", "/confirm", "/preferences")


def render_template(name: str, context: dict[str, Any]) -> str:
    return _ENV.get_template(name).render(context)


def page(
    request: Request,
    template: str,
    settings: Settings,
    *,
    status_code: int = 200,
    **context: Any,
) -> HTMLResponse:
    """Render ``templates/web/{template}`` with the site-wide context."""
    body = render_template(
        template,
        {
            "list_name": settings.list_name,
            "site_url": settings.site_url,
            "base_url": settings.base_url,
            # Links and forms are root-relative: the app works on whatever host name
            # it is reached by (DIGEST_BASE_URL is for the links in emails).
            "root": request.scope.get("root_path", "").rstrip("/"),
            "postal_address": settings.postal_address,
            "topic_catalog": _topics(request) if template == "subscribe.html" else [],
            **context,
        },
    )
    response = HTMLResponse(body, status_code=status_code)
    # Pages reached through a token must not be cached by a shared proxy.
    response.headers["Cache-Control"] = "no-store"
    return response


def _topics(request: Request) -> list[str]:
    """The topics a reader may choose at sign-up (the comparisons' categories)."""
    engine = getattr(request.app.state, "engine", None)
    if engine is None:
        return []
    with engine.connect() as conn:
        return catalog(conn)


def client_ip(request: Request) -> str:
    """The client's address as uvicorn resolved it (X-Forwarded-For only from trusted
    proxies, see DIGEST_FORWARDED_ALLOW_IPS)."""
    return request.client.host if request.client else "unknown"


def user_agent(request: Request) -> str | None:
    return request.headers.get("user-agent")


class SecurityHeaders:
    """Pure ASGI middleware: security headers on every response, and a size limit on
    the bodies of the public form routes (413 before the body is read into memory)."""

    def __init__(self, app: ASGIApp, *, hsts: bool) -> None:
        self.app = app
        self.hsts = hsts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        limited = path.startswith(LIMITED_PREFIXES)
        if limited and _declared_length(scope) > MAX_FORM_BYTES:
            await _too_large(send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {k.lower() for k, _ in headers}
                for key, value in self._headers(path):
                    if key not in present:
                        headers.append((key, value))
                message["headers"] = headers
            await send(message)

        if not limited:
            await self.app(scope, receive, send_with_headers)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > MAX_FORM_BYTES:
                    raise _BodyTooLarge
            return message

        try:
            await self.app(scope, counting_receive, send_with_headers)
        except _BodyTooLarge:
            await _too_large(send)

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


class _BodyTooLarge(Exception):
    pass


def _declared_length(scope: Scope) -> int:
    for key, value in scope.get("headers", []):
        if key == b"content-length":
            try:
                return int(value)
            except ValueError:
                return MAX_FORM_BYTES + 1
    return 0


async def _too_large(send: Send) -> None:
    body = b"request body too large"
    await send(
        {
            "type": "http.response.start",
            "status": 413,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
                (b"x-content-type-options", b"nosniff"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
