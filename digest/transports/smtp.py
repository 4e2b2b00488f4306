"""SMTP through stdlib ``smtplib``: a pool of ``DIGEST_SMTP_CONNECTIONS`` sessions.

A batch is shared out over the pool: each session takes the next recipient, builds
that recipient's bytes and runs one SMTP transaction (each copy has its own
unsubscribe link and Message-ID), building the next message while the server answers
the final dot of the one before. Sessions are reused across batches, replaced after
``DIGEST_SMTP_MAX_PER_CONNECTION`` messages, and reconnected after a ``421`` or a
dropped connection. Every answer is classified per recipient: 2xx sent, 4xx retry,
5xx failed; a refused login or a refused sender (5xx to MAIL FROM) stops the send.

Security ``none`` / ``starttls`` / ``tls`` (implicit TLS); TLS always verifies the
server certificate (``DIGEST_SMTP_CA_FILE`` adds a private CA).

The envelope sender is the bounce address; with VERP on (``DIGEST_VERP_DOMAIN`` or
``DIGEST_BOUNCE_ADDRESS``, see :mod:`digest.mail.verp`) each delivery gets its own,
made beside the message while the server answers the one before.
"""

from __future__ import annotations

import logging
import smtplib
import socket
import ssl
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from email.utils import parseaddr
from pathlib import Path
from typing import NoReturn

from digest.core.mailsafe import check_address, needs_smtputf8
from digest.core.recipient import Recipient
from digest.core.settings import Settings
from digest.exceptions import SendStopped, TransientTransportError, TransportConfigError
from digest.mail.dkim import DkimSigner
from digest.mail.message import IssueMessage
from digest.mail.verp import VerpMinter, verp_config
from digest.transports.base import Pacer, SendResult, Transport, message_data

logger = logging.getLogger(__name__)

#: Connection-level failures worth a reconnect and a retry later.
CONNECTION_ERRORS = (smtplib.SMTPServerDisconnected, ConnectionError, socket.timeout, OSError)


def _describe(code: int, msg: bytes | str) -> str:
    text = msg.decode("utf-8", "replace") if isinstance(msg, bytes) else msg
    return f"{code} {' '.join(text.split())}"[:500]


def is_address_refusal(code: int, msg: bytes | str, *, at_rcpt: bool) -> bool:
    """Whether a 5xx refuses the *address* (and so may suppress the subscriber): any
    5xx to RCPT TO, and after DATA only an RFC 3463 address status (5.1.x). "554 5.7.1
    content rejected" or "552 5.3.4 message too big" say nothing about the mailbox."""
    if not 500 <= code < 600:
        return False
    if at_rcpt:
        return True
    text = msg.decode("utf-8", "replace") if isinstance(msg, bytes) else msg
    return text.lstrip().startswith("5.1.")


def classify(
    recipient: Recipient, code: int, msg: bytes | str, *, at_rcpt: bool = False
) -> SendResult:
    """A server answer for one recipient → SENT / RETRY (4xx) / FAILED (5xx)."""
    if 200 <= code < 300:
        return SendResult.sent(recipient)
    if 400 <= code < 500:
        return SendResult.retry(recipient, _describe(code, msg))
    bounce = is_address_refusal(code, msg, at_rcpt=at_rcpt)
    return SendResult.failed(recipient, _describe(code, msg), bounce=bounce)


def tls_context(ca_file: Path | None) -> ssl.SSLContext:
    context = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


