"""The ``digest`` command line (Typer). Every command's help ends with an example.

The commands live in modules by role; importing them registers them on ``app``.
"""

from digest.cli import (  # noqa: F401  (registers commands)
    content,
    editorial,
    inbound,
    mailcheck,
    people,
    sending,
    server,
    store,
    users,
)
from digest.cli.common import app, main

__all__ = ["app", "main"]
