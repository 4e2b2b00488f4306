"""Mailgun: ``POST /v3/{domain}/messages`` batch sending with ``recipient-variables``.

One request carries the issue's body once and up to 1000 ``to`` addresses; Mailgun
sends each recipient a separate message, filling ``%recipient.KEY%`` from the
recipient-variables JSON — in the body and in ``h:`` headers, which is how every
recipient gets their own Message-ID and List-Unsubscribe. Mailgun answers one id for
the whole batch; per-recipient outcomes arrive later through the webhook.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import Any

import requests
from markupsafe import escape

from digest.core.recipient import Recipient
from digest.core.settings import Settings
from digest.exceptions import ConfigError, TransientTransportError, TransportConfigError
from digest.mail.message import IssueMessage
from digest.mail.placeholders import PER_RECIPIENT, placeholder
from digest.transports.base import SendResult
from digest.transports.http import (
    HttpTransport,
    OutcomeUnknown,
    describe,
    personal_headers,
    secret,
    uncertain_results,
)

logger = logging.getLogger(__name__)

#: Headers whose value differs per recipient (filled from recipient-variables).
PERSONAL = ("Message-ID", "List-Unsubscribe")


def var(key: str) -> str:
    return f"%recipient.{key}%"


class MailgunTransport(HttpTransport):
    name = "mailgun"
    max_batch = 1000

    def __init__(self, settings: Settings, session: requests.Session | None = None) -> None:
        super().__init__(settings, session)
        self.api_key = secret(settings.mailgun_api_key, "DIGEST_MAILGUN_API_KEY")
        domain = (settings.mailgun_domain or "").strip()
        if not domain or "/" in domain or "%" in domain:
            raise ConfigError(
                "DIGEST_MAILGUN_DOMAIN must be the sending domain, e.g. mg.example.com"
            )
        self.url = f"{settings.mailgun_base_url}/v3/{domain}/messages"

    def fields(
        self, message: IssueMessage, recipients: Sequence[Recipient]
    ) -> list[tuple[str, tuple[None, str]]]:
        text, html = message.text, message.html
        for key in PER_RECIPIENT:
            text = text.replace(placeholder(key), var(key))
            html = html.replace(placeholder(key), var(f"{key}_html"))
        variables: dict[str, dict[str, str]] = {}
        for r in recipients:
            values = message.values(r)
            entry = {k: v for k, v in values.items()}
            entry.update({f"{k}_html": str(escape(v)) for k, v in values.items()})
            headers = personal_headers(message, r)
            entry.update({f"h:{name}": headers[name] for name in PERSONAL})
            entry["delivery"] = str(r.delivery_id or "")
            variables[r.email] = entry
        shared = personal_headers(message, recipients[0])
        out: list[tuple[str, Any]] = [
            ("from", message.from_header),
            ("subject", message.subject),
            ("text", text),
            ("html", html),
        ]
        out += [("to", message.to_header(r)) for r in recipients]
        for name, value in shared.items():
            out.append((f"h:{name}", var(f"h:{name}") if name in PERSONAL else value))
        if self.settings.reply_to:
            out.append(("h:Reply-To", self.settings.reply_to))
        out += [
            ("v:digest_issue", str(message.issue_id)),
            ("v:digest_delivery", var("delivery")),
            ("recipient-variables", json.dumps(variables, ensure_ascii=False)),
        ]
        # (None, value) makes requests send multipart/form-data: bodies go as UTF-8
        # bytes instead of tripling in size through URL encoding.
        return [(k, (None, v)) for k, v in out]

    def send_chunk(
        self, message: IssueMessage, recipients: Sequence[Recipient]
    ) -> list[SendResult]:
        response = self.post(
            self.url, files=self.fields(message, recipients), auth=("api", self.api_key)
        )
        self.raise_for_request(response)
        if response.status_code == 200:
            answer = self.json_body(response)
            provider_id = str(answer.get("id", "")).strip("<>") if isinstance(answer, dict) else ""
            if not provider_id:
                raise OutcomeUnknown(f"mailgun: unexpected answer {describe(response, 80)}")
            return [SendResult.sent(r, provider_id=provider_id) for r in recipients]
        if response.status_code == 404:
            raise TransportConfigError(
                f"mailgun: unknown domain or wrong region ({describe(response)}); check "
                "DIGEST_MAILGUN_DOMAIN and DIGEST_MAILGUN_BASE_URL (https://api.eu.mailgun.net)"
            )
        if response.status_code == 400 and self._about_recipients(response):
            return self._isolate(message, recipients, describe(response))
        raise TransportConfigError(f"mailgun refused the request: {describe(response)}")

    @staticmethod
    def _about_recipients(response: requests.Response) -> bool:
        text = response.text.lower()
        return "'to'" in text or "recipient" in text

    def _isolate(
        self, message: IssueMessage, recipients: Sequence[Recipient], reason: str
    ) -> list[SendResult]:
        """Mailgun names no culprit in a 400 and sends nothing: halve the batch until the
        rejected addresses stand alone; the others go out in the halves that pass."""
        if len(recipients) == 1:
            return [SendResult.failed(recipients[0], f"mailgun: {reason}"[:500], bounce=True)]
        mid = len(recipients) // 2
        return self._part(message, recipients[:mid]) + self._part(message, recipients[mid:])

    def _part(self, message: IssueMessage, part: Sequence[Recipient]) -> list[SendResult]:
        # Once one half went out, a failure of the other must not re-send the first.
        try:
            return self.send_chunk(message, part)
        except TransientTransportError as exc:
            return [SendResult.retry(r, str(exc), exc.retry_after) for r in part]
        except OutcomeUnknown as exc:
            return uncertain_results(part, str(exc))
