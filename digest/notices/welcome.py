"""The welcome email, sent once a subscription is confirmed: what arrives, when, how to
change topics or frequency, and the latest issue to read now.

Rendered like every other email (templates/email/welcome.*, Jinja + MJML, escaped
values), once per welcome: it goes to one person and its content is theirs (their
preferences link), so nothing is left to substitute.
"""

from __future__ import annotations

import logging
from datetime import datetime

from digest.core.mailsafe import header_text
from digest.core.recipient import Recipient
from digest.core.settings import Settings
from digest.core.tokens import TokenMinter
from digest.issue.render import brand_context, render_email
from digest.mail.parts import greeting, preferences_url
from digest.notices.subscribers import ListNotice, TransportFactory, send_one

logger = logging.getLogger(__name__)

WELCOME = "email/welcome"


def welcome_subject(list_name: str) -> str:
    return header_text(f"Welcome to {list_name}: what to expect", 200)


def when_line(settings: Settings, next_send: datetime | None) -> str:
    """When the next issue arrives, in the reader's terms."""
    if next_send is None:
        return "Issues go out once a week."
    day = f"{next_send:%A} {next_send.day} {next_send:%B}"
    if settings.send_local_time:
        return f"The next issue arrives on {day}, at {settings.send_local_time} your time."
    return f"The next issue goes out on {day} at {next_send:%H:%M} ({settings.timezone})."


class WelcomeMessage(ListNotice):
    """ "You're in": what to expect, when, how to change it, the latest issue."""

    kind = "welcome"

    def __init__(
        self,
        settings: Settings,
        recipient: Recipient,
        *,
        next_send: datetime | None,
        latest_url: str | None,
    ) -> None:
        token = TokenMinter(settings, "unsubscribe").for_address(
            recipient.subscriber_id, recipient.email
        )
        unsubscribe = f"{settings.base_url}/unsubscribe/{token}"
        context = {
            "subject": welcome_subject(settings.list_name),
            "preheader": "What arrives, when, and how to change it.",
            **brand_context(settings),
            "greeting": greeting(header_text(recipient.name, 100)),
            "when": when_line(settings, next_send),
            "preferences_url": preferences_url(unsubscribe),
            "unsubscribe_url": unsubscribe,
            "latest_url": latest_url,
            "archive_url": f"{settings.base_url}/archive",
        }
        html, text = render_email(WELCOME, context)
        super().__init__(settings, subject=context["subject"], html=html, text=text)
        self.recipient = recipient


def send_welcome(
    settings: Settings,
    recipient: Recipient,
    *,
    next_send: datetime | None,
    latest_url: str | None,
    transport_factory: TransportFactory | None = None,
) -> bool:
    """Send the welcome email; True when the transport accepted it."""
    message = WelcomeMessage(settings, recipient, next_send=next_send, latest_url=latest_url)
    return send_one(message, recipient, transport_factory)
