"""Mail transports behind one contract (:mod:`digest.transports.base`).

``make_transport(settings)`` builds the one ``DIGEST_TRANSPORT`` names. Provider
modules register themselves in :data:`FACTORIES` by name.
"""

from __future__ import annotations

from collections.abc import Callable

from digest.core.settings import Settings
from digest.exceptions import ConfigError
from digest.transports.base import SendResult, SendStatus, Transport
from digest.transports.maildir import MaildirTransport
from digest.transports.mailgun import MailgunTransport
from digest.transports.memory import MemoryTransport
from digest.transports.postmark import PostmarkTransport
from digest.transports.resend import ResendTransport
from digest.transports.sendgrid import SendGridTransport
from digest.transports.ses import SESTransport
from digest.transports.smtp import SMTPTransport

__all__ = ["FACTORIES", "SendResult", "SendStatus", "Transport", "make_transport"]

FACTORIES: dict[str, Callable[[Settings], Transport]] = {
    "maildir": lambda s: MaildirTransport(s.outbox),
    "smtp": SMTPTransport,
    "memory": lambda s: MemoryTransport(),
    "postmark": PostmarkTransport,
    "sendgrid": SendGridTransport,
    "mailgun": MailgunTransport,
    "resend": ResendTransport,
    "ses": SESTransport,
}


def make_transport(settings: Settings) -> Transport:
    try:
        factory = FACTORIES[settings.transport]
    except KeyError:
        known = ", ".join(sorted(FACTORIES))
        raise ConfigError(
            f"unknown DIGEST_TRANSPORT {settings.transport!r}; choose one of {known}"
        ) from None
    return factory(settings)