def connect(settings: Settings) -> smtplib.SMTP:
    """One logged-in session; TransientTransportError or TransportConfigError if not."""
    s = settings
    try:
        conn: smtplib.SMTP
        if s.smtp_security == "tls":
            conn = smtplib.SMTP_SSL(
                s.smtp_host,
                s.smtp_port,
                timeout=s.smtp_timeout,
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
    if conn.sock is not None:
        # Commands and replies alternate; do not let Nagle hold back a message's tail.
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    logger.debug("connected to %s:%s", s.smtp_host, s.smtp_port)
    return conn


def _fail_refused(conn: smtplib.SMTP, code: int, error: smtplib.SMTPException) -> NoReturn:
    if code == 421:  # the server is closing the connection
        conn.close()
    else:
        conn.rset()
    raise error


def _pipelined_replies(conn: smtplib.SMTP, count: int) -> list[tuple[int, bytes]]:
    """Read ``count`` replies; a server that said 421 may close before the rest."""
    replies: list[tuple[int, bytes]] = []
    for _ in range(count):
        try:
            replies.append(conn.getreply())
        except smtplib.SMTPServerDisconnected:
            if not any(code == 421 for code, _ in replies):
                raise
            conn.close()
            replies.append((421, b"connection closed by the server"))
    return replies


def start_transaction(
    conn: smtplib.SMTP, sender: str, recipient: str, data: bytes, *, utf8: bool = False
) -> None:
    """``SMTP.sendmail`` for one plain-address recipient up to the message's final dot,
    without its per-message address parsing and regex dot-stuffing (both cost more than
    building the message): ``data`` is the message already dot-stuffed and ended
    (:func:`mimefast.smtp_data`, or the skeleton's
    :meth:`~digest.mail.skeleton.MessageSkeleton.render_data`). The server's answer to the
    message is left to :func:`end_transaction`.

    When the server offers PIPELINING (RFC 2920), MAIL, RCPT and DATA go out in one
    write and their replies are read together: two round trips per message instead of
    four, which is most of a send's time on a fast server. Raises what ``sendmail``
    raises. ``utf8``: a non-ASCII local part, sent with SMTPUTF8 (RFC 6531); the caller
    has checked that the server offers it."""
    options = f" SIZE={len(data)}" if conn.does_esmtp and conn.has_extn("size") else ""
    conn.command_encoding = "ascii"
    if utf8:
        options += " SMTPUTF8"
        if conn.has_extn("8bitmime"):
            options += " BODY=8BITMIME"
        conn.command_encoding = "utf-8"
    mail_cmd, rcpt_cmd = f"MAIL FROM:<{sender}>{options}", f"RCPT TO:<{recipient}>"
    if conn.does_esmtp and conn.has_extn("pipelining"):
        conn.send(f"{mail_cmd}\r\n{rcpt_cmd}\r\nDATA\r\n".encode(conn.command_encoding))
        (mail, mail_resp), (rcpt, rcpt_resp), (ready, ready_resp) = _pipelined_replies(conn, 3)
        if ready == 354 and (mail != 250 or rcpt not in (250, 251)):
            # A server should refuse DATA without a valid recipient; if it did not,
            # end the empty message so the session stays in step.
            conn.send(".\r\n")
            conn.getreply()
        if mail != 250:
            _fail_refused(conn, mail, smtplib.SMTPSenderRefused(mail, mail_resp, sender))
        if rcpt not in (250, 251):
            _fail_refused(conn, rcpt, smtplib.SMTPRecipientsRefused({recipient: (rcpt, rcpt_resp)}))
    else:
        mail, mail_resp = conn.docmd(mail_cmd)
        if mail != 250:
            _fail_refused(conn, mail, smtplib.SMTPSenderRefused(mail, mail_resp, sender))
        rcpt, rcpt_resp = conn.docmd(rcpt_cmd)
        if rcpt not in (250, 251):
            _fail_refused(conn, rcpt, smtplib.SMTPRecipientsRefused({recipient: (rcpt, rcpt_resp)}))
        ready, ready_resp = conn.docmd("DATA")
    if ready != 354:
        raise smtplib.SMTPDataError(ready, ready_resp)
    conn.send(data)


def end_transaction(conn: smtplib.SMTP) -> None:
    """The server's answer to the message :func:`start_transaction` sent."""
    code, resp = conn.getreply()
    if code != 250:
        raise smtplib.SMTPDataError(code, resp)


class Session:
    """One pooled SMTP connection: reused, capped, reconnected when it breaks."""

    def __init__(self, settings: Settings, envelope_from: str) -> None:
        self.settings = settings
        self.envelope_from = envelope_from
        self.conn: smtplib.SMTP | None = None
        self.used = 0
        self.connects = 0

    def begin(
        self, data: bytes, recipient: Recipient, envelope_from: str | None = None
    ) -> SendResult | None:
        """One SMTP transaction of ``data`` (dot-stuffed, ended) up to the message's
        final dot, from ``envelope_from`` (default: the session's bounce address).
        None when the message went
        out and the server's answer is still to be read (:meth:`finish`, before this
        session's next :meth:`begin`); otherwise the recipient's result. Connection
        trouble → a RETRY result and a fresh connection next time; a failed reconnect
        raises TransientTransportError."""
        if self.conn is not None and self.used >= self.settings.smtp_max_per_connection:
            self.close()
        if self.conn is None:
            self.conn = connect(self.settings)
            self.connects += 1
            self.used = 0
        address = check_address(recipient.email)  # the domain in ASCII (IDNA)
        utf8 = needs_smtputf8(address)
        if utf8 and not self.conn.has_extn("smtputf8"):
            # Not the address's fault, and not the batch's: this one recipient fails.
            return SendResult.failed(
                recipient,
                f"{self.settings.smtp_host} does not offer SMTPUTF8, which the non-ASCII "
                "local part of this address needs",
            )
        self.used += 1
        sender = envelope_from or self.envelope_from
        try:
            start_transaction(self.conn, sender, address, data, utf8=utf8)
        except smtplib.SMTPRecipientsRefused as exc:
            code, msg = exc.recipients.get(address, (550, b"recipient refused"))
            return self._answer(recipient, code, msg, at_rcpt=True)
        except smtplib.SMTPSenderRefused as exc:
            if 400 <= exc.smtp_code < 500:
                return self._answer(recipient, exc.smtp_code, exc.smtp_error)
            raise TransportConfigError(
                f"SMTP server refused the sender {sender!r}: "
                f"{_describe(exc.smtp_code, exc.smtp_error)}"
            ) from exc
        except (smtplib.SMTPResponseException, *CONNECTION_ERRORS) as exc:
            return self._broken(recipient, exc)
        return None

    def finish(self, recipient: Recipient) -> SendResult:
        """The server's answer to the message :meth:`begin` sent to ``recipient``."""
        assert self.conn is not None
        try:
            end_transaction(self.conn)
        except (smtplib.SMTPResponseException, *CONNECTION_ERRORS) as exc:
            return self._broken(recipient, exc)
        return SendResult.sent(recipient)

    def _broken(self, recipient: Recipient, exc: Exception) -> SendResult:
        if isinstance(exc, smtplib.SMTPResponseException):  # SMTPDataError and the rest
            return self._answer(recipient, exc.smtp_code, exc.smtp_error)
        self.drop()
        # The server may or may not have taken the message: retry (at-least-once).
        return SendResult.unreachable(recipient, f"connection lost: {exc}"[:500])

    def _answer(
        self, recipient: Recipient, code: int, msg: bytes | str, *, at_rcpt: bool = False
    ) -> SendResult:
        if code == 421:  # the server is closing the connection
            self.drop()
        else:
            self._reset()
        return classify(recipient, code, msg, at_rcpt=at_rcpt)

    def _reset(self) -> None:
        try:
            if self.conn is not None:
                self.conn.rset()
        except (smtplib.SMTPException, OSError):
            self.drop()

    def drop(self) -> None:
        if self.conn is not None:
            try:
                self.conn.close()
            finally:
                self.conn = None

    def close(self) -> None:
        if self.conn is not None:
            try:
                self.conn.quit()
            except (smtplib.SMTPException, OSError):
                self.conn.close()
            self.conn = None


class SMTPTransport(Transport):
    name = "smtp"
    max_batch = 10_000

    paces_each_message = True

    def __init__(self, settings: Settings, pacer: Pacer | None = None) -> None:
        self.settings = settings
        self.verp_config = verp_config(settings)
        self._verp: VerpMinter | None = None
        self.envelope_from = (
            settings.bounce_address
            or (self.verp_config.bare if self.verp_config else None)
            or parseaddr(settings.from_address)[1]
        )
        self.size = settings.smtp_connections
        self.sessions = [Session(settings, self.envelope_from) for _ in range(self.size)]
        #: DKIM-signs every message when DIGEST_DKIM_SELECTOR and the key file are set.
        self.signer = DkimSigner.from_settings(settings)
        #: Shared by every session; the send loop sets it from DIGEST_RATE_LIMIT.
        self.pacer = pacer
        self._pool: ThreadPoolExecutor | None = None

    def envelope_for(self, recipient: Recipient) -> str | None:
        """The VERP envelope sender of a delivery; None: the bounce address."""
        if self.verp_config is None or recipient.delivery_id is None:
            return None
        if self._verp is None:  # the key is derived once per transport
            self._verp = VerpMinter(self.settings, self.verp_config)
        return self._verp.address(recipient.delivery_id, recipient.email)

    @property
    def connects(self) -> int:
        return sum(s.connects for s in self.sessions)

    def open(self) -> None:
        if self.size > 1 and self._pool is None:
            self._pool = ThreadPoolExecutor(self.size, thread_name_prefix="smtp")

    def close(self) -> None:
        for session in self.sessions:
            session.close()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None

    def send_batch(
        self, message: IssueMessage, recipients: Sequence[Recipient]
    ) -> list[SendResult]:
        results: list[SendResult | None] = [None] * len(recipients)
        work = iter(range(len(recipients)))
        lock = threading.Lock()
        stop = threading.Event()
        problems: list[Exception] = []
        if self.size == 1 or len(recipients) == 1:
            self._drain(self.sessions[0], message, recipients, work, lock, stop, results, problems)
        else:
            self.open()
            assert self._pool is not None
            futures = [
                self._pool.submit(
                    self._drain, session, message, recipients, work, lock, stop, results, problems
                )
                for session in self.sessions
            ]
            for future in futures:
                future.result()
        fatal = next((p for p in problems if isinstance(p, TransportConfigError)), None)
        if fatal is not None:
            raise SendStopped(str(fatal), [r for r in results if r is not None]) from fatal
        if not problems:  # the gate closed before every session got to them
            return [r or SendResult.not_handed_over(recipients[i]) for i, r in enumerate(results)]
        reason = str(problems[0])
        return [
            result if result is not None else SendResult.unreachable(recipients[i], reason)
            for i, result in enumerate(results)
        ]

    def _drain(
        self,
        session: Session,
        message: IssueMessage,
        recipients: Sequence[Recipient],
        work: Iterator[int],
        lock: threading.Lock,
        stop: threading.Event,
        results: list[SendResult | None],
        problems: list[Exception],
    ) -> None:
        # The next recipient's message is built while the server answers the one
        # before it, so building is off the session's path: the session only ever
        # waits for the network and the server.
        pending: tuple[int, Recipient] | None = None
        try:
            while not stop.is_set():
                with lock:
                    index = next(work, None)
                if index is None:
                    return
                recipient = recipients[index]
                data = message_data(message, recipient, self.signer)
                sender = self.envelope_for(recipient)
                if pending is not None:
                    results[pending[0]] = session.finish(pending[1])
                    pending = None
                if isinstance(data, SendResult):
                    results[index] = data
                    continue
                paced = self.pacer is None or self.pacer.acquire(sleep=self.handover.sleep)
                if not paced or not self.handover.allows(recipient):
                    # Paused, cancelled, unsubscribed, or the loop cannot record: this
                    # one goes back untouched, and once the gate is shut, whatever no
                    # session got to as well (left None: see send_batch).
                    results[index] = SendResult.not_handed_over(recipient)
                    if not self.handover.is_open():
                        return
                    continue
                try:
                    outcome = session.begin(data, recipient, sender)
                except TransportConfigError as exc:
                    problems.append(exc)
                    stop.set()
                    return
                except TransientTransportError as exc:
                    # Cannot (re)connect: this session stops for this batch; whatever no
                    # session got to comes back as RETRY (unreachable: not the recipient's).
                    results[index] = SendResult.unreachable(recipient, str(exc))
                    problems.append(exc)
                    return
                if outcome is None:
                    pending = (index, recipient)
                else:
                    results[index] = outcome
        finally:
            if pending is not None:
                results[pending[0]] = session.finish(pending[1])
