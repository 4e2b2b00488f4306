"""The bounce mailbox poller: for senders who have a mailbox, not an MTA of their own.

``DIGEST_BOUNCE_MAILBOX`` names it:

- ``imaps://user@host[:port]/FOLDER`` — IMAP over TLS (port 993 by default);
  ``imap://user@host[:port]/FOLDER`` — IMAP with STARTTLS, which must succeed: a
  password never travels in the clear. The certificate is always verified
  (``DIGEST_BOUNCE_MAILBOX_CA_FILE`` adds a private CA); the password comes from
  ``DIGEST_BOUNCE_MAILBOX_PASSWORD``. FOLDER defaults to INBOX.
- anything else is a local Maildir folder (``maildir:`` in front is allowed).

Each poll reads every message in the folder, hands it to
:func:`digest.webhooks.mail_events.take_in` (source ``mailbox``) and then moves it to
``DIGEST_BOUNCE_MAILBOX_DONE`` (created when missing; a Maildir++ subfolder for a
Maildir): processed mail leaves the folder but is never deleted. A message the store
could not take stays where it is for the next poll. ``digest mailbox`` polls once;
``scheduler.py`` polls every ``DIGEST_BOUNCE_MAILBOX_INTERVAL`` seconds.
"""

from __future__ import annotations

import imaplib
import logging
import mailbox
import re
import ssl
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from digest.core.settings import Settings
from digest.exceptions import ConfigError, TransientTransportError
from digest.webhooks.mail_events import Forwarder, Intake, take_in

logger = logging.getLogger(__name__)

_SIZE = re.compile(rb"RFC822\.SIZE (\d+)")


@dataclass
class PollReport:
    read: int = 0
    moved: int = 0
    too_large: int = 0
    left: int = 0  # not taken (the store failed): read again next time
    by_kind: dict[str, int] = field(default_factory=dict)

    def count(self, intake: Intake) -> None:
        kind = intake.reading.kind.value
        self.by_kind[kind] = self.by_kind.get(kind, 0) + 1

    def summary(self) -> str:
        kinds = ", ".join(f"{n} {k}" for k, n in sorted(self.by_kind.items())) or "nothing new"
        extra = f"; {self.too_large} too large (moved unread)" if self.too_large else ""
        left = f"; {self.left} left for the next poll" if self.left else ""
        return f"bounce mailbox: {self.read} read ({kinds}), {self.moved} moved{extra}{left}"


@dataclass(frozen=True)
class ImapBox:
    secure: bool  # implicit TLS (imaps) rather than STARTTLS
    host: str
    port: int
    user: str
    folder: str


def parse_mailbox(value: str) -> ImapBox | Path:
    """``DIGEST_BOUNCE_MAILBOX`` → an IMAP account or a Maildir path."""
    if value.startswith(("imap://", "imaps://")):
        url = urlsplit(value)
        if not url.hostname or not url.username:
            raise ConfigError(
                "DIGEST_BOUNCE_MAILBOX: an IMAP mailbox needs user and host, "
                "e.g. imaps://bounces@mail.example.org/INBOX"
            )
        secure = url.scheme == "imaps"
        folder = unquote(url.path.lstrip("/")) or "INBOX"
        return ImapBox(
            secure,
            url.hostname,
            url.port or (993 if secure else 143),
            unquote(url.username),
            folder,
        )
    return Path(value.removeprefix("maildir:")).expanduser()


Take = Callable[[bytes], Intake]


def poll_once(engine: Engine, settings: Settings, forward: Forwarder | None = None) -> PollReport:
    """One pass over the bounce mailbox (ConfigError when none is configured)."""
    if not settings.bounce_mailbox:
        raise ConfigError("DIGEST_BOUNCE_MAILBOX is not set")
    where = parse_mailbox(settings.bounce_mailbox)

    def take(raw: bytes) -> Intake:
        return take_in(engine, settings, raw, source="mailbox", forward=forward)

    if isinstance(where, Path):
        return poll_maildir(where, settings, take)
    return poll_imap(where, settings, take)


def _taken(take: Take, raw: bytes | None, report: PollReport) -> bool:
    """Hand one message over (None: too large, moved unread); False when the store
    could not take it and it must stay for the next poll."""
    if raw is None:
        report.too_large += 1
        return True
    try:
        report.count(take(raw))
    except SQLAlchemyError as exc:
        logger.error("bounce mailbox: cannot record a message: %s", exc)
        report.left += 1
        return False
    report.read += 1
    return True


