"""Bounces by mail: ``digest inbound`` (the SMTP/LMTP listener) and ``digest mailbox``
(one pass over the bounce mailbox)."""

from __future__ import annotations

import logging
import signal
import threading
from typing import Annotated

import typer

from digest.cli.common import app, fail, say, settings, store_engine
from digest.exceptions import DigestError

logger = logging.getLogger(__name__)


@app.command()
def inbound(
    host: Annotated[
        str | None, typer.Option(help="Interface to listen on (default DIGEST_INBOUND_HOST).")
    ] = None,
    port: Annotated[
        int | None, typer.Option(help="TCP port (default DIGEST_INBOUND_PORT, 2525).")
    ] = None,
    lmtp: Annotated[bool, typer.Option("--lmtp", help="Speak LMTP instead of SMTP.")] = False,
) -> None:
    """Receive what comes back by mail — DSNs, ARF complaint reports, auto-replies and
    readers' replies — as an SMTP (or LMTP) server your MTA hands the bounce domain's
    mail to. Bounces and complaints land in the same events, suppression list and
    consent log as provider webhooks; replies are listed in the console (and forwarded
    to DIGEST_REPLY_FORWARD). Runs until interrupted.

    Example: DIGEST_VERP_DOMAIN=bounces.example.org digest inbound --port 2525
    """
    # imported on use, not at start-up: keeps the CLI fast to start
    from digest.mail.verp import verp_config
    from digest.ops.logging_setup import configure_logging
    from digest.webhooks.mail_listener import running
    from digest.webhooks.replies import smtp_forwarder

    s = settings()
    configure_logging(logging.INFO, s)
    config = verp_config(s)
    if config is None:
        fail("set DIGEST_VERP_DOMAIN or DIGEST_BOUNCE_ADDRESS: they name the addresses to take")
    engine = store_engine(s)
    host = host or s.inbound_host
    port = port or s.inbound_port
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    try:
        with running(engine, s, host=host, port=port, lmtp=lmtp, forward=smtp_forwarder(s)) as c:
            say(
                f"digest inbound: {'LMTP' if lmtp else 'SMTP'} on {host}:{port} for "
                f"{config.local}+…@{config.domain}; Ctrl-C stops"
            )
            stop.wait()
            taken = len(c.handler.intakes)
    except OSError as exc:
        fail(f"cannot listen on {host}:{port}: {exc}")
    say(f"digest inbound: stopped after {taken} message(s)")


@app.command()
def mailbox() -> None:
    """Read the bounce mailbox once (DIGEST_BOUNCE_MAILBOX: IMAP over verified TLS, or a
    Maildir): every DSN, complaint and reply is recorded like `digest inbound` does, then
    moved to DIGEST_BOUNCE_MAILBOX_DONE. scheduler.py runs this on a schedule.

    Example: DIGEST_BOUNCE_MAILBOX=imaps://bounces@mail.example.org/INBOX digest mailbox
    """
    # imported on use, not at start-up: keeps the CLI fast to start
    from digest.webhooks.mailbox import poll_once
    from digest.webhooks.replies import smtp_forwarder

    s = settings()
    engine = store_engine(s)
    try:
        report = poll_once(engine, s, smtp_forwarder(s))
    except DigestError as exc:
        fail(str(exc))
    say(report.summary())
    if report.left:
        raise typer.Exit(1)
