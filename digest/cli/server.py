"""Commands that run the whole system: serve (the web app) and demo."""

from __future__ import annotations

import logging
import os
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
    workers: Annotated[
        int,
        typer.Option(
            min=1,
            max=64,
            help="Server processes (uvicorn workers). Limits, click counts and caches "
            "stay correct across them; /metrics adds up all of them.",
        ),
    ] = 1,
) -> None:
    """Run the web app (subscribe, confirm, unsubscribe, archive) with uvicorn.

    Example: digest serve --host 0.0.0.0 --port 8000 --workers 2
    """
    # imported on use, not at start-up: keeps the CLI fast to start
    import uvicorn

    from digest.http.accesslog import RedactTokens, log_config
    from digest.ops.logging_setup import configure_logging
    from digest.store.engine import make_engine, migrate

    s = served_settings(settings(), host, port)
    configure_logging(logging.INFO, s)
    logging.getLogger("uvicorn.access").addFilter(RedactTokens())
    # X-Forwarded-For is trusted only from DIGEST_FORWARDED_ALLOW_IPS (the rate limit
    # and the consent log use the client address). Confirm/unsubscribe tokens never
    # reach the access log. JSON logs: uvicorn's own loggers go through our handler
    # instead of its text formatter.
    options: dict[str, object] = {
        "host": host,
        "port": port,
        "log_level": "info",
        "proxy_headers": True,
        "forwarded_allow_ips": s.forwarded_allow_ips,
        "log_config": None if s.log_format == "json" else log_config(),
    }
    if workers == 1:
        from digest.web.app import create_app

        try:
            application = create_app(s)
        except DigestError as exc:
            fail(str(exc))
        uvicorn.run(application, **options)  # type: ignore[arg-type]
        return
    from digest.ops.metrics import multiprocess_dir
    from digest.web.workers import serve_workers

    try:
        s.signing_key()
        s.ingest_token_map()
        engine = make_engine(s.database_url, s.db_busy_timeout)
        migrate(engine)  # once, before the workers start
        engine.dispose()
    except DigestError as exc:
        fail(str(exc))
    # Each worker builds its own app (digest.web.app.serve_app) from the same
    # environment; /metrics adds up every worker's counters from this folder.
    # ... so the base URL that follows the served port must be in that environment.
    os.environ["DIGEST_BASE_URL"] = s.base_url
    del options["host"], options["port"]
    with multiprocess_dir():
        try:
            status = serve_workers(host, port, workers, options)
        except OSError as exc:
            fail(f"cannot listen on {host}:{port}: {exc.strerror or exc}")
    if status:
        raise typer.Exit(status)


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
