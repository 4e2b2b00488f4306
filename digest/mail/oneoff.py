"""One email to one person (a confirmation, a notice to editors): final HTML and text,
a fresh Message-ID, the stdlib message path.

Built on :class:`digest.mail.message.IssueMessage` so it shares the header handling (and
its defences) of every other email the digest sends.
"""

from __future__ import annotations

import logging
import secrets

from digest.core.recipient import Recipient
from digest.core.settings import Settings
from digest.mail.message import IssueMessage

logger = logging.getLogger(__name__)


class OneOffMessage(IssueMessage):
    """An email whose ``html`` and ``text`` are final: nothing is substituted per
    recipient, so a transport that substitutes itself (the API providers) has nothing
    left to do and cannot leave a placeholder behind."""

    kind = "notice"

    def __init__(
        self, settings: Settings, *, subject: str, html: str, text: str, test: bool = False
    ) -> None:
        super().__init__(
            issue_id=0,
            week=self.kind,
            subject=subject,
            html=html,
            text=text,
            settings=settings,
            test=test,
        )
        self._message_id = f"<{self.kind}.{secrets.token_hex(12)}@{self.domain}>"
        self.boundary = f"=_{self.kind}_" + secrets.token_hex(12)

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
        }
        if self.reply_to:
            headers["Reply-To"] = self.reply_to
        return headers

    def as_bytes(self, recipient: Recipient) -> bytes:
        # One email for one person: the stdlib path (IssueMessage.build with the
        # headers above), not the per-issue skeleton.
        return self.as_bytes_slow(recipient)
