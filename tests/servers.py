"""Real local servers for tests (loopback only, never the internet).

``recording_smtp()`` starts an aiosmtpd server on a free 127.0.0.1 port that accepts
every message and keeps it; the ``smtp_server`` fixture wraps it. Import the context
manager from here when a test needs a server with its own settings::

    from servers import recording_smtp

    with recording_smtp() as server:
        ... Settings(transport="smtp", smtp_host=server.host, smtp_port=server.port) ...
"""

from __future__ import annotations

import socket
import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (the server binds it a moment later)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class ReceivedMessage:
    """One SMTP transaction as the server saw it."""

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes

    def parsed(self) -> EmailMessage:
        msg = message_from_bytes(self.data, policy=policy.default)
        assert isinstance(msg, EmailMessage)
        return msg


@dataclass
class RecordingHandler:
    """aiosmtpd handler that accepts everything and remembers it."""

    messages: list[ReceivedMessage] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        content = envelope.content
        data = content if isinstance(content, bytes) else str(content).encode("utf-8")
        with self.lock:
            self.messages.append(
                ReceivedMessage(
                    mail_from=str(envelope.mail_from),
                    rcpt_tos=tuple(str(r) for r in envelope.rcpt_tos),
                    data=data,
                )
            )
        return "250 2.0.0 OK: queued"


@dataclass
class RecordingSMTPServer:
    host: str
    port: int
    handler: RecordingHandler

    @property
    def messages(self) -> list[ReceivedMessage]:
        with self.handler.lock:
            return list(self.handler.messages)

    def recipients(self) -> Counter[str]:
        """How many messages each envelope recipient received."""
        return Counter(r for m in self.messages for r in m.rcpt_tos)

    def clear(self) -> None:
        with self.handler.lock:
            self.handler.messages.clear()


@contextmanager
def recording_smtp(host: str = "127.0.0.1") -> Iterator[RecordingSMTPServer]:
    """A running SMTP server that records every message; stopped on exit."""
    handler = RecordingHandler()
    port = free_port(host)
    controller = Controller(handler, hostname=host, port=port, ready_timeout=10)
    controller.start()
    try:
        yield RecordingSMTPServer(host=host, port=port, handler=handler)
    finally:
        controller.stop()


@pytest.fixture
def smtp_server() -> Iterator[RecordingSMTPServer]:
    """An aiosmtpd server on a free loopback port recording every message."""
    with recording_smtp() as server:
        yield server
