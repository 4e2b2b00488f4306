"""Writes every message into a Maildir (stdlib ``mailbox``): the embedded default.

Open the folder with any mail client (mutt -f DIR) or ``mailbox.Maildir(DIR)``.
"""

from __future__ import annotations

import logging
import mailbox
from collections.abc import Sequence
from pathlib import Path

from digest.core.recipient import Recipient
from digest.exceptions import TransientTransportError
from digest.mail.message import IssueMessage
from digest.transports.base import SendResult, Transport, message_bytes

logger = logging.getLogger(__name__)


class MaildirTransport(Transport):
    name = "maildir"

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._box: mailbox.Maildir | None = None

    def open(self) -> None:
        if self._box is not None:
            return
        try:
            # mailbox's own create=True races with another thread or process creating
            # the folder at the same moment (two first sign-ups at once): FileExistsError,
            # or a folder without its tmp/ yet. makedirs(exist_ok=True) does not.
            for part in ("tmp", "new", "cur"):
                (self.path / part).mkdir(mode=0o700, parents=True, exist_ok=True)
            self._box = mailbox.Maildir(self.path, create=False)
        except OSError as exc:
            raise TransientTransportError(f"cannot open Maildir {self.path}: {exc}") from exc

    def send_batch(
        self, message: IssueMessage, recipients: Sequence[Recipient]
    ) -> list[SendResult]:
        if self._box is None:
            self.open()
        assert self._box is not None
        results: list[SendResult] = []
        for recipient in recipients:
            if not self.handover.allows(recipient):
                results.append(SendResult.not_handed_over(recipient))
                continue
            raw = message_bytes(message, recipient)
            if isinstance(raw, SendResult):
                results.append(raw)
                continue
            try:
                key = self._box.add(raw)
            except OSError as exc:
                # Disk full, read-only, permissions: the folder, not this recipient.
                results.append(SendResult.unreachable(recipient, f"Maildir write failed: {exc}"))
                continue
            results.append(SendResult.sent(recipient, provider_id=key))
        return results

    def close(self) -> None:
        if self._box is not None:
            self._box.close()
            self._box = None
