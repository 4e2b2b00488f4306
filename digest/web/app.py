"""Application factory for ``digest serve``."""

from __future__ import annotations

import logging

from fastapi import FastAPI

from digest import __version__
from digest.config import Settings, get_settings
from digest.jobs import open_store

logger = logging.getLogger(__name__)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    settings.signing_key()  # refuse to start with a missing or placeholder secret
    app = FastAPI(title="Weekly verdict digest", version=__version__)
    app.state.settings = settings
    app.state.engine = open_store(settings)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
