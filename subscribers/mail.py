"""The double opt-in confirmation email, sent through the configured transport.

It is rendered like the digest (Jinja + MJML, templates/email/confirm.*), compiled once
per process with the name and link as placeholders, and wrapped in a
:class:`ConfirmationMessage` — an :class:`~digest.message.IssueMessage` whose headers
are those of a transactional email: a fresh Message-ID per email, the name only
through ``email.headerregistry``, and a List-Unsubscribe for whoever did not ask for
the email.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable
from functools import lru_cache
from urllib.parse import urlsplit

from markupsafe import Markup, escape

from digest.config import Settings
from digest.mailsafe import header_text
from digest.message import IssueMessage, Recipient
from digest.render import placeholder, render_email
from digest.timeutil import utcnow
from digest.tokens import make_token
from digest.transports import Transport, make_transport
from digest.transports.base import SendStatus

logger = logging.getLogger(__name__)

TEMPLATE = "email/confirm"
GREETING_FALLBACK = "there"


@lru_cache(maxsize=4)
def _compiled(list_name: str, site_host: str, postal_address: str, hours: int) -> tuple[str, str]:
    subject = confirm_subject(list_name)
    context = {
        "subject": subject,
        "preheader": "One click and the weekly verdicts start arriving.",
        "list_name": list_name,
        "site_host": site_host,
        "postal_address": postal_address,
        "hours": hours,
        # Constant markers, not user data: html_for() substitutes the escaped values.
        "placeholders": {
            k: Markup(placeholder(k))  # noqa: S704
            for k in ("name", "confirm_url")
        },
    }
    return render_email(TEMPLATE, context)


def confirm_subject(list_name: str) -> str:
    return header_text(f"Confirm your subscription to {list_name}", 200)


def confirm_url(settings: Settings, subscriber_id: int, nonce: str) -> str:
    token = make_token(
        settings, "confirm", subscriber_id, binding=bytes.fromhex(nonce), issued_at=utcnow()
    )
    return f"{settings.base_url}/confirm/{token}"


class ConfirmationMessage(IssueMessage):
    """One confirmation email for one recipient.

    The name and link are substituted here, once, so ``html`` and ``text`` are final:
    a transport that does its own per-recipient substitution (the API providers) has
    nothing left to substitute and cannot leave a placeholder behind.
    """

    def __init__(self, settings: Settings, recipient: Recipient, confirm_link: str) -> None:
        site_host = urlsplit(settings.site_url).hostname or settings.site_url
        html, text = _compiled(
            settings.list_name, site_host, settings.postal_address, settings.confirm_link_hours
        )
        # Defused like every rendered value (digest.render): a name cannot smuggle in
        # a placeholder for a later substitution to fill.
        name = (self.display_name(recipient) or GREETING_FALLBACK).replace("[[%", "[[ %")
        html = html.replace(placeholder("confirm_url"), str(escape(confirm_link)))
        html = html.replace(placeholder("name"), str(escape(name)))
        text = text.replace(placeholder("confirm_url"), confirm_link)
        text = text.replace(placeholder("name"), name)
        super().__init__(
            issue_id=0,
            week="confirm",
            subject=confirm_subject(settings.list_name),
            html=html,
            text=text,
            settings=settings,
        )
        self.recipient = recipient
        self.confirm_link = confirm_link
        self._message_id = f"<confirm.{secrets.token_hex(12)}@{self.domain}>"
        self.boundary = "=_confirm_" + secrets.token_hex(12)

    def message_id(self, recipient: Recipient) -> str:
        return self._message_id

    def values(self, recipient: Recipient) -> dict[str, str]:
        return {}

    def html_for(self, recipient: Recipient) -> str:
        return self.html

    def text_for(self, recipient: Recipient) -> str:
        return self.text

    def headers(self, recipient: Recipient) -> dict[str, str]:
        headers = {
            "From": self.from_header,
            "To": self.to_header(recipient),
            "Subject": self.subject,
            "Date": self.date_header,
            "Message-ID": self._message_id,
            "Auto-Submitted": "auto-generated",
            # "I never asked for this": one click puts the address on the suppression
            # list, so nobody can use the form to mail this person again.
            "List-Unsubscribe": self.list_unsubscribe(recipient),
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        }
        if self.reply_to:
            headers["Reply-To"] = self.reply_to
        return headers

    def as_bytes(self, recipient: Recipient) -> bytes:
        # One email for one person: the stdlib path (IssueMessage.build with the
        # headers above), not the per-issue skeleton.
        return self.as_bytes_slow(recipient)


TransportFactory = Callable[[Settings], Transport]


def send_confirmation(
    settings: Settings,
    recipient: Recipient,
    nonce: str,
    transport_factory: TransportFactory | None = None,
) -> bool:
    """Send one confirmation email; True when the transport accepted it."""
    link = confirm_url(settings, recipient.subscriber_id, nonce)
    message = ConfirmationMessage(settings, recipient, link)
    transport = (transport_factory or make_transport)(settings)
    with transport:
        result = transport.send_batch(message, [recipient])[0]
    if result.status != SendStatus.SENT:
        logger.warning(
            "confirmation to subscriber %s not accepted: %s", recipient.subscriber_id, result.error
        )
        return False
    return True
