"""Log in before the body: a console request that may change something is checked for
its session before the app reads a byte of its body.

FastAPI parses a route's form before it runs the route's dependencies, so the login
check of :mod:`digest.console.auth` came after an anonymous client's upload had been
read (a 300 MiB multipart post went to a temp file, then to the login page).
:class:`SessionFirst` runs that check first, on every method but GET, HEAD and OPTIONS
under ``/console``: the login form is open to all (its body is capped like every
console form, digest/http/bodies.py), a set-password post needs a valid link, anything
else a session. A refusal is the console's usual answer (the login page, a 404 page,
401 for the JSON API) and closes the connection, so nothing of the body is read.
"""

from __future__ import annotations

import inspect
import logging

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from digest.console.auth import _setup_user, _viewer

logger = logging.getLogger(__name__)

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
OPEN = frozenset({"/console/login"})
SETUP = "/console/setup/"


class SessionFirst:
    """Pure ASGI middleware: console sessions (or set-password links) checked before
    the body of any unsafe console request is read."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope.get("path", "")
        if (
            scope["type"] != "http"
            or scope["method"] in SAFE_METHODS
            or not (path == "/console" or path.startswith("/console/"))
            or path in OPEN
        ):
            await self.app(scope, receive, send)
            return
        request = Request(scope)  # no receive: nothing here can read the body
        link = path.removeprefix(SETUP) if path.startswith(SETUP) else None
        try:
            await run_in_threadpool(_check, request, link)
        except Exception as exc:
            response = await _handled(request, exc)
            response.headers["connection"] = "close"
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _check(request: Request, link: str | None) -> None:
    """ConsoleProblem unless ``request`` has a session (or ``link`` is a valid
    set-password link). The viewer stays on the request's state: the route's own
    check does not ask the database again."""
    if link is None:
        _viewer(request)
    else:
        _setup_user(request, link)


async def _handled(request: Request, exc: Exception) -> Response:
    """The app's own answer to ``exc`` (its exception handlers run inside this
    middleware, so they are looked up here); unhandled errors go on up."""
    handlers = request.app.exception_handlers
    for kind in type(exc).__mro__:
        handler = handlers.get(kind)
        if handler is not None:
            response = handler(request, exc)
            if inspect.isawaitable(response):
                response = await response
            assert isinstance(response, Response)
            return response
    raise exc
