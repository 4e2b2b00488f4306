"""Postmark: ``POST /email/batch`` with up to 500 complete messages per request.

Postmark's batch endpoint takes one full message per recipient (its templates would
allow one body, but the issue is already compiled), so each entry carries the
recipient's own body, Message-ID and unsubscribe headers. A ``200`` answer still holds
one result per message: ``ErrorCode`` 0 is accepted, anything else is that message's
failure.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import requests

from digest.config import Settings
from digest.exceptions import TransportConfigError
from digest.message import IssueMessage, Recipient
from digest.transports.base import SendResult
from digest.transports.http import (
    HttpTransport,
    OutcomeUnknown,
    describe,
    metadata,
    personal_headers,
    secret,
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
        self.url = f"{settings.postmark_base_url}/email/batch"

    def entry(self, message: IssueMessage, recipient: Recipient) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "From": message.from_header,
            "To": message.to_header(recipient),
            "Subject": message.subject,
            "HtmlBody": message.html_for(recipient),
            "TextBody": message.text_for(recipient),
            "MessageStream": self.settings.postmark_stream,
            "Headers": [
                {"Name": k, "Value": v} for k, v in personal_headers(message, recipient).items()
            ],
            "Metadata": metadata(message, recipient),
        }
        if self.settings.reply_to:
            entry["ReplyTo"] = self.settings.reply_to
        return entry

    def send_chunk(
        self, message: IssueMessage, recipients: Sequence[Recipient]
    ) -> list[SendResult]:
        body = [self.entry(message, r) for r in recipients]
        response = self.post(
            self.url,
            json=body,
            headers={"X-Postmark-Server-Token": self.token, "Accept": "application/json"},
        )
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