def poll_maildir(path: Path, settings: Settings, take: Take) -> PollReport:
    if not (path / "cur").is_dir() or not (path / "new").is_dir():
        raise ConfigError(f"DIGEST_BOUNCE_MAILBOX: {path} is not a Maildir (no cur/ and new/)")
    box = mailbox.Maildir(path, factory=None, create=False)
    done = box.add_folder(settings.bounce_mailbox_done)
    report = PollReport()
    for key in list(box.iterkeys()):
        raw = box.get_bytes(key)
        if not _taken(take, raw if len(raw) <= settings.inbound_max_bytes else None, report):
            continue
        done.add(raw)
        box.remove(key)
        report.moved += 1
    return report


def _context(settings: Settings) -> ssl.SSLContext:
    ca = settings.bounce_mailbox_ca_file
    context = ssl.create_default_context(cafile=str(ca) if ca else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    return context


@contextmanager
def imap_session(account: ImapBox, settings: Settings) -> Iterator[imaplib.IMAP4]:
    """A logged-in IMAP session over verified TLS."""
    context = _context(settings)
    password = settings.bounce_mailbox_password
    if password is None:
        raise ConfigError("DIGEST_BOUNCE_MAILBOX_PASSWORD is not set")
    timeout = settings.smtp_timeout
    try:
        conn: imaplib.IMAP4
        if account.secure:
            conn = imaplib.IMAP4_SSL(
                account.host, account.port, ssl_context=context, timeout=timeout
            )
        else:
            conn = imaplib.IMAP4(account.host, account.port, timeout=timeout)
            conn.starttls(ssl_context=context)
        conn.login(account.user, password.get_secret_value())
        # Servers announce more (MOVE …) once logged in than in their greeting.
        status, caps = conn.capability()
        if status == "OK" and caps and isinstance(caps[-1], bytes):
            conn.capabilities = tuple(caps[-1].decode("ascii", "replace").upper().split())
    except ssl.SSLCertVerificationError as exc:
        raise ConfigError(
            f"TLS certificate of {account.host} failed verification: {exc.verify_message}"
        ) from exc
    except imaplib.IMAP4.error as exc:
        raise ConfigError(f"IMAP {account.host}: {exc}") from exc
    except OSError as exc:
        raise TransientTransportError(
            f"cannot reach IMAP server {account.host}:{account.port}: {exc}"
        ) from exc
    try:
        yield conn
    finally:
        with suppress(imaplib.IMAP4.error, OSError):
            conn.logout()


def _quoted(folder: str) -> str:
    return '"' + folder.replace("\\", "\\\\").replace('"', '\\"') + '"'


def poll_imap(account: ImapBox, settings: Settings, take: Take) -> PollReport:
    report = PollReport()
    with imap_session(account, settings) as conn:
        try:
            _poll_folder(conn, account, settings, take, report)
        except (imaplib.IMAP4.error, OSError) as exc:
            # What was read and moved stays so; the rest waits for the next poll.
            raise TransientTransportError(f"IMAP {account.host}: {exc}") from exc
    return report


def _poll_folder(
    conn: imaplib.IMAP4, account: ImapBox, settings: Settings, take: Take, report: PollReport
) -> None:
    done = _quoted(settings.bounce_mailbox_done)
    conn.create(done)  # "already exists" is a NO: harmless
    status, _ = conn.select(_quoted(account.folder))
    if status != "OK":
        raise ConfigError(f"IMAP {account.host}: no folder {account.folder!r}")
    status, found = conn.uid("SEARCH", "ALL")
    uids = found[0].decode("ascii").split() if status == "OK" and found and found[0] else []
    can_move = "MOVE" in conn.capabilities
    for uid in uids:
        if not _taken(take, _fetch(conn, uid, settings.inbound_max_bytes), report):
            continue
        _move(conn, uid, done, can_move)
        report.moved += 1
    if not can_move:
        conn.expunge()


def _fetch(conn: imaplib.IMAP4, uid: str, limit: int) -> bytes | None:
    """The message's bytes; None when it is larger than ``limit``."""
    status, data = conn.uid("FETCH", uid, "(RFC822.SIZE)")
    size = _SIZE.search(data[0] if status == "OK" and isinstance(data[0], bytes) else b"")
    if size is not None and int(size.group(1)) > limit:
        return None
    status, data = conn.uid("FETCH", uid, "(BODY.PEEK[])")
    for item in data if status == "OK" else []:
        if isinstance(item, tuple) and len(item) == 2:
            return bytes(item[1])
    raise imaplib.IMAP4.error(f"could not fetch message uid {uid}")


def _move(conn: imaplib.IMAP4, uid: str, done: str, can_move: bool) -> None:
    if can_move:
        conn.uid("MOVE", uid, done)
        return
    status, _ = conn.uid("COPY", uid, done)
    if status == "OK":
        conn.uid("STORE", uid, "+FLAGS.SILENT", r"(\Deleted)")
