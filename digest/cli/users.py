"""The ``digest users …`` commands: console accounts for editors and operators."""

from __future__ import annotations

import json
import logging
import sys
from typing import Annotated

import typer
from sqlmodel import Session

from digest.cli.common import app, fail, out, say, settings, store_engine
from digest.exceptions import DigestError

logger = logging.getLogger(__name__)

users_app = typer.Typer(
    help="Console accounts: editors edit, test and approve; operators also send.\n\n"
    "Example: digest users add ed@example.com --role editor",
    no_args_is_help=True,
)
app.add_typer(users_app, name="users")


@users_app.command("add")
def users_add(
    email: Annotated[str, typer.Argument(help="The person's address (their login).")],
    role: Annotated[str, typer.Option(help="editor or operator.")] = "editor",
    password_stdin: Annotated[
        bool,
        typer.Option("--password-stdin", help="Read the password from standard input."),
    ] = False,
) -> None:
    """Add a console account. Without --password-stdin it prints a one-time link
    (valid 72 hours) where the person sets their own password.

    Example: digest users add ed@example.com --role editor
    """
    # imported on use, not at start-up: keeps the CLI fast to start
    from digest.accounts.service import SETUP_LINK_HOURS, add_user, setup_url
    from digest.store.engine import session_scope

    password = sys.stdin.readline().rstrip("\r\n") if password_stdin else None
    s = settings()
    engine = store_engine(s)
    try:
        with session_scope(engine) as session:
            new = add_user(session, email, role, password)
            address, role_name = new.user.email, new.user.role
    except DigestError as exc:
        fail(str(exc))
    say(f"added {role_name} {address}")
    if new.setup_token:
        say(
            f"set-password link (one use, {SETUP_LINK_HOURS} hours): "
            f"{setup_url(s, new.setup_token)}"
        )


@users_app.command("reset")
def users_reset(
    email: Annotated[str, typer.Argument(help="The account's address.")],
) -> None:
    """Print a fresh one-time set-password link for an account (forgotten password).

    Example: digest users reset ed@example.com
    """
    # imported on use, not at start-up: keeps the CLI fast to start
    from digest.accounts.service import SETUP_LINK_HOURS, reset_link, setup_url
    from digest.store.engine import session_scope

    s = settings()
    try:
        with session_scope(store_engine(s)) as session:
            token = reset_link(session, email)
    except DigestError as exc:
        fail(str(exc))
    say(f"set-password link (one use, {SETUP_LINK_HOURS} hours): {setup_url(s, token)}")


@users_app.command("list")
def users_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON objects.")] = False,
) -> None:
    """List console accounts with their role and last login.

    Example: digest users list --json
    """
    # imported on use, not at start-up: keeps the CLI fast to start
    from digest.accounts.service import list_users

    with Session(store_engine(settings())) as session:
        rows = [
            {
                "email": u.email,
                "role": u.role,
                "password_set": u.password_hash is not None,
                "last_login_at": u.last_login_at.isoformat() if u.last_login_at else None,
            }
            for u in list_users(session)
        ]
    if as_json:
        sys.stdout.write(json.dumps(rows, indent=2) + "\n")
        return
    for row in rows:
        state = "" if row["password_set"] else "  (no password yet)"
        login = row["last_login_at"] or "never"
        say(f"{row['role']:<9} {row['email']}  last login: {login}{state}")
    out.print(f"{len(rows)} account{'' if len(rows) == 1 else 's'}", highlight=False)


@users_app.command("remove")
def users_remove(
    email: Annotated[str, typer.Argument(help="The account's address.")],
) -> None:
    """Remove a console account and log it out everywhere.

    Example: digest users remove ed@example.com
    """
    # imported on use, not at start-up: keeps the CLI fast to start
    from digest.accounts.service import remove_user
    from digest.store.engine import session_scope

    try:
        with session_scope(store_engine(settings())) as session:
            user = remove_user(session, email)
            address = user.email
    except DigestError as exc:
        fail(str(exc))
    say(f"removed {address}")
