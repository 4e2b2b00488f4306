"""Where the email and web templates, the Alembic migrations and the sample data live.

In a source checkout (and an editable install) ``templates/`` and ``migrations/`` sit
at the repository root beside the package; a wheel carries them inside the package as
``digest/templates`` and ``digest/migrations`` (setup.py maps them). Everything that
reads them asks :func:`resource_dir`, so both layouts work without configuration.
"""

from __future__ import annotations

import logging
from functools import cache
from pathlib import Path
from typing import Literal

from digest.exceptions import ConfigError

logger = logging.getLogger(__name__)

#: the ``digest`` package (this module is in digest/core/)
PACKAGE_DIR = Path(__file__).resolve().parents[1]
Resource = Literal["templates", "migrations", "sample"]


@cache
def resource_dir(name: Resource) -> Path:
    """The folder holding ``name``: inside the installed package first, then the
    source checkout's top level."""
    for candidate in (PACKAGE_DIR / name, PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise ConfigError(
        f"the {name}/ folder is missing (looked in {PACKAGE_DIR} and {PACKAGE_DIR.parent}); "
        "reinstall the package"
    )


#: The email and web templates (Jinja, MJML): the renderer and both front ends read them.
TEMPLATES_DIR = resource_dir("templates")
