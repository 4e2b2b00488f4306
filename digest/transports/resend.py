"""Resend: ``POST /emails/batch`` with up to 100 complete messages per request.

Resend's batch takes one full message per recipient (no substitutions), so each entry
carries its own body, Message-ID and unsubscribe headers. Every request carries an
``Idempotency-Key`` derived from the issue and the batch's deliveries: a batch re-sent
after a timeout or a 5xx is answered from Resend's record instead of being mailed
twice, which is what makes retrying it safe. ``x-batch-validation: permissive`` makes
Resend send the valid entries and list the rejected ones by index.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import requests

from digest.core.recipient import Recipient
from digest.core.settings import Settings
from digest.core.tokens import stable_digest
from digest.exceptions import TransientTransportError, TransportConfigError
from digest.mail.message import IssueMessage
from digest.transports.base import SendResult
from digest.transports.http import (
    HttpTransport,
    OutcomeUnknown,
    describe,
    metadata,
    parse_retry_after,
    personal_headers,
    secret,
)

logger = logging.getLogger(__name__)


class ResendTransport(HttpTransport):
    name = "resend"
    max_batch = 100
    idempotent = True

    def __init__(self, settings: Settings, session: requests.Session | None = None) -> None:
        super().__init__(settings, session)
        self.api_key = secret(settings.resend_api_key, "DIGEST_RESEND_API_KEY")
        self.url = f"{settings.resend_base_url}/emails/batch"

    def idempotency_key(self, message: IssueMessage, recipients: Sequence[Recipient]) -> str:
        """Same issue and same deliveries → same key, whichever worker retries it."""
        ids = [
            r.delivery_id if r.delivery_id is not None else f"s{r.subscriber_id}"
            for r in recipients
        ]
        digest = stable_digest(self.settings, "resend-batch", message.issue_id, *ids, length=40)
        return f"digest-{message.issue_id}-{digest}"

    def entry(self, message: IssueMessage, recipient: Recipient) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "from": message.from_header,
            "to": [message.to_header(recipient)],
            "subject": message.subject,
            "html": message.html_for(recipient),
            "text": message.text_for(recipient),
            "headers": personal_headers(message, recipient),
            "tags": [{"name": k, "value": v} for k, v in metadata(message, recipient).items()],
        }
        if self.settings.reply_to:
            entry["reply_to"] = [self.settings.reply_to]
        return entry

    def send_chunk(
        self, message: IssueMessage, recipients: Sequence[Recipient]
    ) -> list[SendResult]:
        response = self.post(
            self.url,
            json=[self.entry(message, r) for r in recipients],
            headers={
                "Authorization": f"Bearer {self.api_key}",
                "Idempotency-Key": self.idempotency_key(message, recipients),
                "x-batch-validation": "permissive",
            },
        )
        self.raise_for_request(response)
        if response.status_code == 409:
            if "concurrent" in response.text:
                raise TransientTransportError(
                    "resend: the same batch is still being processed",
                    retry_after=parse_retry_after(response.headers) or 5.0,
                )
            raise TransportConfigError(
                "resend: this batch was sent before with different content (the issue was "
                f"edited mid-send?): {describe(response)}"
            )
        if response.status_code != 200:
            raise TransportConfigError(f"resend refused the batch: {describe(response)}")
        answer = self.json_body(response)
        if not isinstance(answer, dict):
            raise OutcomeUnknown("resend: unexpected answer")
        errors = {
            int(e["index"]): str(e.get("message", "rejected"))
            for e in answer.get("errors") or []
            if isinstance(e, dict) and isinstance(e.get("index"), int)
        }
        ids = iter(d.get("id") for d in answer.get("data") or [] if isinstance(d, dict))
        results = []
        for i, recipient in enumerate(recipients):
            if i in errors:
                results.append(
                    SendResult.failed(recipient, f"resend: {errors[i]}"[:500], bounce=True)
                )
            else:
                # Accepted entries are listed in order, without the rejected ones.
                results.append(SendResult.sent(recipient, provider_id=next(ids, None)))
        return results
