"""Small helpers for the sentences the CLI prints ("1 subscriber", "2 subscribers")."""

from __future__ import annotations

import logging

logger = logging.getLogger(__name__)

_IRREGULAR = {"delivery": "deliveries", "activity": "activities"}


def plural(count: int, noun: str, many: str | None = None) -> str:
    """``count`` and ``noun``, in the plural unless ``count`` is exactly 1."""
    if count == 1:
        return f"1 {noun}"
    return f"{count:,} {many or _IRREGULAR.get(noun) or noun + 's'}"
