"""The ``digest`` command line: help with an example everywhere, and the send, preview,
status and subscriber commands as an operator uses them (Maildir transport, SQLite)."""

from __future__ import annotations

import mailbox
import re
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import parseaddr
from pathlib import Path
from typing import Any

import pytest
import typer
from cli_support import DigestCLI
from store_support import SAMPLE_CSV, WEEK, dated, sample_emails, sample_items, write_json

from digest.cli import app
from digest.core.settings import Settings

pytestmark = pytest.mark.clock  # issues of this week


def _walk(command: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """Every command and group below ``command`` (Typer's own click copy, so duck-typed)."""
    found = [(path, command)]
    subcommands = getattr(command, "commands", None)
    if subcommands:
        for name, sub in sorted(subcommands.items()):
            found.extend(_walk(sub, (*path, name)))
    return found


COMMANDS = _walk(typer.main.get_command(app))


def test_the_walk_finds_the_documented_commands() -> None:
    paths = {" ".join(p) for p, _c in COMMANDS}
    for name in (
        "init",
        "import",
        "comparisons list",
        "subscribers add",
        "subscribers import",
        "subscribers list",
        "preview",
        "send",
        "status",
        "serve",
        "demo",
    ):
        assert name in paths


@pytest.mark.parametrize(
    ("path", "command"), COMMANDS, ids=[" ".join(p) or "digest" for p, _ in COMMANDS]
)
def test_every_command_has_help_ending_with_an_example(
    digest_cli: DigestCLI, path: tuple[str, ...], command: Any
) -> None:
    raw = (command.help or "").strip()
    last_paragraph = raw.split("\n\n")[-1].strip()
    assert last_paragraph.startswith("Example: "), f"{' '.join(path)}: help lacks a final Example"
    example = last_paragraph.removeprefix("Example: ")
    assert re.search(r"\bdigest\b", example) or "scheduler.py" in example
    if path:
        assert "digest " + " ".join(path) in " ".join(example.split()), example
    result = digest_cli(*path, "--help")
    assert result.exit_code == 0
    assert "Example:" in result.output


@pytest.fixture
def seeded(tmp_path: Path, settings: Settings, digest_cli: DigestCLI) -> int:
    """Sample comparisons dated into WEEK and the sample subscribers, via the CLI."""
    digest_cli.ok("import", write_json(tmp_path / "s.json", dated(sample_items(), settings)))
    digest_cli.ok("subscribers", "import", SAMPLE_CSV)
    return len(sample_emails())


def _maildir(settings: Settings) -> list[EmailMessage]:
    if not settings.outbox.exists():
        return []
    box = mailbox.Maildir(settings.outbox, create=False)
    out = []
    for key in box.iterkeys():
        msg = message_from_bytes(box.get_bytes(key), policy=policy.default)
        assert isinstance(msg, EmailMessage)
        out.append(msg)
    return out


def test_send_needs_yes(digest_cli: DigestCLI, seeded: int) -> None:
    result = digest_cli("send", "--week", WEEK)
    assert result.exit_code == 2
    assert "--yes" in result.stderr


def test_send_dry_run_sends_and_records_nothing(
    digest_cli: DigestCLI, seeded: int, settings: Settings
) -> None:
    result = digest_cli.ok("send", "--week", WEEK, "--dry-run")
    assert f"would go to {seeded} subscribers" in result.stdout
    assert _maildir(settings) == []
    status = digest_cli.json("status", "--week", WEEK, "--json")
    assert status["state"] is None and status["counts"] == {}


def test_send_to_sends_one_test_copy_and_records_nothing(
    digest_cli: DigestCLI, seeded: int, settings: Settings
) -> None:
    digest_cli.ok("send", "--week", WEEK, "--to", "Editor@Example.org")
    [copy] = _maildir(settings)
    assert str(copy["Subject"]).startswith("[TEST] ")
    assert parseaddr(str(copy["To"]))[1] == "editor@example.org"
    status = digest_cli.json("status", "--week", WEEK, "--json")
    assert sum(status["counts"].values()) == 0
    assert status["state"] == "draft"

    # The real send afterwards still reaches everyone, and only them.
    digest_cli.ok("send", "--week", WEEK, "--yes")
    messages = _maildir(settings)
    assert len(messages) == 1 + seeded
    real = [m for m in messages if not str(m["Subject"]).startswith("[TEST]")]
    assert sorted(parseaddr(str(m["To"]))[1] for m in real) == sorted(sample_emails())


def test_send_to_rejects_a_bad_address(digest_cli: DigestCLI, seeded: int) -> None:
    result = digest_cli("send", "--week", WEEK, "--to", "not-an-address")
    assert result.exit_code != 0
    assert "not-an-address" in result.stderr


def test_send_twice_sends_once_and_status_json_counts(
    digest_cli: DigestCLI, seeded: int, settings: Settings
) -> None:
    first = digest_cli.ok("send", "--week", WEEK, "--yes")
    assert f"{seeded} sent" in first.stdout
    second = digest_cli.ok("send", "--week", WEEK, "--yes")
    assert "nothing to send" in second.stdout
    assert len(_maildir(settings)) == seeded

    status = digest_cli.json("status", "--week", WEEK, "--json")
    assert status["week"] == WEEK
    assert status["state"] == "sent"
    assert isinstance(status["counts"], dict)
    assert status["counts"]["sent"] == seeded
    assert all(isinstance(v, int) for v in status["counts"].values())
    assert status["counts"].get("failed", 0) == 0
    # Without --week: the newest issue.
    assert digest_cli.json("status", "--json")["week"] == WEEK
    assert digest_cli.json("status", "--json")["number"] == 1
    text = digest_cli.ok("status", "--week", WEEK)
    assert f"issue #1 ({WEEK}): sent" in text.stdout


def test_status_without_an_issue(digest_cli: DigestCLI) -> None:
    status = digest_cli.json("status", "--week", WEEK, "--json")
    assert status == {"number": None, "week": WEEK, "state": None, "counts": {}}


def test_bad_week_is_a_usage_error(digest_cli: DigestCLI) -> None:
    result = digest_cli("status", "--week", "2026-47")
    assert result.exit_code == 2
    assert "2026-W47" in result.stderr


def test_preview_writes_what_a_subscriber_gets(
    digest_cli: DigestCLI, seeded: int, tmp_path: Path
) -> None:
    out = tmp_path / "preview"
    result = digest_cli.ok("preview", "--week", WEEK, "--out", out)
    assert {p.name for p in out.iterdir()} == {"digest.html", "digest.txt", "digest.eml"}
    assert "digest.eml" in result.stdout
    msg = message_from_bytes((out / "digest.eml").read_bytes(), policy=policy.default)
    assert isinstance(msg, EmailMessage)
    assert msg.get_content_type() == "multipart/alternative"
    assert msg["List-Unsubscribe"] and msg["Message-ID"]
    html = msg.get_body(preferencelist=("html",))
    text = msg.get_body(preferencelist=("plain",))
    assert html is not None and text is not None
    assert (out / "digest.html").read_bytes().decode("utf-8") == html.get_content()
    assert (out / "digest.txt").read_bytes().decode("utf-8") == text.get_content()
    assert "Hi Sample," in text.get_content()
    assert "[[%" not in html.get_content()
    # Preview is what will be sent: the subject is the frozen issue's.
    digest_cli.ok("send", "--week", WEEK, "--dry-run")
    assert str(msg["Subject"]).endswith(" — plus 6 more verdicts")


def test_preview_with_nothing_new(digest_cli: DigestCLI, tmp_path: Path) -> None:
    result = digest_cli.ok("preview", "--week", "2026-W30", "--out", tmp_path / "p")
    assert "nothing new" in result.stdout
    assert not (tmp_path / "p" / "digest.eml").exists()


def test_subscribers_add_list_and_duplicates(digest_cli: DigestCLI) -> None:
    digest_cli.ok("subscribers", "add", "Ada@Example.COM", "--name", "Ada Lovelace")
    again = digest_cli.ok("subscribers", "add", "ada@example.com")
    assert "already subscribed" in again.stdout
    digest_cli.ok("subscribers", "add", "bjorn@example.se", "--name", "Björn Ø")
    rows = digest_cli.json("subscribers", "list", "--json")
    assert [(r["email"], r["name"], r["status"]) for r in rows] == [
        ("ada@example.com", "Ada Lovelace", "active"),
        ("bjorn@example.se", "Björn Ø", "active"),
    ]
    bad = digest_cli("subscribers", "add", "no-at-sign")
    assert bad.exit_code != 0 and "no-at-sign" in bad.stderr


def test_subscribers_import_is_all_or_nothing_with_line_numbers(
    digest_cli: DigestCLI, tmp_path: Path
) -> None:
    csv_path = tmp_path / "people.csv"
    csv_path.write_text(
        "email,name\nok@example.com,Okay\nbroken-address,Nope\nalso@example.com,\n@bad,\n",
        encoding="utf-8",
    )
    result = digest_cli("subscribers", "import", csv_path)
    assert result.exit_code != 0
    assert f"{csv_path}:3:" in result.stderr
    assert f"{csv_path}:5:" in result.stderr
    assert digest_cli.json("subscribers", "list", "--json") == []

    result = digest_cli.ok("subscribers", "import", SAMPLE_CSV)
    rows = digest_cli.json("subscribers", "list", "--json")
    assert sorted(r["email"] for r in rows) == sorted(sample_emails())
    assert all(r["status"] == "active" for r in rows)
    assert "Zoë Ångström" in {r["name"] for r in rows}
