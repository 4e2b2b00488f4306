"""HTML pages for the public web: one autoescaping Jinja environment over
templates/web and the site-wide context every page gets. (The security headers every
response carries are in digest/http/middleware.py; what a request body may be is in
digest/http/bodies.py.)"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

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

#: An issue's page is the digest template's web variant: inline styles, remote images
#: (a logo), links, and the subscribe box's form.
ARCHIVE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src 'self' https: data:; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)


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


_FIXED: dict[tuple[object, ...], bytes] = {}


def fixed_page(request: Request, template: str, settings: Settings, **context: Any) -> HTMLResponse:
    """A page that is the same for everyone who gets it ("you are unsubscribed", the
    confirmation button): rendered once per process, then answered from memory — the
    routes a send floods (issue 28). Not for pages that show anything from the store."""
    root = request.scope.get("root_path", "").rstrip("/")
    # Everything page() gives the template besides ``context``.
    site = (settings.list_name, settings.site_url, settings.base_url, settings.postal_address)
    key = (template, root, *site, *sorted(context.items()))
    body = _FIXED.get(key)
    if body is None:
        body = bytes(page(request, template, settings, **context).body)
        if len(_FIXED) > 256:
            _FIXED.clear()
        _FIXED[key] = body
    return HTMLResponse(body, headers={"Cache-Control": "no-store"})


def _topics(request: Request) -> list[str]:
    """The topics a reader may choose at sign-up (the comparisons' categories)."""
    engine = getattr(request.app.state, "engine", None)
    if engine is None:
        return []
    with engine.connect() as conn:
        return catalog(conn)
