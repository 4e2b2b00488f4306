"""``json.loads`` that never raises RecursionError.

The C decoder recurses once per nesting level: ``[[[[…]]]]`` a hundred thousand deep
raises RecursionError, which no caller expects (a 500 from the web, a traceback from
``digest import``). Here it is a ValueError like any other malformed JSON.
"""

from __future__ import annotations

import json
import logging
from typing import Any

logger = logging.getLogger(__name__)


class TooDeep(ValueError):
    """The document nests deeper than the decoder can follow."""


def loads(data: str | bytes) -> Any:
    try:
        return json.loads(data)
    except RecursionError:
        raise TooDeep("JSON nested too deeply") from None
