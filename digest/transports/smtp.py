"""SMTP through stdlib ``smtplib``: one connection reused for a whole batch.

Security ``none`` / ``starttls`` / ``tls`` (implicit TLS); TLS always verifies the
server certificate (``DIGEST_SMTP_CA_FILE`` adds a private CA). Each recipient gets
their own message (own unsubscribe link and Message-ID), so each is one SMTP
transaction on the shared connection.
"""

from __future__ import annotations

import logging
import smtplib
import socket
import ssl
from collections.abc import Sequence
from email.utils import parseaddr
from pathlib import Path

from digest.config import Settings
from digest.exceptions import TransientTransportError, TransportConfigError
from digest.message import IssueMessage, Recipient
from digest.transports.base import SendResult, Transport

logger = logging.getLogger(__name__)

#: Connection-level failures worth a reconnect and a retry later.
CONNECTION_ERRORS = (smtplib.SMTPServerDisconnected, ConnectionError, socket.timeout, OSError)


def _describe(code: int, msg: bytes | str) -> str:
    text = msg.decode("utf-8", "replace") if isinstance(msg, bytes) else msg
    return f"{code} {' '.join(text.split())}"[:500]


def classify(recipient: Recipient, code: int, msg: bytes | str) -> SendResult:
    """A server answer for one recipient → SENT / RETRY (4xx) / FAILED (5xx)."""
    if 200 <= code < 300:
        return SendResult.sent(recipient)
    if 400 <= code < 500:
        return SendResult.retry(recipient, _describe(code, msg))
    return SendResult.failed(recipient, _describe(code, msg))


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


class SMTPTransport(Transport):
    name = "smtp"
    max_batch = 1000

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.envelope_from = settings.bounce_address or parseaddr(settings.from_address)[1]
        self._conn: smtplib.SMTP | None = None

    # ------------------------------------------------------------ connection

    def open(self) -> None:
        if self._conn is None:
            self._conn = self._connect()

    def _connect(self) -> smtplib.SMTP:
        s = self.settings
        try:
            conn: smtplib.SMTP
            if s.smtp_security == "tls":
                conn = smtplib.SMTP_SSL(
                    s.smtp_host, s.smtp_port, timeout=s.smtp_timeout,
                    context=tls_context(s.smtp_ca_file),
                )
            else:
                conn = smtplib.SMTP(s.smtp_host, s.smtp_port, timeout=s.smtp_timeout)
            conn.ehlo()
            if s.smtp_security == "starttls":
                conn.starttls(context=tls_context(s.smtp_ca_file))
                conn.ehlo()
            if s.smtp_username:
                password = s.smtp_password.get_secret_value() if s.smtp_password else ""
                conn.login(s.smtp_username, password)
        except smtplib.SMTPAuthenticationError as exc:
            raise TransportConfigError(
                f"SMTP server rejected the login for {s.smtp_username!r}: "
                f"{_describe(exc.smtp_code, exc.smtp_error)}"
            ) from exc
        except smtplib.SMTPNotSupportedError as exc:
            raise TransportConfigError(f"SMTP server {s.smtp_host}: {exc}") from exc
        except ssl.SSLCertVerificationError as exc:
            raise TransportConfigError(
                f"TLS certificate of {s.smtp_host} failed verification: {exc.verify_message}"
            ) from exc
        except smtplib.SMTPResponseException as exc:
            raise TransientTransportError(
                f"SMTP server {s.smtp_host}:{s.smtp_port} answered "
                f"{_describe(exc.smtp_code, exc.smtp_error)}"
            ) from exc
        except (*CONNECTION_ERRORS, ssl.SSLError) as exc:
            raise TransientTransportError(
                f"cannot connect to SMTP server {s.smtp_host}:{s.smtp_port}: {exc}"
            ) from exc
        logger.debug("connected to %s:%s", s.smtp_host, s.smtp_port)
        return conn

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.quit()
            except (smtplib.SMTPException, OSError):
                self._conn.close()
            self._conn = None

    def _drop(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    # ------------------------------------------------------------ sending

    def send_one(self, raw: bytes, recipient: Recipient) -> SendResult:
        """One SMTP transaction; connection problems raise TransientTransportError."""
        if self._conn is None:
            self._conn = self._connect()
        try:
            refused = self._conn.sendmail(self.envelope_from, [recipient.email], raw)
        except smtplib.SMTPRecipientsRefused as exc:
            code, msg = exc.recipients.get(recipient.email, (550, b"recipient refused"))
            return classify(recipient, code, msg)
        except smtplib.SMTPSenderRefused as exc:
            if 400 <= exc.smtp_code < 500:
                return classify(recipient, exc.smtp_code, exc.smtp_error)
            raise TransportConfigError(
                f"SMTP server refused the sender {self.envelope_from!r}: "
                f"{_describe(exc.smtp_code, exc.smtp_error)}"
            ) from exc
        except smtplib.SMTPDataError as exc:
            self._reset()
            return classify(recipient, exc.smtp_code, exc.smtp_error)
        except smtplib.SMTPResponseException as exc:
            if exc.smtp_code == 421:  # the server is closing the connection
                self._drop()
            else:
                self._reset()
            return classify(recipient, exc.smtp_code, exc.smtp_error)
        except CONNECTION_ERRORS as exc:
            self._drop()
            raise TransientTransportError(f"connection lost: {exc}") from exc
        if recipient.email in refused:
            code, msg = refused[recipient.email]
            return classify(recipient, code, msg)
        return SendResult.sent(recipient)

    def _reset(self) -> None:
        try:
            if self._conn is not None:
                self._conn.rset()
        except (smtplib.SMTPException, OSError):
            self._drop()

    def send_batch(
        self, message: IssueMessage, recipients: Sequence[Recipient]
    ) -> list[SendResult]:
        results: list[SendResult] = []
        for recipient in recipients:
            raw = message.as_bytes(recipient)
            try:
                results.append(self.send_one(raw, recipient))
            except TransientTransportError as exc:
                # One reconnect per recipient; if that fails too the rest of the batch
                # is reported as retry rather than lost.
                try:
                    results.append(self.send_one(raw, recipient))
                except TransientTransportError:
                    results.extend(
                        SendResult.retry(r, str(exc)) for r in recipients[len(results):]
                    )
                    break
        return results
