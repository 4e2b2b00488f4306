"""People's replies that reach the inbound: forwarded to ``DIGEST_REPLY_FORWARD``.

A reply is sent on *wrapped*: a new message from the digest's own From address, with
the reader's message attached (``message/rfc822``) and their address as Reply-To. A
forward that kept the reader's From would fail their domain's DMARC on the way out of
our relay; this one passes ours. It goes through the SMTP server the sends use, with
the bare bounce address as envelope sender, so a failed forward comes back as a
notice (listed in the console), never as a loop.
"""

from __future__ import annotations

import logging
from contextlib import suppress
from email import message_from_bytes, policy
from email.message import EmailMessage
from email.utils import parseaddr

from digest.core.mailsafe import check_address, header_text
from digest.core.settings import Settings
from digest.exceptions import AddressError
from digest.mail.parts import MAIL_POLICY, safe_mailbox
from digest.mail.verp import verp_config
from digest.transports.smtp import connect
from digest.webhooks.mail_events import Forwarder
from digest.webhooks.mail_reading import Reading

logger = logging.getLogger(__name__)


def wrap(settings: Settings, to: str, raw: bytes, reading: Reading) -> EmailMessage:
    """The message that carries a reply on to ``to``."""
    msg = EmailMessage(policy=MAIL_POLICY)
    msg["From"] = safe_mailbox(settings.from_address)
    msg["To"] = to
    who = reading.sender or "an unknown sender"
    msg["Subject"] = header_text(f"Reply from {who}: {reading.subject or '(no subject)'}", 250)
    # No usable address to answer: the attached message still has its headers.
    with suppress(AddressError):
        msg["Reply-To"] = check_address(reading.sender)
    msg["Auto-Submitted"] = "auto-forwarded"  # RFC 5436: nobody should auto-reply to it
    msg.set_content(
        f"A reader replied to {settings.list_name}; their message is attached.\n"
        f"From: {who}\nSubject: {reading.subject}\n"
    )
    original = message_from_bytes(raw, policy=policy.default)
    msg.add_attachment(original, disposition="inline")
    return msg


def smtp_forwarder(settings: Settings) -> Forwarder | None:
    """Forwards replies over SMTP when ``DIGEST_REPLY_FORWARD`` is set; else None
    (replies are only listed in the console)."""
    to = settings.reply_forward
    if not to:
        return None
    config = verp_config(settings)
    envelope = config.bare if config else parseaddr(settings.from_address)[1]

    def forward(raw: bytes, reading: Reading) -> str:
        message = wrap(settings, to, raw, reading)
        conn = connect(settings)
        try:
            conn.send_message(message, from_addr=envelope, to_addrs=[to])
        finally:
            conn.quit()
        return to

    return forward
