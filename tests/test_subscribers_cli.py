"""The privacy commands through the real Typer app: show, export, forget, import."""

from __future__ import annotations

import csv
from pathlib import Path

from cli_support import DigestCLI
from subscriber_support import write


def test_import_show_export_forget(digest_cli: DigestCLI, tmp_path: Path) -> None:
    people = write(
        tmp_path / "people.csv",
        "email,name\nada@example.com,Ada <Lovelace>\nbob@example.com,[bold]Bob[/]\n",
    )
    out = digest_cli.ok(
        "subscribers", "import", people, "--consent-source", "signup sheet, PyCon 2026"
    ).stdout
    assert "imported 2 new subscribers" in out

    shown = digest_cli.json("subscribers", "show", "ADA@example.com", "--json")
    assert shown["email"] == "ada@example.com" and shown["status"] == "active"
    assert shown["name"] == "Ada <Lovelace>" and shown["confirmed_at"]
    [event] = shown["events"]
    assert (event["action"], event["source"], event["detail"]) == (
        "import",
        "signup sheet, PyCon 2026",
        "people.csv line 2",
    )
    plain = digest_cli.ok("subscribers", "show", "bob@example.com").stdout
    assert "[bold]Bob[/]" in plain  # names are printed, never interpreted as markup

    target = tmp_path / "export.csv"
    digest_cli.ok("subscribers", "export", target)
    with target.open(encoding="utf-8", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["email"], r["status"], r["consent_source"]) for r in rows] == [
        ("ada@example.com", "active", "signup sheet, PyCon 2026"),
        ("bob@example.com", "active", "signup sheet, PyCon 2026"),
    ]
    assert all(r["consent_at"] for r in rows)

    assert (
        "forgot ada@example.com" in digest_cli.ok("subscribers", "forget", "ada@example.com").stdout
    )
    assert digest_cli.json("subscribers", "show", "ada@example.com", "--json") == {
        "email": "ada@example.com",
        "status": None,
        "known": False,
        "suppressed": "unsubscribed",
        "events": [],
    }
    # Neither an import nor `subscribers add` brings a forgotten person back.
    again = digest_cli.ok("subscribers", "import", people).stdout
    assert "0 new subscribers" in again and "1 suppressed" in again
    refused = digest_cli("subscribers", "add", "ada@example.com")
    assert refused.exit_code == 1 and "suppression list" in refused.output
    emails = [s["email"] for s in digest_cli.json("subscribers", "list", "--json")]
    assert emails == ["bob@example.com"]


def test_clear_errors(digest_cli: DigestCLI, tmp_path: Path) -> None:
    missing = digest_cli("subscribers", "show", "nobody@example.com")
    assert missing.exit_code == 1 and "no subscriber nobody@example.com" in missing.output
    bad = digest_cli("subscribers", "show", "not an address")
    assert bad.exit_code == 1 and "invalid address" in bad.output
    assert "nothing stored" in digest_cli.ok("subscribers", "forget", "x@example.com").stdout
    empty = digest_cli(
        "subscribers",
        "import",
        write(tmp_path / "p.csv", "email\na@b.co\n"),
        "--consent-source",
        "  ",
    )
    assert empty.exit_code == 2 and "must not be empty" in empty.output


def test_operator_unsubscribe_for_mailto_requests(digest_cli: DigestCLI) -> None:
    digest_cli.ok("subscribers", "add", "carol@example.com")
    out = digest_cli.ok("subscribers", "unsubscribe", "Carol@Example.com").stdout
    assert "unsubscribed" in out
    shown = digest_cli.json("subscribers", "show", "carol@example.com", "--json")
    assert shown["status"] == "unsubscribed" and shown["suppressed"] == "unsubscribed"
    assert shown["events"][-1]["source"] == "mailto request"
    assert (
        "already not subscribed"
        in digest_cli.ok("subscribers", "unsubscribe", "carol@example.com").stdout
    )
    unknown = digest_cli("subscribers", "unsubscribe", "dan@example.com")
    assert unknown.exit_code == 1 and "no subscriber" in unknown.output
