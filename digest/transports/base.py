"""The transport contract: hand over a batch, get one result per recipient back.

A transport never decides what happens to a delivery; it reports what the server said:

- ``SENT``: accepted (``provider_id`` holds the provider's message id, if any);
- ``RETRY``: a transient answer (4xx, throttling, timeout) — ``retry_after`` if known;
- ``FAILED``: a permanent answer for that recipient (5xx, rejected address);
  ``bounce`` says the *address* was refused (RCPT stage, 5.1.x, a provider's
  "invalid recipient") — only then is the subscriber suppressed. A message-level
  refusal (content rejected, message too big) or an address we could not even write
  (see :mod:`digest.core.mailsafe`) fails that delivery and leaves the subscriber alone.

``RETRY`` with ``outage`` set means the server could not be reached at all (no
connection, connection lost, a Maildir that cannot be written): when a whole chunk
comes back like that the send loop pauses instead of burning attempts.

``RETRY`` with ``untried`` set means the message was never handed over: a transport
asks its :attr:`Transport.handover` gate before each message (or each provider
request), and the send loop closes the gate on a pause, a cancel, an unsubscribe, a
database it cannot reach or a lease it can no longer vouch for (digest/delivery/handover.py).
The loop gives such rows back untouched.

Failures of the whole transport raise from :mod:`digest.exceptions`:
``TransientTransportError`` (retry the batch later) or ``TransportConfigError``
(credentials or sender rejected: stop the send).

Pacing (``DIGEST_RATE_LIMIT``, messages per second) is declared here too: the send loop
paces each chunk it hands over, unless the transport says it paces each message itself
(``paces_each_message``, the SMTP pool, whose connections send in parallel); then the
loop gives it the send's :class:`Pacer` instead.
"""

from __future__ import annotations

import logging
import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from types import TracebackType
from typing import TYPE_CHECKING, Protocol

from digest.core.mailsafe import check_address
from digest.core.recipient import Recipient
from digest.exceptions import AddressError
from digest.mail.message import IssueMessage

if TYPE_CHECKING:
    from digest.mail.dkim import DkimSigner

logger = logging.getLogger(__name__)


class Pacer(Protocol):
    """Send pacing as a transport sees it (:class:`digest.delivery.pacing.AdaptivePacer`)."""

    def acquire(self, n: int = 1, sleep: Callable[[float], object] | None = None) -> bool:
        """Block until ``n`` more messages may go (``sleep`` may end the wait early:
        then False, and they must not go now)."""


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
    #: FAILED: the server refused the address itself (suppress the subscriber)
    bounce: bool = False
    #: RETRY: the server was not reached; nothing was said about this recipient
    outage: bool = False
    #: RETRY: never handed over (the hand-over gate was closed); no attempt spent
    untried: bool = False

    @classmethod
    def sent(cls, recipient: Recipient, provider_id: str | None = None) -> SendResult:
        return cls(recipient, SendStatus.SENT, provider_id=provider_id)

    @classmethod
    def retry(
        cls, recipient: Recipient, error: str, retry_after: float | None = None
    ) -> SendResult:
        return cls(recipient, SendStatus.RETRY, error=error, retry_after=retry_after)

    @classmethod
    def failed(cls, recipient: Recipient, error: str, *, bounce: bool = False) -> SendResult:
        return cls(recipient, SendStatus.FAILED, error=error, bounce=bounce)

    @classmethod
    def unreachable(cls, recipient: Recipient, error: str) -> SendResult:
        return cls(recipient, SendStatus.RETRY, error=error, outage=True)

    @classmethod
    def not_handed_over(cls, recipient: Recipient) -> SendResult:
        return cls(recipient, SendStatus.RETRY, error="not handed over", untried=True)


class Gate(Protocol):
    """What a transport asks before handing a message over (digest/delivery/handover.py)."""

    def allows(self, recipient: Recipient) -> bool:
        """Whether ``recipient``'s message may be handed over now."""

    def is_open(self) -> bool:
        """Whether anything may be handed over now (False: stop asking)."""

    def sleep(self, seconds: float) -> bool:
        """Sleep (a rate limit's wait) up to ``seconds``, ending early when the gate
        closes; whether it is still open."""


class OpenGate:
    """The gate of a transport used outside the send loop (a test copy, tests)."""

    def allows(self, recipient: Recipient) -> bool:
        return True

    def is_open(self) -> bool:
        return True

    def sleep(self, seconds: float) -> bool:
        time.sleep(seconds)
        return True


OPEN_GATE: Gate = OpenGate()


def address_refusal(recipient: Recipient) -> SendResult | None:
    """A FAILED result (not a bounce) for an address no message or envelope can hold."""
    try:
        check_address(recipient.email)
    except AddressError as exc:
        return SendResult.failed(recipient, f"not sent: {exc}"[:500])
    return None


def message_bytes(message: IssueMessage, recipient: Recipient) -> bytes | SendResult:
    """The recipient's bytes, or a FAILED result (not a bounce) when that one address
    cannot be put into a message: one poison address never stops a batch."""
    try:
        return message.as_bytes(recipient)
    except AddressError as exc:
        return SendResult.failed(recipient, f"not sent: {exc}"[:500])


def message_data(
    message: IssueMessage, recipient: Recipient, signer: DkimSigner | None = None
) -> bytes | SendResult:
    """The recipient's message as SMTP DATA (dot-stuffed, ended; DKIM-signed when there
    is a ``signer``), or a FAILED result like :func:`message_bytes`."""
    try:
        if signer is not None:
            return message.as_signed_data(recipient, signer)
        return message.as_data(recipient)
    except AddressError as exc:
        return SendResult.failed(recipient, f"not sent: {exc}"[:500])


class Transport(ABC):
    """Sends batches of one issue's messages. Use as a context manager."""

    #: the transport's name as ``DIGEST_TRANSPORT`` spells it
    name: str = "base"
    #: the most recipients one ``send_batch`` call accepts
    max_batch: int = 1000
    #: asked before each message; the send loop sets its own (digest/delivery/handover.py)
    handover: Gate = OPEN_GATE
    #: True: the transport calls :attr:`pacer` before each message (its connections
    #: send in parallel); False: the send loop paces each chunk before handing it over.
    paces_each_message: bool = False
    #: set by the send loop when ``paces_each_message``
    pacer: Pacer | None = None

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
