"""What makes the public web a site rather than an API: HTML pages for 404 and 405 on
browser routes, a 503 page with Retry-After while the database is unreachable, HEAD on
every GET route, a favicon, and ``/docs`` rendered on the server from the OpenAPI spec
(no third-party script; off with ``DIGEST_API_DOCS=false``).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exception_handlers import http_exception_handler
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from sqlalchemy.exc import DataError, SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from digest.core.settings import Settings
from digest.exceptions import StoreError
from digest.http.accesslog import redact
from digest.store.outage import describe, is_unreachable
from digest.web.pages import page

logger = logging.getLogger(__name__)

#: Machine routes keep FastAPI's JSON errors.
API_PREFIXES = ("/webhooks", "/console/api", "/openapi.json", "/healthz")
_TITLES = {
    404: (
        "Page not found",
        "There is no page at this address. It may have moved, or the link was cut short.",
    ),
    405: ("Not here", "This address does not answer that kind of request."),
    400: ("Out of range", "A number in this address is out of range, so there is nothing here."),
}
#: What an out-of-range number in a URL or a query answers (an id or a page number
#: past what the database can hold: SQLite raises OverflowError, PostgreSQL DataError).
OUT_OF_RANGE = "a number in the request is out of range"
#: The page while the database is away, and how soon to ask again.
UNAVAILABLE = (
    "Back in a moment",
    "The service is briefly unavailable (its database is restarting or busy). Nothing "
    "you sent was half done: try again in a few seconds.",
)
RETRY_AFTER_SECONDS = 5
FAVICON = (
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 32 32">'
    '<rect width="32" height="32" rx="7" fill="#111827"/>'
    '<path d="M8 16.5l5.2 5.2L24 10.8" fill="none" stroke="#ffffff" stroke-width="3.6" '
    'stroke-linecap="round" stroke-linejoin="round"/></svg>'
)


def _wants_html(request: Request) -> bool:
    if request.url.path.startswith(API_PREFIXES):
        return False
    accept = request.headers.get("accept", "")
    return "json" not in accept or "text/html" in accept


def without_slash(app: FastAPI, request: Request) -> str | None:
    """``/archive/`` → ``/archive`` when that is a route: a relative Location, never a
    host, and never a ``//`` that a browser would read as one."""
    path = request.url.path
    if request.method not in ("GET", "HEAD") or len(path) < 2 or not path.endswith("/"):
        return None
    stripped = "/" + path.strip("/")
    if stripped.startswith("//") or "\\" in stripped:
        return None
    scope = {**request.scope, "path": stripped}
    if not any(route.matches(scope)[0] is Match.FULL for route in app.router.routes):
        return None
    query = request.url.query
    return stripped + (f"?{query}" if query else "")


def install(app: FastAPI, settings: Settings) -> None:
    """Error pages, favicon and docs on ``app``; ``/archive/`` redirects to ``/archive``
    with a path-only Location (Starlette's own redirect names the request's Host)."""

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        target = without_slash(app, request) if exc.status_code == 404 else None
        if target is not None:
            return RedirectResponse(target, status_code=307)
        if exc.status_code not in _TITLES or not _wants_html(request):
            return await http_exception_handler(request, exc)
        title, message = _TITLES[exc.status_code]
        response = page(
            request,
            "error.html",
            settings,
            status_code=exc.status_code,
            title=title,
            message=message,
        )
        response.headers.update(exc.headers or {})
        return response

    @app.exception_handler(SQLAlchemyError)
    async def database_error(request: Request, exc: SQLAlchemyError) -> Response:
        if isinstance(exc, DataError):
            return await out_of_range(request, exc)
        if not is_unreachable(exc):
            raise exc  # a bug, not an outage: the server's own 500
        return unavailable(request, describe(exc))

    @app.exception_handler(OverflowError)
    async def out_of_range(request: Request, exc: Exception) -> Response:
        # Every route at once: an id, a page or ?number= past a 64-bit integer is a
        # client's mistake, never a 500 (issue 22).
        path = redact(request.url.path)
        logger.warning("%s %s: %s (%s)", request.method, path, OUT_OF_RANGE, exc)
        return await http_error(request, StarletteHTTPException(400, OUT_OF_RANGE))

    @app.exception_handler(StoreError)
    async def store_error(request: Request, exc: StoreError) -> Response:
        return unavailable(request, str(exc))

    def unavailable(request: Request, detail: str) -> Response:
        """503 with Retry-After while the database is away or locked (a restart, a
        failover, another process writing past DIGEST_DB_BUSY_TIMEOUT): nothing was
        half done, the request can simply be made again; the engine reconnects by
        itself once the database answers (docs/operations.md)."""
        path = request.url.path
        logger.warning("database unavailable on %s %s: %s", request.method, path, detail)
        headers = {"Retry-After": str(RETRY_AFTER_SECONDS)}
        if not _wants_html(request) or "json" in request.headers.get("content-type", ""):
            return JSONResponse({"detail": UNAVAILABLE[1]}, 503, headers=headers)
        response = page(
            request,
            "error.html",
            settings,
            status_code=503,
            title=UNAVAILABLE[0],
            message=UNAVAILABLE[1],
        )
        response.headers.update(headers)
        return response

    @app.get("/favicon.ico", include_in_schema=False)
    @app.get("/favicon.svg", include_in_schema=False)
    def favicon() -> Response:
        return Response(
            FAVICON, media_type="image/svg+xml", headers={"Cache-Control": "public, max-age=86400"}
        )

    if settings.api_docs:

        @app.get("/docs", response_class=HTMLResponse, include_in_schema=False)
        def api_docs(request: Request) -> HTMLResponse:
            return page(request, "api_docs.html", settings, spec=app.openapi())
