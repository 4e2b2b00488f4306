"""The access log without secrets: confirm, unsubscribe, preference, click and
set-password tokens are cut out (:data:`TOKEN_PATHS`).

A token in a URL is a credential (it confirms or unsubscribes one person); uvicorn's
access log would keep every one of them in plain text, where log shipping and
backups carry them far. A click token names no one, but beside the client's address
it would say who clicked what, which the click counts promise nothing stored can.
:class:`RedactTokens` rewrites the request path of each access-log record;
:func:`log_config` is uvicorn's logging configuration with it.
"""

from __future__ import annotations

import copy
import logging
import re
from typing import Any

logger = logging.getLogger(__name__)

#: Every path whose next segment is a token: the one list the access log is redacted
#: from. A route with a ``{token}`` segment must be under one of these
#: (tests/test_hardening_round3.py checks every route of the app).
TOKEN_PATHS = ("/confirm", "/unsubscribe", "/preferences", "/r", "/console/setup")
_TOKEN_PATH = re.compile("(" + "|".join(re.escape(p) for p in TOKEN_PATHS) + r")/[^/?#\s]+")
REDACTED = "[token]"


def redact(path: str) -> str:
    return _TOKEN_PATH.sub(lambda m: f"{m.group(1)}/{REDACTED}", path)


class RedactTokens(logging.Filter):
    """For uvicorn's access records (args: client, method, path, HTTP version, status)."""

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str):
            record.args = (*args[:2], redact(args[2]), *args[3:])
        elif isinstance(record.msg, str):
            record.msg = redact(record.msg)
        return True


def log_config() -> dict[str, Any]:
    """uvicorn's default logging configuration, with the access log redacted."""
    # Only `digest serve` needs uvicorn's configuration.
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["redact_tokens"] = {"()": RedactTokens}
    config["handlers"]["access"].setdefault("filters", []).append("redact_tokens")
    return config
