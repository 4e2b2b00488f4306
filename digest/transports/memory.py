"""An in-memory transport: keeps every message it is given (tests, dry runs)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

from digest.core.recipient import Recipient
from digest.mail.message import IssueMessage
from digest.transports.base import SendResult, Transport, message_bytes

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StoredMessage:
    recipient: Recipient
    message_id: str
    raw: bytes


class MemoryTransport(Transport):
    name = "memory"

    def __init__(self) -> None:
        self.outbox: list[StoredMessage] = []

    def send_batch(
        self, message: IssueMessage, recipients: Sequence[Recipient]
    ) -> list[SendResult]:
        results: list[SendResult] = []
        for recipient in recipients:
            if not self.handover.allows(recipient):
                results.append(SendResult.not_handed_over(recipient))
                continue
            message_id = message.message_id(recipient)
            raw = message_bytes(message, recipient)
            if isinstance(raw, SendResult):
                results.append(raw)
                continue
            self.outbox.append(StoredMessage(recipient, message_id, raw))
            results.append(SendResult.sent(recipient, provider_id=message_id))
        return results
