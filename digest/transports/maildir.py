"""Writes every message into a Maildir (stdlib ``mailbox``): the embedded default.

Open the folder with any mail client (mutt -f DIR) or ``mailbox.Maildir(DIR)``.
"""

from __future__ import annotations

import logging
import mailbox
from collections.abc import Sequence
from pathlib import Path

from digest.exceptions import TransientTransportError
from digest.message import IssueMessage, Recipient
from digest.transports.base import SendResult, Transport

logger = logging.getLogger(__name__)


class MaildirTransport(Transport):
    name = "maildir"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._box: mailbox.Maildir | None = None

    def open(self) -> None:
        try:
            self._box = mailbox.Maildir(self.path, create=True)
        except OSError as exc:
            raise TransientTransportError(f"cannot open Maildir {self.path}: {exc}") from exc

    def send_batch(
        self, message: IssueMessage, recipients: Sequence[Recipient]
    ) -> list[SendResult]:
        if self._box is None:
            self.open()
        assert self._box is not None
        results = []
        for recipient in recipients:
            try:
                key = self._box.add(message.as_bytes(recipient))
            except OSError as exc:
                results.append(SendResult.retry(recipient, f"Maildir write failed: {exc}"))
                continue
            results.append(SendResult.sent(recipient, provider_id=key))
        return results

    def close(self) -> None:
        if self._box is not None:
            self._box.close()
            self._box = None
