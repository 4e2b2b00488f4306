"""The ``digest`` command line (Typer). Every command's help ends with an example.

The commands live in modules by role; importing them registers them on ``app``.
"""

from digest.cli import content, mailcheck, people, sending, server  # noqa: F401  (registers commands)
from digest.cli.common import app, main

__all__ = ["app", "main"]
