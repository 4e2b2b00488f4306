"""SendGrid v3: ``POST /v3/mail/send`` — one body, up to 1000 personalizations.

The issue's HTML and text go once per request; each personalization carries the
recipient's substitutions (name, unsubscribe URL), their own ``Message-ID`` and
``List-Unsubscribe`` headers and custom args the event webhook echoes back. A ``202``
means every personalization was queued; a ``400`` rejects the request as a whole
before anything is sent, naming the faulty personalization — that recipient fails and
the rest are sent again at once.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from email.utils import parseaddr
from email.utils import quote as rfc822_quote
from typing import Any

import requests
from markupsafe import escape

from digest.core.recipient import Recipient
from digest.core.settings import Settings
from digest.exceptions import TransientTransportError, TransportConfigError
from digest.mail.message import IssueMessage
from digest.mail.placeholders import PER_RECIPIENT, placeholder
from digest.transports.base import SendResult
from digest.transports.http import (
    HttpTransport,
    OutcomeUnknown,
    describe,
    metadata,
    personal_headers,
    secret,
    uncertain_results,
)

logger = logging.getLogger(__name__)

_FIELD = re.compile(r"^personalizations\.(\d+)\.")
#: Headers that are the same for every recipient go once, at the top level.
SHARED_HEADERS = ("List-Id", "List-Unsubscribe-Post")


def html_key(key: str) -> str:
    # HTML needs escaped values and text raw ones; SendGrid substitutes the same value
    # everywhere, so the HTML body refers to its own keys.
    return placeholder(f"{key}.html")


def email_object(address: str, name: str = "") -> dict[str, str]:
    obj = {"email": address}
    if name:
        # SendGrid does not quote display names in personalizations itself.
        obj["name"] = f'"{rfc822_quote(name)}"' if any(c in name for c in ',;"') else name
    return obj


class SendGridTransport(HttpTransport):
    name = "sendgrid"
    max_batch = 1000

    def __init__(self, settings: Settings, session: requests.Session | None = None) -> None:
        super().__init__(settings, session)
        self.api_key = secret(settings.sendgrid_api_key, "DIGEST_SENDGRID_API_KEY")
        self.url = f"{settings.sendgrid_base_url}/v3/mail/send"
        self._bodies: tuple[int, str, str] | None = None

    def bodies(self, message: IssueMessage) -> tuple[str, str]:
        """The issue's text and HTML with SendGrid substitution keys (once per issue)."""
        if self._bodies is None or self._bodies[0] != id(message):
            html = message.html
            for key in PER_RECIPIENT:
                html = html.replace(placeholder(key), html_key(key))
            self._bodies = (id(message), message.text, html)
        return self._bodies[1], self._bodies[2]

    def personalization(self, message: IssueMessage, recipient: Recipient) -> dict[str, Any]:
        values = message.values(recipient)
        subs = {placeholder(k): v for k, v in values.items()}
        subs.update({html_key(k): str(escape(v)) for k, v in values.items()})
        headers = personal_headers(message, recipient)
        for name in SHARED_HEADERS:
            headers.pop(name, None)
        return {
            "to": [email_object(recipient.email, recipient.name)],
            "headers": headers,
            "substitutions": subs,
            "custom_args": metadata(message, recipient),
        }

    def payload(self, message: IssueMessage, recipients: Sequence[Recipient]) -> dict[str, Any]:
        text, html = self.bodies(message)
        name, address = parseaddr(message.from_header)
        payload: dict[str, Any] = {
            "personalizations": [self.personalization(message, r) for r in recipients],
            "from": email_object(address, name),
            "subject": message.subject,
            "content": [
                {"type": "text/plain", "value": text},
                {"type": "text/html", "value": html},
            ],
            "headers": {
                k: v for k, v in message.headers(recipients[0]).items() if k in SHARED_HEADERS
            },
        }
        if self.settings.reply_to:
            reply_name, reply_addr = parseaddr(self.settings.reply_to)
            payload["reply_to"] = email_object(reply_addr, reply_name)
        return payload

    def send_chunk(
        self, message: IssueMessage, recipients: Sequence[Recipient]
    ) -> list[SendResult]:
        results: dict[int, SendResult] = {}
        pending = list(range(len(recipients)))
        # Each 400 removes at least one named recipient; a few rounds always suffice.
        for _ in range(5):
            batch = [recipients[i] for i in pending]
            try:
                response = self.post(
                    self.url,
                    json=self.payload(message, batch),
                    headers={"Authorization": f"Bearer {self.api_key}"},
                )
                self.raise_for_request(response)
            except TransientTransportError as exc:
                if not results:
                    raise
                results.update(
                    {i: SendResult.retry(recipients[i], str(exc), exc.retry_after) for i in pending}
                )
                return [results[i] for i in range(len(recipients))]
            except OutcomeUnknown as exc:
                if not results:
                    raise
                results.update(zip(pending, uncertain_results(batch, str(exc)), strict=True))
                return [results[i] for i in range(len(recipients))]
            if response.status_code in (200, 202):
                provider_id = response.headers.get("X-Message-Id")
                for i in pending:
                    results[i] = SendResult.sent(recipients[i], provider_id=provider_id)
                return [results[i] for i in range(len(recipients))]
            bad = self._rejected(response, len(batch))
            if not bad:
                raise TransportConfigError(f"sendgrid refused the request: {describe(response)}")
            for pos, reason in bad.items():
                i = pending[pos]
                results[i] = SendResult.failed(
                    recipients[i], f"sendgrid: {reason}"[:500], bounce=True
                )
            pending = [i for pos, i in enumerate(pending) if pos not in bad]
            if not pending:
                return [results[i] for i in range(len(recipients))]
        for i in pending:
            results[i] = SendResult.retry(recipients[i], "sendgrid kept rejecting the batch")
        return [results[i] for i in range(len(recipients))]

    @staticmethod
    def _rejected(response: requests.Response, size: int) -> dict[int, str]:
        """Positions of personalizations a 400 answer names, with the reason."""
        if response.status_code != 400:
            return {}
        try:
            errors = response.json().get("errors", [])
        except (ValueError, AttributeError):
            return {}
        bad: dict[int, str] = {}
        for error in errors if isinstance(errors, list) else []:
            match = _FIELD.match(str((error or {}).get("field") or ""))
            if match and int(match.group(1)) < size:
                bad[int(match.group(1))] = str(error.get("message", "rejected"))
            else:
                return {}  # an error about the request itself: not a recipient's fault
        return bad
