"""``digest inbound``: the SMTP (or LMTP) server the MTA hands the bounce domain's mail to.

An aiosmtpd server. It is not a relay: RCPT TO is answered per recipient and only
our own addresses are taken — VERP addresses whose tag names a delivery in the store,
the bounce address and the Reply-To address; any other address of our domains gets
``550 5.1.1``, any other domain ``550 5.7.1``. A message larger than
``DIGEST_INBOUND_MAX_BYTES`` is refused with ``552`` (SIZE is announced in EHLO).
Each accepted message goes through :func:`digest.webhooks.mail_events.take_in`; when
the store cannot be written the answer is ``451`` and the MTA delivers it again
later, so nothing is lost. With ``--lmtp`` the server speaks LMTP (RFC 2033): one
answer per recipient after the message.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from email.utils import parseaddr
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.lmtp import LMTP
from aiosmtpd.smtp import SMTP
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from digest.core.settings import Settings
from digest.mail.verp import parse, verp_config
from digest.webhooks.mail_events import (
    Forwarder,
    Intake,
    allowed_recipient,
    take_in,
    verified_delivery,
)

logger = logging.getLogger(__name__)


def our_domains(settings: Settings) -> set[str]:
    config = verp_config(settings)
    found = {config.domain} if config else set()
    for value in (settings.bounce_address, settings.reply_to):
        if value:
            found.add(parseaddr(value)[1].rpartition("@")[2].lower())
    return found


class InboundHandler:
    """aiosmtpd hooks: the allow-list at RCPT, the intake after DATA."""

    def __init__(self, engine: Engine, settings: Settings, forward: Forwarder | None) -> None:
        self.engine = engine
        self.settings = settings
        self.forward = forward
        self.config = verp_config(settings)
        self.domains = our_domains(settings)
        self.lmtp = False
        #: what each accepted message became (tests and the CLI's count read it)
        self.intakes: list[Intake] = []

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        domain = address.rpartition("@")[2].lower()
        if domain not in self.domains:
            return "550 5.7.1 relaying denied: this server only takes its own bounce mail"
        if not allowed_recipient(self.settings, self.config, address):
            return f"550 5.1.1 <{address[:100]}>: no such mailbox here"
        if self.config is not None and parse(address, self.config) is not None:
            try:
                known = await asyncio.to_thread(self._known_verp, address)
            except SQLAlchemyError as exc:
                logger.error("cannot check %s: %s", address[:120], exc)
                return "451 4.3.0 store unavailable, try again later"
            if not known:
                return f"550 5.1.1 <{address[:100]}>: this bounce address names no delivery"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    def _known_verp(self, address: str) -> bool:
        with self.engine.connect() as conn:
            return verified_delivery(conn, self.settings, address) is not None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = envelope.original_content or envelope.content
        data = raw if isinstance(raw, bytes) else str(raw).encode("utf-8", "surrogateescape")
        rcpts = tuple(str(r) for r in envelope.rcpt_tos)
        try:
            intake = await asyncio.to_thread(
                take_in,
                self.engine,
                self.settings,
                data,
                envelope=rcpts,
                source="inbound",
                forward=self.forward,
            )
        except SQLAlchemyError as exc:
            logger.error("cannot record inbound mail: %s", exc)
            answer = "451 4.3.0 store unavailable, try again later"
        else:
            self.intakes.append(intake)
            answer = "250 2.0.0 OK: " + intake.reading.kind.value
        # LMTP answers once per recipient; every recipient shares this message's fate.
        return "\r\n".join([answer] * len(rcpts)) if self.lmtp else answer


class InboundController(Controller):
    """aiosmtpd's threaded controller, speaking SMTP or LMTP."""

    def __init__(self, handler: InboundHandler, *, host: str, port: int, lmtp: bool) -> None:
        handler.lmtp = lmtp
        self.lmtp = lmtp
        super().__init__(
            handler,
            hostname=host,
            port=port,
            server_hostname="digest-inbound",
            data_size_limit=handler.settings.inbound_max_bytes,
            # The listener is local to the MTA; mail to it is never an AUTH client's.
            auth_require_tls=False,
        )

    def factory(self) -> SMTP:
        if not self.lmtp:
            return super().factory()
        return LMTP(self.handler, **self.SMTP_kwargs)


@contextmanager
def running(
    engine: Engine,
    settings: Settings,
    *,
    host: str,
    port: int,
    lmtp: bool = False,
    forward: Forwarder | None = None,
) -> Iterator[InboundController]:
    """The listener, started; stopped when the block ends."""
    controller = InboundController(
        InboundHandler(engine, settings, forward), host=host, port=port, lmtp=lmtp
    )
    controller.start()
    try:
        yield controller
    finally:
        controller.stop()
