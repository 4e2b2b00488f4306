"""Shared pieces of the bounces-by-mail tests: a real send over SMTP with VERP on (to a
recording aiosmtpd server), the values each reader's copy carried, and store lookups."""

from __future__ import annotations

import smtplib
from email.utils import parseaddr
from pathlib import Path

from bounce_corpus import Filling
from provider_server import seed_store
from servers import recording_smtp
from sqlalchemy import func, select
from sqlalchemy.engine import Engine

from digest.core.settings import Settings
from digest.jobs.weekly import weekly_job
from digest.store.models import InboundMail, MailEventRecord

VERP_DOMAIN = "bounces.verdicts.test"
WEEK = "2026-W47"
E = MailEventRecord.__table__  # type: ignore[attr-defined]
M = InboundMail.__table__  # type: ignore[attr-defined]


def verp_settings(settings: Settings, **extra: object) -> Settings:
    return settings.model_copy(
        update={
            "verp_domain": VERP_DOMAIN,
            "reply_to": "replies@verdicts.test",
            "soft_bounce_limit": 3,
            **extra,
        }
    )


def send_with_verp(
    settings: Settings, engine: Engine, tmp_path: Path, emails: list[str]
) -> dict[str, Filling]:
    """Send the week's issue to ``emails`` over real SMTP; what each copy carried."""
    seed_store(engine, tmp_path, emails)
    with recording_smtp() as server:
        smtp = settings.model_copy(
            update={"transport": "smtp", "smtp_host": server.host, "smtp_port": server.port}
        )
        result = weekly_job(smtp, engine=engine, week=WEEK)
        assert result.report is not None and result.report.sent == len(emails)
        fillings = {}
        for message in server.messages:
            parsed = message.parsed()
            unsubscribe = str(parsed["List-Unsubscribe"]).split(">")[0].lstrip("<")
            fillings[message.rcpt_tos[0]] = Filling(
                verp=message.mail_from,
                rcpt=message.rcpt_tos[0],
                message_id=str(parsed["Message-ID"]),
                unsubscribe=unsubscribe,
                sender=parseaddr(str(parsed["From"]))[1],
            )
    return fillings


def events(engine: Engine) -> list[tuple[str, str, str, str]]:
    """(source, provider, kind, email) of every recorded mail event."""
    with engine.connect() as conn:
        rows = conn.execute(select(E.c.source, E.c.provider, E.c.kind, E.c.email).order_by(E.c.id))
        return [tuple(r) for r in rows]  # type: ignore[misc]


def kept(engine: Engine) -> list[tuple[str, str, str]]:
    """(kind, source, sender) of every message kept for people."""
    with engine.connect() as conn:
        rows = conn.execute(select(M.c.kind, M.c.source, M.c.sender).order_by(M.c.id))
        return [tuple(r) for r in rows]  # type: ignore[misc]


def kept_count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(M)).scalar_one())


def deliver(
    host: str, port: int, raw: bytes, rcpts: list[str], *, lmtp: bool = False, sender: str = ""
) -> dict[str, tuple[int, bytes]]:
    """Hand ``raw`` to a listener as an MTA would; the refused recipients (as smtplib
    reports them). Raises what smtplib raises for a refused message."""
    client: smtplib.SMTP = smtplib.LMTP(host, port) if lmtp else smtplib.SMTP(host, port)
    try:
        return client.sendmail(sender, rcpts, raw)
    finally:
        client.quit()
