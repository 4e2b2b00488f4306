"""Postmark: ``POST /email/batchWithTemplates`` (or ``/email/batch``), up to 500
messages per request.

The issue's compiled HTML and text are stored once as a Postmark template (``POST
/templates``, alias ``digest-<issue>-<content hash>``: every worker finds the same one,
an edit makes a new one); each batch entry then carries only the recipient's values
(greeting name, unsubscribe URL) and their own Message-ID and unsubscribe headers —
about 700 bytes instead of the whole body. A message that cannot be a template (no
per-recipient values, or braces in its content) goes the old way, one full message per
entry (``DIGEST_POSTMARK_TEMPLATES=false`` forces that). A ``200`` answer holds one
result per message: ``ErrorCode`` 0 is accepted, anything else is that message's
failure.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import requests

from digest.core.recipient import Recipient
from digest.core.settings import Settings
from digest.exceptions import TransientTransportError, TransportConfigError
from digest.mail.message import IssueMessage
from digest.transports.base import SendResult
from digest.transports.http import (
    HttpTransport,
    OutcomeUnknown,
    StoredTemplate,
    describe,
    metadata,
    personal_headers,
    secret,
    stored_template,
)

logger = logging.getLogger(__name__)

#: ErrorCodes that describe the account or sender, not the recipient: stop the send.
#: 10 bad token, 400/401 sender signature missing/unconfirmed, 405 out of credits,
#: 412 account pending, 1235 message stream missing.
ACCOUNT_ERRORS = frozenset({10, 400, 401, 405, 412, 1235})
#: ErrorCodes that are about one recipient and final: 300 invalid address,
#: 406 inactive (bounced/complained/unsubscribed at Postmark).
RECIPIENT_ERRORS = frozenset({300, 406})


class PostmarkTransport(HttpTransport):
    name = "postmark"
    max_batch = 500

    def __init__(self, settings: Settings, session: requests.Session | None = None) -> None:
        super().__init__(settings, session)
        self.token = secret(settings.postmark_token, "DIGEST_POSTMARK_TOKEN")
        self.base = settings.postmark_base_url
        self.url = f"{self.base}/email/batch"
        self.headers = {"X-Postmark-Server-Token": self.token, "Accept": "application/json"}
        self._stored: set[str] = set()

    def _common(self, message: IssueMessage, recipient: Recipient) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "From": message.from_header,
            "To": message.to_header(recipient),
            "MessageStream": self.settings.postmark_stream,
            "Headers": [
                {"Name": k, "Value": v} for k, v in personal_headers(message, recipient).items()
            ],
            "Metadata": metadata(message, recipient),
        }
        if self.settings.reply_to:
            entry["ReplyTo"] = self.settings.reply_to
        return entry

    def entry(self, message: IssueMessage, recipient: Recipient) -> dict[str, Any]:
        """One complete message (the form without a stored template)."""
        return {
            **self._common(message, recipient),
            "Subject": message.subject,
            "HtmlBody": message.html_for(recipient),
            "TextBody": message.text_for(recipient),
        }

    def template_entry(
        self, message: IssueMessage, recipient: Recipient, template: StoredTemplate
    ) -> dict[str, Any]:
        """One message that names the stored template and carries only its values."""
        return {
            **self._common(message, recipient),
            "TemplateAlias": template.key,
            "TemplateModel": message.values(recipient),
        }

    def _store(self, template: StoredTemplate) -> None:
        """Create the issue's template once; a 422 means another worker (or an earlier
        run) created the same alias, which is the same content by construction."""
        if template.key in self._stored:
            return
        body = {
            "Name": template.key,
            "Alias": template.key,
            "TemplateType": "Standard",
            "Subject": template.subject,
            "HtmlBody": template.html,
            "TextBody": template.text,
        }
        try:
            response = self.post(f"{self.base}/templates", json=body, headers=self.headers)
        except OutcomeUnknown as exc:
            # Creating a template sends nobody anything: asking again is safe.
            raise TransientTransportError(str(exc)) from exc
        self.raise_for_request(response)
        if response.status_code == 422:
            found = self.session.get(
                f"{self.base}/templates/{template.key}",
                headers=self.headers,
                timeout=self.settings.http_timeout,
            )
            if found.status_code != 200:
                raise TransportConfigError(
                    f"postmark refused the issue's template: {describe(response)}"
                )
        elif response.status_code != 200:
            raise TransportConfigError(
                f"postmark refused the issue's template: {describe(response)}"
            )
        self._stored.add(template.key)

    def send_chunk(
        self, message: IssueMessage, recipients: Sequence[Recipient]
    ) -> list[SendResult]:
        template = stored_template(message) if self.settings.postmark_templates else None
        if template is not None:
            self._store(template)
            url = f"{self.base}/email/batchWithTemplates"
            payload: Any = {
                "Messages": [self.template_entry(message, r, template) for r in recipients]
            }
        else:
            url, payload = self.url, [self.entry(message, r) for r in recipients]
        response = self.post(url, json=payload, headers=self.headers)
        self.raise_for_request(response)
        if response.status_code != 200:
            # 422 for the batch as a whole (bad token, sender, stream): nothing was sent.
            raise TransportConfigError(f"postmark refused the batch: {describe(response)}")
        answers = self.json_body(response)
        if not isinstance(answers, list) or len(answers) != len(recipients):
            raise OutcomeUnknown("postmark: answer does not list one result per message")
        results = [self._result(r, a) for r, a in zip(recipients, answers, strict=True)]
        codes = {int(a.get("ErrorCode", -1)) for a in answers if isinstance(a, dict)}
        if codes and codes <= ACCOUNT_ERRORS:
            raise TransportConfigError(
                f"postmark refused every message: {answers[0].get('Message', '')!s:.200}"
            )
        return results

    @staticmethod
    def _result(recipient: Recipient, answer: Any) -> SendResult:
        if not isinstance(answer, dict):
            return SendResult.sent(recipient)  # accepted or not, it must not be re-sent
        code = int(answer.get("ErrorCode", 0) or 0)
        text = f"postmark {code}: {answer.get('Message', '')}"[:500]
        if code == 0:
            return SendResult.sent(recipient, provider_id=answer.get("MessageID"))
        if code in RECIPIENT_ERRORS:
            return SendResult.failed(recipient, text, bounce=True)
        # Account-level codes mixed with accepted messages, throttling and unknown
        # codes: the message was not accepted, so a later attempt is safe.
        return SendResult.retry(recipient, text)
