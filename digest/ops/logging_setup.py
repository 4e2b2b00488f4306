"""Log output for every entry point (the CLI, ``digest serve``, ``scheduler.py``).

``DIGEST_LOG_FORMAT=json`` writes one JSON object per line on stderr — ``time`` (UTC,
ISO 8601), ``level``, ``logger``, ``message``, ``exception`` when there is one, and any
``extra=`` fields — for a log shipper; ``text`` (the default) is for people.
``DIGEST_LOG_LEVEL`` overrides each entry point's own default level.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from digest.core.settings import Settings, get_settings
from digest.exceptions import DigestError

logger = logging.getLogger(__name__)

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
#: Attributes every LogRecord has; anything else on a record came from ``extra=``.
_RECORD_FIELDS = frozenset(vars(logging.makeLogRecord({}))) | {"message", "asctime", "taskName"}
#: uvicorn's access log passes these as the message arguments.
_ACCESS_FIELDS = ("client", "method", "path", "http_version", "status")


def _plain(value: Any) -> Any:
    return value if isinstance(value, str | int | float | bool | None) else repr(value)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        payload: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        args = record.args
        if record.name == "uvicorn.access" and isinstance(args, tuple) and len(args) == 5:
            payload.update(zip(_ACCESS_FIELDS, map(_plain, args), strict=True))
        for key, value in vars(record).items():
            if key not in _RECORD_FIELDS and not key.startswith("_"):
                payload[key] = _plain(value)
        if record.exc_info:
            payload["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            payload["exception"] = record.exc_text
        return json.dumps(payload, ensure_ascii=False)


class StderrHandler(logging.StreamHandler):
    """Writes to ``sys.stderr`` as it is when a record is emitted, not as it was when the
    handler was made: a process that swaps stderr (a test runner's capture, a daemon's
    redirect) must not leave the log writing into a closed stream."""

    @property
    def stream(self) -> Any:
        return sys.stderr

    @stream.setter
    def stream(self, _value: Any) -> None:
        pass  # always the current sys.stderr


def configure_logging(default_level: int, settings: Settings | None = None) -> Settings | None:
    """Send every log record to stderr in ``DIGEST_LOG_FORMAT`` at ``DIGEST_LOG_LEVEL``
    (else ``default_level``). Without valid settings it falls back to text: the command
    that needs them reports the configuration error itself. Returns the settings used."""
    if settings is None:
        try:
            settings = get_settings()
        except DigestError:
            settings = None
    handler = StderrHandler()
    json_logs = settings is not None and settings.log_format == "json"
    handler.setFormatter(JsonFormatter() if json_logs else logging.Formatter(TEXT_FORMAT))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    level = settings.log_level if settings is not None and settings.log_level else None
    root.setLevel(level or default_level)
    return settings
