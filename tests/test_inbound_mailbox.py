"""The bounce mailbox poller: over IMAP against a real Dovecot (TLS verified against
the test's own CA), and on a local Maildir; through ``digest mailbox`` and the
scheduler's job. What it read is recorded with source ``mailbox`` and moved to the
done folder, never deleted; a second poll finds nothing."""

from __future__ import annotations

import mailbox
from pathlib import Path

import pytest
from bounce_corpus import sample
from cli_support import DigestCLI, settings_env
from dovecot_rig import PASSWORD, USER, running_dovecot, unavailable
from inbound_support import events, kept, send_with_verp, verp_settings
from pydantic import SecretStr
from servers import free_port
from sqlalchemy.engine import Engine
from webhook_helpers import status_of

import scheduler
from digest.core.settings import Settings
from digest.exceptions import ConfigError
from digest.webhooks.mailbox import ImapBox, parse_mailbox, poll_once

READERS = ["gone@example.com", "annoyed@example.com", "chatty@example.com", "calm@example.com"]
SAMPLES = {
    "gone@example.com": "gmail-hard",
    "annoyed@example.com": "arf-yahoo",
    "chatty@example.com": "human-reply",
}


def _fill(settings: Settings, engine: Engine, tmp_path: Path, box: Path) -> Settings:
    s = verp_settings(settings)
    sent = send_with_verp(s, engine, tmp_path, READERS)
    maildir = mailbox.Maildir(box, create=True)
    for email, name in SAMPLES.items():
        maildir.add(sample(name, sent[email]))
    return s


def _check_outcome(engine: Engine) -> None:
    assert status_of(engine, "gone@example.com") == "bounced"
    assert status_of(engine, "annoyed@example.com") == "complained"
    assert status_of(engine, "chatty@example.com") == "active"
    assert status_of(engine, "calm@example.com") == "active"
    assert sorted(events(engine)) == [
        ("mailbox", "arf", "complained", "annoyed@example.com"),
        ("mailbox", "dsn", "bounced_hard", "gone@example.com"),
    ]
    assert kept(engine) == [("reply", "mailbox", "chatty@example.com")]


def test_the_mailbox_setting_names_an_imap_account_or_a_maildir() -> None:
    assert parse_mailbox("imaps://bounces@mail.example.org/Bounces") == ImapBox(
        True, "mail.example.org", 993, "bounces", "Bounces"
    )
    assert parse_mailbox("imap://b%40x@mail.example.org:1143") == ImapBox(
        False, "mail.example.org", 1143, "b@x", "INBOX"
    )
    assert parse_mailbox("maildir:/var/mail/b") == Path("/var/mail/b")
    with pytest.raises(ConfigError, match="needs user and host"):
        parse_mailbox("imaps://mail.example.org/")


def test_digest_mailbox_reads_a_maildir_and_moves_what_it_read(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    box = tmp_path / "bounce-box"
    s = _fill(settings, engine, tmp_path, box)
    cli = DigestCLI(
        env={
            **settings_env(s),
            "DIGEST_VERP_DOMAIN": str(s.verp_domain),
            "DIGEST_BOUNCE_MAILBOX": f"maildir:{box}",
        }
    )
    first = cli.ok("mailbox")
    assert "3 read (1 bounce, 1 complaint, 1 reply), 3 moved" in first.stdout
    _check_outcome(engine)
    maildir = mailbox.Maildir(box, create=False)
    assert maildir.keys() == [] and len(maildir.get_folder("Processed")) == 3
    again = cli.ok("mailbox")
    assert "0 read (nothing new), 0 moved" in again.stdout
    _check_outcome(engine)


def test_a_folder_that_is_not_a_maildir_is_refused(tmp_path: Path, settings: Settings) -> None:
    (tmp_path / "plain").mkdir()
    cli = DigestCLI(
        env={**settings_env(settings), "DIGEST_BOUNCE_MAILBOX": str(tmp_path / "plain")}
    )
    result = cli("mailbox")
    assert result.exit_code == 1
    assert "is not a Maildir" in result.output


def test_the_scheduler_polls_the_mailbox_when_one_is_set(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    box = tmp_path / "bounce-box"
    s = _fill(settings, engine, tmp_path, box).model_copy(
        update={"bounce_mailbox": str(box), "bounce_mailbox_interval": 120}
    )
    sched = scheduler.build_scheduler(s)
    job = sched.get_job(scheduler.MAILBOX_ID)
    assert job is not None and job.trigger.interval.total_seconds() == 120
    assert scheduler.build_scheduler(settings).get_job(scheduler.MAILBOX_ID) is None
    job.func(*job.args)  # what the scheduler calls
    _check_outcome(engine)


@pytest.mark.slow
@pytest.mark.skipif(unavailable() is not None, reason=str(unavailable()))
def test_imap_over_verified_tls_against_dovecot(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    port = free_port()
    with running_dovecot(port) as dovecot:
        s = _fill(settings, engine, tmp_path, dovecot.maildir)
        dovecot.fix_owner()
        imap = s.model_copy(
            update={
                "bounce_mailbox": f"imaps://{USER}@127.0.0.1:{port}/INBOX",
                "bounce_mailbox_password": SecretStr(PASSWORD),
            }
        )
        # Without the test's CA the certificate does not verify: nothing is read.
        with pytest.raises(ConfigError, match="failed verification"):
            poll_once(engine, imap)
        assert events(engine) == []

        trusted = imap.model_copy(update={"bounce_mailbox_ca_file": dovecot.ca_file})
        report = poll_once(engine, trusted)
        assert (report.read, report.moved, report.left) == (3, 3, 0), dovecot.log()
        _check_outcome(engine)
        server_side = mailbox.Maildir(dovecot.maildir, create=False)
        assert server_side.keys() == []
        assert len(server_side.get_folder("Processed")) == 3

        again = poll_once(engine, trusted)
        assert (again.read, again.moved) == (0, 0)
        _check_outcome(engine)
