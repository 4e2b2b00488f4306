"""End to end against a real MTA: the digest sends through a private Postfix (Debian's,
its own configuration, loopback ports) with VERP on; Postfix relays to a destination
server that refuses two mailboxes with ``550 5.1.1`` and defers one with ``452 4.2.2``;
Postfix itself writes the DSNs to the VERP addresses and hands them to ``digest
inbound`` (a subprocess, SMTP or LMTP). The refused readers end ``bounced``; the
deferred one gets a "delayed" warning and stays active; nobody else changes.

Skips, with the reason, where Postfix is not installed or the test is not root.
"""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from cli_support import settings_env
from inbound_support import WEEK, events, verp_settings
from postfix_rig import running_postfix, transport_entry, unavailable
from provider_server import seed_store
from servers import DIGEST, free_port, serving, wait_for
from sqlalchemy.engine import Engine
from webhook_helpers import status_of

from digest.core.settings import Settings
from digest.jobs.weekly import weekly_job

needs_postfix = pytest.mark.skipif(unavailable() is not None, reason=str(unavailable()))
DOCS = Path(__file__).resolve().parent.parent / "docs" / "delivery.md"

ACCEPTED = ["ok1@example.com", "ok2@example.com", "ok3@example.com"]
GONE = ["gone1@example.com", "gone2@example.com"]
FULL = "full@example.com"


class Destination:
    """The receiving side: refuses GONE for good, defers FULL, takes everyone else."""

    def __init__(self) -> None:
        self.delivered: list[str] = []
        self.deferrals = 0

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: list[str]
    ) -> str:
        if address in GONE:
            return f"550 5.1.1 <{address}>: no such mailbox here"
        if address == FULL:
            self.deferrals += 1
            return f"452 4.2.2 <{address}>: mailbox over quota, try later"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.delivered.extend(envelope.rcpt_tos)
        return "250 2.0.0 OK"


def _listening(port: int) -> bool:
    with socket.socket() as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@contextmanager
def digest_inbound(settings: Settings, port: int, cwd: Path, lmtp: bool) -> Iterator[Path]:
    """``digest inbound`` as the operator runs it; yields its log file."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    env.update(settings_env(settings), DIGEST_VERP_DOMAIN=str(settings.verp_domain))
    log_path = cwd / "inbound.log"
    args = [DIGEST, "inbound", "--host", "127.0.0.1", "--port", str(port)]
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [*args, *(["--lmtp"] if lmtp else [])], env=env, stdout=log, stderr=subprocess.STDOUT
        )
        try:

            def up() -> bool:
                if proc.poll() is not None:
                    raise AssertionError(log_path.read_text())
                return _listening(port)

            wait_for(up, "digest inbound to listen")
            yield log_path
        finally:
            proc.terminate()
            proc.wait(timeout=15)


def test_the_documented_postfix_configuration_is_the_one_tested() -> None:
    section = DOCS.read_text().split("## Bounces by mail")[1].split("\n## ")[0]
    assert "relay_domains = bounces.example.org" in section
    assert "transport_maps = hash:/etc/postfix/transport" in section
    assert transport_entry("bounces.example.org", 2525, lmtp=False) in section
    assert "# " + transport_entry("bounces.example.org", 2525, lmtp=True) in section


@pytest.mark.slow
@needs_postfix
@pytest.mark.parametrize("lmtp", [False, True], ids=["smtp", "lmtp"])
def test_postfix_dsns_reach_digest_inbound_and_bounce_the_refused_readers(
    lmtp: bool, settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    readers = [*ACCEPTED, *GONE, FULL]
    seed_store(engine, tmp_path, readers)
    inbound_port, postfix_port = free_port(), free_port()
    with (
        serving(dest := Destination()) as dest_port,
        running_postfix(
            port=postfix_port,
            relay_port=dest_port,
            bounce_domain="bounces.verdicts.test",
            inbound_port=inbound_port,
            lmtp=lmtp,
        ) as postfix,
    ):
        s = verp_settings(settings, transport="smtp", smtp_host="127.0.0.1", smtp_port=postfix_port)
        with digest_inbound(s, inbound_port, tmp_path, lmtp) as inbound_log:
            wait_for(lambda: _listening(postfix_port), "postfix to listen")
            result = weekly_job(s, engine=engine, week=WEEK)
            # Postfix took every message: what happens next is its business.
            assert result.report is not None and result.report.sent == len(readers)

            def settled() -> bool:
                kinds = {(kind, email) for _src, _prov, kind, email in events(engine)}
                return {("bounced_hard", e) for e in GONE} | {("deferred", FULL)} <= kinds

            try:
                wait_for(settled, "Postfix's DSNs to be recorded", limit=90)
            except AssertionError:
                raise AssertionError(
                    f"{inbound_log.read_text()}\n{postfix.log()}\n{postfix.queue()}"
                ) from None
        log = postfix.log()

    assert sorted(dest.delivered) == sorted(ACCEPTED)
    assert dest.deferrals >= 1
    # The DSNs were Postfix's own, sent from the null sender to each VERP address.
    assert "from=<>" in log and "bounces.verdicts.test" in log
    for email in GONE:
        assert status_of(engine, email) == "bounced"
    assert status_of(engine, FULL) == "active"
    for email in ACCEPTED:
        assert status_of(engine, email) == "active"
    recorded = events(engine)
    assert {(src, kind) for src, _p, kind, _e in recorded} <= {
        ("inbound", "bounced_hard"),
        ("inbound", "deferred"),
    }
    assert not any(email in ACCEPTED for *_, email in recorded)
