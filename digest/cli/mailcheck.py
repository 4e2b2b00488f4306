"""``digest doctor``: will receivers trust our mail? SPF, DKIM and DMARC in DNS."""

from __future__ import annotations

import json
import logging
from typing import Annotated

import typer

from digest.cli.common import app, out, settings

logger = logging.getLogger(__name__)

_MARK = {"ok": "[green]ok  [/]", "warn": "[yellow]warn[/]", "fail": "[bold red]FAIL[/]"}


@app.command()
def doctor(
    as_json: Annotated[bool, typer.Option("--json", help="Print the checks as JSON.")] = False,
) -> None:
    """Check the From domain's SPF, DKIM (the published key is the one we sign with) and
    DMARC records in DNS. Exits 1 when a check fails.

    Example: DIGEST_DKIM_SELECTOR=mail DIGEST_DKIM_PRIVATE_KEY_FILE=dkim.pem digest doctor
    """
    # imported on use, not at start-up: keeps the CLI fast to start
    from rich.markup import escape

    from digest.mail.doctor import run_checks

    s = settings()
    checks = run_checks(s)
    if as_json:
        out.print(json.dumps([c.as_dict() for c in checks], indent=2), highlight=False)
    else:
        for check in checks:
            out.print(
                f"{_MARK[check.status]} {check.name:<5} {escape(check.detail)}", highlight=False
            )
        failed = sum(c.status == "fail" for c in checks)
        out.print(
            f"{s.from_domain}: {len(checks) - failed} of {len(checks)} checks pass", highlight=False
        )
    if any(c.status == "fail" for c in checks):
        raise typer.Exit(1)
