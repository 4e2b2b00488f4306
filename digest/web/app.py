"""Application factory for ``digest serve``.

Public routes (docs/subscribers.md): ``/`` and ``/subscribe`` (double opt-in),
``/confirm/{token}``, ``/unsubscribe`` and ``/unsubscribe/{token}`` (RFC 8058), the
archive under ``/archive`` with its Atom feed, the OpenAPI spec at ``/openapi.json``
(readable at ``/docs``), and the site's error pages and favicon (digest/web/site.py).
Operations (digest/ops/): ``/healthz`` (liveness), ``/readyz`` (database and schema),
``/metrics`` (Prometheus).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy.engine import Engine

from digest import __version__, console
from digest.accounts.passwords import dummy_hash
from digest.console.gate import SessionFirst
from digest.core.settings import Settings, get_settings
from digest.http.accesslog import RedactTokens
from digest.http.bodies import BodyLimits, body_rules
from digest.http.middleware import HeadAsGet, SecurityHeaders
from digest.http.throttle import SharedThrottle
from digest.issue.click_buffer import ClickBuffer
from digest.notices.subscribers import TransportFactory
from digest.ops import health, metrics
from digest.ops.logging_setup import configure_logging
from digest.store.engine import make_engine, migrate
from digest.web import archive, ingest, leaving, public, readers, site, webhooks
from digest.web.archive_cache import ArchiveCache
from digest.web.fast import FastPaths
from subscribers.oneclick import UnsubscribeWriter
from subscribers.optin import CONFIRM_RESEND_SECONDS

logger = logging.getLogger(__name__)


def include_routers(app: FastAPI) -> None:
    """Every router the app serves. A feature with its own router adds one line here."""
    app.include_router(public.router)
    app.include_router(leaving.router)
    app.include_router(archive.router)
    app.include_router(readers.router)
    # Further routers (e.g. provider webhooks from digest/web/webhooks.py) go below.
    app.include_router(webhooks.router)
    ingest.install(app)
    console.install(app)
    app.include_router(health.router)
    app.include_router(metrics.router)


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    # Before the first request, so the first login for an unknown address takes no
    # longer than the ones after it.
    dummy_hash()
    yield
    # A clean stop writes the clicks still counted in memory and the unsubscribes queued.
    app.state.clicks.stop()
    app.state.unsubscribes.stop()


def create_app(
    settings: Settings | None = None,
    *,
    engine: Engine | None = None,
    transport_factory: TransportFactory | None = None,
) -> FastAPI:
    """The web app. Refuses to start without a real ``DIGEST_SECRET_KEY`` (outside the
    demo) or with an unusable ``DIGEST_SECRET_KEY_PREVIOUS``. ``engine`` and
    ``transport_factory`` let tests share a store and an in-memory transport; by
    default the store is opened (and migrated) from the settings and confirmations go
    through ``DIGEST_TRANSPORT``."""
    settings = settings or get_settings()
    # Refuse to start with a missing or placeholder secret, current or previous: a key
    # that cannot be used fails every link (unsubscribe, confirm, /r/) at request time.
    settings.verification_keys()
    settings.ingest_token_map()  # and with unusable ingest tokens (digest/web/ingest.py)
    app = FastAPI(
        title="Weekly verdict digest",
        version=__version__,
        description="Subscribe (double opt-in), confirm, one-click unsubscribe (RFC 8058) "
        "and the public archive of the weekly AI tool verdicts digest.",
        # Starlette's own trailing-slash redirect builds an absolute Location from the
        # Host header (GET /archive/ with Host: evil.example → http://evil.example/…);
        # site.install() redirects with a path-only Location instead.
        redirect_slashes=False,
        # /docs is our own server-rendered page (digest/web/site.py): FastAPI's loads
        # Swagger UI from a CDN, a third-party script on our origin.
        docs_url=None,
        redoc_url=None,
        lifespan=_lifespan,
    )
    app.state.settings = settings
    if engine is None:
        engine = make_engine(settings.database_url, settings.db_busy_timeout)
        migrate(engine)
    app.state.engine = engine
    app.state.metrics_registry = metrics.metrics_registry(engine)
    app.state.transport_factory = transport_factory
    app.state.clicks = ClickBuffer(engine, settings)
    app.state.archive_cache = ArchiveCache()
    app.state.unsubscribes = UnsubscribeWriter(engine, settings)
    # In the store: every server process (digest serve --workers N) shares each budget.
    app.state.subscribe_throttle = SharedThrottle(
        engine, "subscribe", settings.subscribe_rate_limit, settings.subscribe_rate_window
    )
    # A fresh unsubscribe link goes to one address at most once per cool-down.
    app.state.unsubscribe_link_throttle = SharedThrottle(
        engine, "unsubscribe-link", 1, CONFIRM_RESEND_SECONDS
    )
    # Outermost last: security headers on every answer, including the two below;
    # console sessions checked before a body is read; every body limited and timed.
    app.add_middleware(BodyLimits, rules=body_rules(settings))
    app.add_middleware(SessionFirst)
    # Cache hits of the routes a send floods, inside the security headers (web/fast.py).
    app.add_middleware(FastPaths)
    app.add_middleware(SecurityHeaders, hsts=settings.base_url.startswith("https://"))
    app.add_middleware(HeadAsGet)
    app.add_middleware(metrics.RequestCounter)
    site.install(app, settings)

    include_routers(app)
    return app


def serve_app() -> FastAPI:
    """The app of one ``digest serve --workers N`` worker process (uvicorn's factory):
    settings from the environment the command line started with, its own logging."""
    settings = get_settings()
    configure_logging(logging.INFO, settings)
    logging.getLogger("uvicorn.access").addFilter(RedactTokens())
    return create_app(settings)
