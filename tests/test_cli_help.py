"""Help reads right: flags print bare (``--yes``, not ``--yes <bool>``), and a command
that acts on the newest issue does not also claim to default to the current week."""

from __future__ import annotations

import re
from typing import Any

import pytest
from cli_support import DigestCLI
from test_cli import COMMANDS

NEWEST_ISSUE_COMMANDS = ("status", "pause", "resume", "cancel")


@pytest.mark.parametrize(
    ("path", "command"), COMMANDS, ids=[" ".join(p) or "digest" for p, _ in COMMANDS]
)
def test_flags_take_no_value_in_help(
    digest_cli: DigestCLI, path: tuple[str, ...], command: Any
) -> None:
    output = digest_cli.ok(*path, "--help").output
    assert "<bool>" not in output
    flags = [
        opt
        for param in getattr(command, "params", [])
        if getattr(param, "is_flag", False)
        for opt in [*param.opts, *param.secondary_opts]
    ]
    for flag in [*flags, "--help"]:
        line = next(line for line in output.splitlines() if re.search(rf"{flag}\b", line))
        assert not re.search(rf"{re.escape(flag)} <", line), line


def test_send_shows_yes_and_dry_run_as_plain_flags(digest_cli: DigestCLI) -> None:
    output = digest_cli.ok("send", "--help").output
    assert re.search(r"^\s+--dry-run\s{2,}Render", output, re.MULTILINE), output
    assert re.search(r"^\s+-y, --yes\s{2,}Confirm", output, re.MULTILINE), output


@pytest.mark.parametrize("name", NEWEST_ISSUE_COMMANDS)
def test_commands_on_the_newest_issue_say_so_once(digest_cli: DigestCLI, name: str) -> None:
    output = " ".join(digest_cli.ok(name, "--help").output.split())
    assert "the open issue, else the newest" in output
    assert "the current week" not in output
