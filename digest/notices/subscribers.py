"""The transactional emails, sent through the configured transport: the double opt-in
confirmation and a fresh unsubscribe link (for a reader whose old link did not work).

Each is rendered like the digest (Jinja + MJML, templates/email/confirm.* and
unsubscribe_link.*), compiled once per process with the greeting and link as
placeholders, and wrapped in a :class:`LinkMessage` — a
:class:`~digest.mail.oneoff.OneOffMessage` whose headers are those of a transactional
email: a fresh Message-ID per email, the name only through ``email.headerregistry``,
and a List-Unsubscribe for whoever did not ask for the email.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from markupsafe import Markup, escape

from digest.core.clock import utcnow
from digest.core.mailsafe import header_text
from digest.core.recipient import Recipient
from digest.core.settings import Settings
from digest.core.tokens import TokenMinter, make_token
from digest.issue.render import brand_context, render_email
from digest.mail.oneoff import OneOffMessage
from digest.mail.parts import greeting
from digest.mail.placeholders import placeholder
from digest.transports import Transport, make_transport
from digest.transports.base import SendStatus

logger = logging.getLogger(__name__)

CONFIRM = "email/confirm"
UNSUBSCRIBE_LINK = "email/unsubscribe_link"

_COMPILED: dict[tuple[object, ...], tuple[str, str]] = {}


def _compiled(settings: Settings, template: str) -> tuple[str, str]:
    """A link email's HTML and text with placeholders, compiled once per process for
    each template and set of the settings it shows."""
    key = (
        template,
        settings.list_name,
        settings.site_url,
        settings.postal_address,
        settings.confirm_link_hours,
        settings.logo_url,
        settings.logo_alt,
        settings.logo_width,
    )
    compiled = _COMPILED.get(key)
    if compiled is None:
        if len(_COMPILED) >= 8:
            _COMPILED.clear()
        compiled = _COMPILED[key] = render_email(template, link_email_context(settings, template))
    return compiled


def link_email_context(settings: Settings, template: str = CONFIRM) -> dict[str, Any]:
    """What templates/email/confirm.* and unsubscribe_link.* are rendered with (the
    greeting and the link as placeholders)."""
    return {
        "subject": _SUBJECTS[template](settings.list_name),
        "preheader": _PREHEADERS[template],
        **brand_context(settings),
        "hours": settings.confirm_link_hours,
        # Constant markers, not user data: the message substitutes the escaped values.
        "placeholders": {
            k: Markup(placeholder(k))  # noqa: S704
            for k in ("greeting", "link")
        },
    }


def confirm_subject(list_name: str) -> str:
    return header_text(f"Confirm your subscription to {list_name}", 200)


def unsubscribe_link_subject(list_name: str) -> str:
    return header_text(f"Your link to unsubscribe from {list_name}", 200)


_SUBJECTS = {CONFIRM: confirm_subject, UNSUBSCRIBE_LINK: unsubscribe_link_subject}
_PREHEADERS = {
    CONFIRM: "One click and the weekly verdicts start arriving.",
    UNSUBSCRIBE_LINK: "You asked for a fresh unsubscribe link: one click and you are out.",
}


def confirm_url(settings: Settings, subscriber_id: int, nonce: str) -> str:
    token = make_token(
        settings, "confirm", subscriber_id, binding=bytes.fromhex(nonce), issued_at=utcnow()
    )
    return f"{settings.base_url}/confirm/{token}"


class ListNotice(OneOffMessage):
    """A transactional email to one reader of the list: it carries the list's one-click
    unsubscribe and a transactional Feedback-ID (Gmail's complaint feedback loop)."""

    def __init__(self, settings: Settings, *, subject: str, html: str, text: str) -> None:
        super().__init__(settings, subject=subject, html=html, text=text)
        self.feedback_id = f"{self.kind}:{settings.effective_list_id}:transactional:{self.domain}"

    def headers(self, recipient: Recipient) -> dict[str, str]:
        return {
            **super().headers(recipient),
            # "I never asked for this": one click puts the address on the suppression
            # list, so nobody can use the form to mail this person again.
            "List-Unsubscribe": self.list_unsubscribe(recipient),
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "Feedback-ID": self.feedback_id,
        }


class LinkMessage(ListNotice):
    """One transactional email that carries one link for one recipient (confirm a
    subscription, a fresh unsubscribe link).

    The greeting and link are substituted here, once, so ``html`` and ``text`` are
    final: a transport that does its own per-recipient substitution (the API
    providers) has nothing left to substitute and cannot leave a placeholder behind.
    """

    template = CONFIRM
    kind = "confirm"

    def __init__(self, settings: Settings, recipient: Recipient, link: str) -> None:
        html, text = _compiled(settings, self.template)
        # Defused like every rendered value (digest.issue.render): a name cannot smuggle in
        # a placeholder for a later substitution to fill.
        hello = greeting(self.display_name(recipient)).replace("[[%", "[[ %")
        html = html.replace(placeholder("link"), str(escape(link)))
        html = html.replace(placeholder("greeting"), str(escape(hello)))
        text = text.replace(placeholder("link"), link)
        text = text.replace(placeholder("greeting"), hello)
        super().__init__(
            settings, subject=_SUBJECTS[self.template](settings.list_name), html=html, text=text
        )
        self.recipient = recipient
        self.link = link


class ConfirmationMessage(LinkMessage):
    """The double opt-in email: "Yes, subscribe me"."""


class UnsubscribeLinkMessage(LinkMessage):
    """A fresh one-click unsubscribe link, for a reader whose old link did not work."""

    template = UNSUBSCRIBE_LINK
    kind = "unsubscribe-link"


TransportFactory = Callable[[Settings], Transport]


def send_one(
    message: OneOffMessage, recipient: Recipient, factory: TransportFactory | None
) -> bool:
    """Hand one email for one person to the transport; True when it was accepted."""
    transport = (factory or make_transport)(message.settings)
    with transport:
        result = transport.send_batch(message, [recipient])[0]
    if result.status != SendStatus.SENT:
        logger.warning(
            "%s email to subscriber %s not accepted: %s",
            message.kind,
            recipient.subscriber_id,
            result.error,
        )
        return False
    return True


def _send(message: LinkMessage, factory: TransportFactory | None) -> bool:
    return send_one(message, message.recipient, factory)


def send_unsubscribe_link(
    settings: Settings, recipient: Recipient, transport_factory: TransportFactory | None = None
) -> bool:
    """Mail ``recipient`` their one-click unsubscribe link; True when accepted."""
    token = TokenMinter(settings, "unsubscribe").for_address(
        recipient.subscriber_id, recipient.email
    )
    link = f"{settings.base_url}/unsubscribe/{token}"
    return _send(UnsubscribeLinkMessage(settings, recipient, link), transport_factory)


def send_confirmation(
    settings: Settings,
    recipient: Recipient,
    nonce: str,
    transport_factory: TransportFactory | None = None,
) -> bool:
    """Send one confirmation email; True when the transport accepted it."""
    link = confirm_url(settings, recipient.subscriber_id, nonce)
    return _send(ConfirmationMessage(settings, recipient, link), transport_factory)
