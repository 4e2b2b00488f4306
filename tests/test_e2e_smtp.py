"""End to end over real SMTP: a local aiosmtpd server receives every message of a send.

The transport is chosen by configuration only (``DIGEST_TRANSPORT=smtp`` and the
server's host and port), exactly as an operator would set it up.
"""

from __future__ import annotations

from email.utils import parseaddr
from pathlib import Path

import pytest
from cli_support import DigestCLI
from servers import RecordingSMTPServer
from sqlalchemy.engine import Engine
from store_support import (
    SAMPLE_CSV,
    WEEK,
    dated,
    sample_emails,
    sample_items,
    seed_store,
    write_json,
)

from digest.core.settings import Settings
from digest.jobs.status import issue_status
from digest.jobs.weekly import weekly_job

pytestmark = pytest.mark.slow


@pytest.fixture
def smtp_settings(settings: Settings, smtp_server: RecordingSMTPServer) -> Settings:
    return settings.model_copy(
        update={
            "transport": "smtp",
            "smtp_host": smtp_server.host,
            "smtp_port": smtp_server.port,
            "smtp_security": "none",
            "smtp_timeout": 10.0,
        }
    )


def test_weekly_job_delivers_each_subscriber_exactly_once(
    smtp_settings: Settings, smtp_server: RecordingSMTPServer, engine: Engine, tmp_path: Path
) -> None:
    _count, emails = seed_store(engine, smtp_settings, tmp_path)

    first = weekly_job(smtp_settings, engine=engine, week=WEEK)

    assert first.report is not None and first.report.sent == len(emails)
    received = smtp_server.recipients()
    assert sorted(received) == sorted(emails)
    assert set(received.values()) == {1}
    for message in smtp_server.messages:
        assert message.mail_from == "digest@verdicts.test"
        parsed = message.parsed()
        assert parseaddr(str(parsed["To"]))[1] == message.rcpt_tos[0]
        assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert max(len(line) for line in message.data.split(b"\n")) <= 998

    second = weekly_job(smtp_settings, engine=engine, week=WEEK)
    assert second.outcome == "already-sent"
    assert len(smtp_server.messages) == len(emails)
    info = issue_status(engine, WEEK)
    assert info is not None and info["counts"]["sent"] == len(emails)


def test_cli_send_over_smtp_twice_sends_once(
    smtp_settings: Settings,
    smtp_server: RecordingSMTPServer,
    digest_cli: DigestCLI,
    tmp_path: Path,
) -> None:
    env = {
        "DIGEST_TRANSPORT": "smtp",
        "DIGEST_SMTP_HOST": smtp_server.host,
        "DIGEST_SMTP_PORT": str(smtp_server.port),
        "DIGEST_SMTP_SECURITY": "none",
    }
    digest_cli.ok("import", write_json(tmp_path / "s.json", dated(sample_items(), smtp_settings)))
    digest_cli.ok("subscribers", "import", SAMPLE_CSV)

    first = digest_cli.ok("send", "--week", WEEK, "--yes", **env)
    assert f"{len(sample_emails())} sent" in first.stdout
    assert sorted(smtp_server.recipients().elements()) == sorted(sample_emails())

    second = digest_cli.ok("send", "--week", WEEK, "--yes", **env)
    assert "nothing to send" in second.stdout
    assert len(smtp_server.messages) == len(sample_emails())

    digest_cli.ok("send", "--week", WEEK, "--to", "editor@example.org", **env)
    assert len(smtp_server.messages) == len(sample_emails()) + 1
    test_copy = smtp_server.messages[-1]
    assert test_copy.rcpt_tos == ("editor@example.org",)
    assert str(test_copy.parsed()["Subject"]).startswith("[TEST] ")
    status = digest_cli.json("status", "--week", WEEK, "--json", **env)
    assert status["counts"]["sent"] == len(sample_emails())
