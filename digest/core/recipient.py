"""Who one message goes to: the value every stage hands on.

Subscribers hand one to the confirmation notice, the queue claims them, the message is
built for one and a transport sends to it. A plain value with no project imports, so it
lives on the ground floor where each of those can reach it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Recipient:
    """One addressee. ``subscriber_id`` 0 is a test copy that belongs to nobody."""

    subscriber_id: int
    email: str
    name: str = ""
    delivery_id: int | None = None
    #: the compiled variant of the issue this reader gets (None: the issue itself)
    variant_id: int | None = None
