"""Application factory for ``digest serve``.

Public routes (docs/subscribers.md): ``/`` and ``/subscribe`` (double opt-in),
``/confirm/{token}``, ``/unsubscribe`` and ``/unsubscribe/{token}`` (RFC 8058), the
archive under ``/archive`` with its Atom feed, ``/healthz``, and the OpenAPI spec at
``/openapi.json`` (interactive at ``/docs``).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse
from sqlalchemy.engine import Engine

from digest import __version__, console
from digest.config import Settings, get_settings
from digest.db import make_engine, migrate
from digest.exceptions import StoreError
from digest.web import archive, public, webhooks
from digest.web.pages import SecurityHeaders
from digest.web.ratelimit import RateLimiter
from subscribers.mail import TransportFactory

logger = logging.getLogger(__name__)


def include_routers(app: FastAPI) -> None:
    """Every router the app serves. A feature with its own router adds one line here."""
    app.include_router(public.router)
    app.include_router(archive.router)
    # Further routers (e.g. provider webhooks from digest/web/webhooks.py) go below.
    app.include_router(webhooks.router)
    console.install(app)


def create_app(
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    transport_factory: TransportFactory | None = None,
) -> FastAPI:
    """The web app. Refuses to start without a real ``DIGEST_SECRET_KEY`` (outside the
    demo). ``engine`` and ``transport_factory`` let tests share a store and an in-memory
    transport; by default the store is opened (and migrated) from the settings and
    confirmations go through ``DIGEST_TRANSPORT``."""
    settings = settings or get_settings()
    settings.signing_key()  # refuse to start with a missing or placeholder secret
    app = FastAPI(
        title="Weekly verdict digest",
        version=__version__,
        description="Subscribe (double opt-in), confirm, one-click unsubscribe (RFC 8058) "
        "and the public archive of the weekly AI tool verdicts digest.",
    )
    app.state.settings = settings
    if engine is None:
        engine = make_engine(settings.database_url)
        migrate(engine)
    app.state.engine = engine
    app.state.transport_factory = transport_factory
    app.state.subscribe_limiter = RateLimiter(
        settings.subscribe_rate_limit, settings.subscribe_rate_window
    )
    app.add_middleware(SecurityHeaders, hsts=settings.base_url.startswith("https://"))

    @app.exception_handler(StoreError)
    async def store_unavailable(request: Request, exc: StoreError) -> PlainTextResponse:
        logger.error("store error on %s: %s", request.url.path, exc)
        return PlainTextResponse("the service is unavailable; try again shortly", 503)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    include_routers(app)
    return app
