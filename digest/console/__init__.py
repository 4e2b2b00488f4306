"""The console for people under ``/console``: editors review, edit, test and approve
issues; operators also send, pause, resume and cancel them and manage subscribers.

Modules by role: ``auth`` (accounts in the browser: login, sessions, CSRF, roles),
``pages`` (templates, the console's CSP, problem pages), ``runner`` (sends and CSV
imports in a background thread), ``issues`` and ``sending`` (an issue's pages and its
send), ``copies`` (every copy a send produces, side by side; one copy's own words),
``scheduling`` (when a draft goes out), ``comparisons`` (the list and the import page
with its preview), ``deliveries`` (outcomes and CSV export), ``subscribers``,
``inbound`` (replies that came back by mail), ``charts`` (SVG) and ``api`` (the JSON
status for scripts). Every page works without JavaScript (the note's live preview
needs it; without it the saved note shows).
"""

from __future__ import annotations

from fastapi import FastAPI

from digest.console import (
    api,
    auth,
    charts,
    comparisons,
    copies,
    deliveries,
    inbound,
    issues,
    scheduling,
    sending,
    subscribers,
)
from digest.console.pages import install_handlers, static_router


def install(app: FastAPI) -> None:
    """Add the console's routers and its problem-page handler to ``app``."""
    install_handlers(app)
    for module in (
        auth,
        issues,
        copies,
        scheduling,
        comparisons,
        sending,
        deliveries,
        subscribers,
        inbound,
        charts,
        api,
    ):
        app.include_router(module.router)
    app.include_router(static_router)
