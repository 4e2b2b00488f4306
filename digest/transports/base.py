"""The transport contract: hand over a batch, get one result per recipient back.

A transport never decides what happens to a delivery; it reports what the server said:

- ``SENT``: accepted (``provider_id`` holds the provider's message id, if any);
- ``RETRY``: a transient answer (4xx, throttling, timeout) — ``retry_after`` if known;
- ``FAILED``: a permanent answer for that recipient (5xx, rejected address).

Failures of the whole transport raise from :mod:`digest.exceptions`:
``TransientTransportError`` (retry the batch later) or ``TransportConfigError``
(credentials or sender rejected: stop the send).
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType

from digest.message import IssueMessage, Recipient

logger = logging.getLogger(__name__)


class SendStatus(StrEnum):
    SENT = "sent"
    RETRY = "retry"
    FAILED = "failed"


@dataclass(frozen=True)
class SendResult:
    recipient: Recipient
    status: SendStatus
    provider_id: str | None = None
    error: str | None = None
    retry_after: float | None = None

    @classmethod
    def sent(cls, recipient: Recipient, provider_id: str | None = None) -> SendResult:
        return cls(recipient, SendStatus.SENT, provider_id=provider_id)

    @classmethod
    def retry(
        cls, recipient: Recipient, error: str, retry_after: float | None = None
    ) -> SendResult:
        return cls(recipient, SendStatus.RETRY, error=error, retry_after=retry_after)

    @classmethod
    def failed(cls, recipient: Recipient, error: str) -> SendResult:
        return cls(recipient, SendStatus.FAILED, error=error)


class Transport(ABC):
    """Sends batches of one issue's messages. Use as a context manager."""

    #: the transport's name as ``DIGEST_TRANSPORT`` spells it
    name: str = "base"
    #: the most recipients one ``send_batch`` call accepts
    max_batch: int = 1000

    def open(self) -> None:  # noqa: B027  (optional hook; most transports need none)
        """Connect (called once before the first batch); the default does nothing."""

    @abstractmethod
    def send_batch(
        self, message: IssueMessage, recipients: Sequence[Recipient]
    ) -> list[SendResult]:
        """Send ``message`` to each recipient; one result per recipient, same order."""

    def close(self) -> None:  # noqa: B027  (optional hook)
        """Release connections; the default does nothing."""

    def __enter__(self) -> Transport:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
