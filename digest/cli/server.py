"""Commands that run the whole system: serve (the web app) and demo."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Annotated

import typer

from digest.exceptions import DigestError

if TYPE_CHECKING:
    from digest.core.settings import Settings

from digest.cli.common import (
    app,
    fail,
    out,
    settings,
)

logger = logging.getLogger(__name__)


def served_settings(s: Settings, host: str, port: int) -> Settings:
    """Without DIGEST_BASE_URL, the links in the mails this server sends (confirmations,
    test copies, console sends) point at the host and port it serves, not at a default
    port it may not be listening on."""
    if "base_url" in s.model_fields_set:
        return s
    shown = "localhost" if host in ("", "0.0.0.0", "::") else host  # noqa: S104
    if ":" in shown:
        shown = f"[{shown}]"
    return s.model_copy(update={"base_url": f"http://{shown}:{port}"})


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
) -> None:
    """Run the web app (subscribe, confirm, unsubscribe, archive) with uvicorn.

    Example: digest serve --host 0.0.0.0 --port 8000
    """
    # imported on use, not at start-up: keeps the CLI fast to start
    import uvicorn

    from digest.http.accesslog import RedactTokens, log_config
    from digest.ops.logging_setup import configure_logging
    from digest.web.app import create_app

    s = served_settings(settings(), host, port)
    configure_logging(logging.INFO, s)
    logging.getLogger("uvicorn.access").addFilter(RedactTokens())
    try:
        application = create_app(s)
    except DigestError as exc:
        fail(str(exc))
    # X-Forwarded-For is trusted only from DIGEST_FORWARDED_ALLOW_IPS (the rate limit
    # and the consent log use the client address).
    uvicorn.run(
        application,
        host=host,
        port=port,
        log_level="info",
        proxy_headers=True,
        forwarded_allow_ips=s.forwarded_allow_ips,
        # Confirm/unsubscribe tokens never reach the access log. JSON logs: uvicorn's
        # own loggers go through our handler instead of its text formatter.
        log_config=None if s.log_format == "json" else log_config(),
    )


@app.command()
def demo() -> None:
    """Run the weekly job end to end on bundled sample data (SQLite + Maildir).

    Example: DIGEST_OUTBOX=/tmp/outbox digest demo
    """
    # imported on use, not at start-up: keeps the CLI fast to start
    from digest.jobs.demo import run_demo

    try:
        summary = run_demo(settings())
    except DigestError as exc:
        fail(str(exc))
    out.print(summary, highlight=False)
