"""What a subscriber receives: MIME structure and headers (DESIGN §5), read back from the
Maildir the default transport writes, reopened with the stdlib ``mailbox.Maildir``."""

from __future__ import annotations

import mailbox
import re
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import parseaddr, parsedate_to_datetime
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from store_support import SAMPLE_CSV, WEEK, seed_store

from digest.core.settings import Settings
from digest.jobs.weekly import weekly_job
from subscribers.service import import_csv


@pytest.fixture
def maildir_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"transport": "maildir"})


@pytest.fixture
def delivered(
    maildir_settings: Settings, engine: Engine, tmp_path: Path
) -> list[tuple[bytes, EmailMessage]]:
    """Run the weekly job once; every message in the Maildir as (raw, parsed)."""
    _count, emails = seed_store(engine, maildir_settings, tmp_path)
    result = weekly_job(maildir_settings, engine=engine, week=WEEK)
    assert result.report is not None and result.report.sent == len(emails)
    box = mailbox.Maildir(maildir_settings.outbox, create=False)
    out = []
    for key in box.iterkeys():
        raw = box.get_bytes(key)
        parsed = message_from_bytes(raw, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        out.append((raw, parsed))
    box.close()
    assert len(out) == len(emails)
    return out


def test_one_message_per_subscriber_in_maildir(delivered: list[tuple[bytes, EmailMessage]]) -> None:
    to = sorted(parseaddr(str(m["To"]))[1] for _raw, m in delivered)
    expected = sorted(
        line.split(",", 1)[0].lower()
        for line in SAMPLE_CSV.read_text(encoding="utf-8").splitlines()[1:]
        if line.strip()
    )
    assert to == expected


def test_mime_structure_text_then_html(delivered: list[tuple[bytes, EmailMessage]]) -> None:
    for _raw, msg in delivered:
        assert msg.get_content_type() == "multipart/alternative"
        parts = list(msg.iter_parts())
        assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
        for part in parts:
            assert part.get_content_charset() == "utf-8"
            assert part["Content-Transfer-Encoding"] in ("quoted-printable", "base64")


def test_every_line_fits_smtp_limit(delivered: list[tuple[bytes, EmailMessage]]) -> None:
    for raw, _msg in delivered:
        lines = raw.split(b"\n")
        assert max(len(line.rstrip(b"\r")) for line in lines) <= 998
        raw.decode("ascii")  # 7-bit clean: non-ASCII travels encoded


def test_required_headers(
    delivered: list[tuple[bytes, EmailMessage]], maildir_settings: Settings
) -> None:
    ids = set()
    for _raw, msg in delivered:
        for name in (
            "From",
            "To",
            "Subject",
            "Date",
            "Message-ID",
            "List-Id",
            "List-Unsubscribe",
            "List-Unsubscribe-Post",
        ):
            assert msg[name], name
        ids.add(str(msg["Message-ID"]))
        assert re.fullmatch(r"<[^<>@\s]+@[^<>@\s]+>", str(msg["Message-ID"]))
        assert parsedate_to_datetime(str(msg["Date"])).tzinfo is not None
        assert re.search(r"<[^<>\s]+>", str(msg["List-Id"]))
        assert str(msg["List-Unsubscribe-Post"]) == "List-Unsubscribe=One-Click"
        unsubscribe = str(msg["List-Unsubscribe"])
        urls = re.findall(r"<([^<>]+)>", unsubscribe)
        assert len(urls) == 2
        assert urls[0].startswith(f"{maildir_settings.base_url}/unsubscribe/")
        assert re.match(r"https?://", urls[0])
        assert urls[1].startswith("mailto:")
        # The same link is visible in both bodies.
        text = msg.get_body(preferencelist=("plain",))
        html = msg.get_body(preferencelist=("html",))
        assert text is not None and html is not None
        assert urls[0] in text.get_content()
        assert urls[0] in html.get_content()
        assert "[[%" not in text.get_content() and "[[%" not in html.get_content()
    assert len(ids) == len(delivered)  # unique per recipient


def test_unsubscribe_tokens_are_distinct_and_opaque(
    delivered: list[tuple[bytes, EmailMessage]],
) -> None:
    tokens = [
        str(m["List-Unsubscribe"]).split("/unsubscribe/", 1)[1].split(">", 1)[0]
        for _r, m in delivered
    ]
    assert len(set(tokens)) == len(tokens)
    for token in tokens:
        assert len(token) >= 20 and not token.isdigit()


def test_subject_and_names_survive_encoding(delivered: list[tuple[bytes, EmailMessage]]) -> None:
    by_address = {parseaddr(str(m["To"]))[1]: m for _raw, m in delivered}
    zoe = by_address["zoe@example.com"]
    assert zoe["To"].addresses[0].display_name == "Zoë Ångström"
    body = zoe.get_body(preferencelist=("plain",))
    # Greeted by first name; without a name, no greeting at all (never "Hi there").
    assert body is not None and "\r\nHi Zoë,\r\n" in body.get_content()
    nameless = by_address["linus@example.net"]
    body = nameless.get_body(preferencelist=("plain",))
    assert body is not None and "Hi " not in body.get_content()
    html = nameless.get_body(preferencelist=("html",))
    assert html is not None and "Hi " not in html.get_content()
    subjects = {str(m["Subject"]) for _raw, m in delivered}
    assert len(subjects) == 1
    assert re.fullmatch(r"Ship .+ over .+ — plus 6 more verdicts", subjects.pop())


def test_names_cannot_inject_headers_or_html(
    maildir_settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    seed_store(engine, maildir_settings, tmp_path)
    evil = tmp_path / "evil.csv"
    evil.write_text(
        'email,name\nmallory@example.com,"<b>Mallory</b> Bcc: victim@example.com"\n',
        encoding="utf-8",
    )
    import_csv(engine, evil)
    weekly_job(maildir_settings, engine=engine, week=WEEK)
    box = mailbox.Maildir(maildir_settings.outbox, create=False)
    raws = [box.get_bytes(k) for k in box.iterkeys()]
    [raw] = [r for r in raws if b"mallory@example.com" in r]
    msg = message_from_bytes(raw, policy=policy.default)
    assert msg["Bcc"] is None
    html = msg.get_body(preferencelist=("html",))
    assert html is not None
    assert "<b>Mallory</b>" not in html.get_content()
    assert "&lt;b&gt;Mallory&lt;/b&gt;" in html.get_content()
