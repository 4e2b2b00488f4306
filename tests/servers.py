"""Real local servers for tests (loopback only, never the internet).

``digest_serve()`` runs ``digest serve`` as a subprocess on a given loopback port.
``recording_smtp()`` starts an aiosmtpd server on a free 127.0.0.1 port that accepts
every message and keeps it; the ``smtp_server`` fixture wraps it. Import the context
manager from here when a test needs a server with its own settings::

    from servers import recording_smtp

    with recording_smtp() as server:
        ... Settings(transport="smtp", smtp_host=server.host, smtp_port=server.port) ...
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller

#: The installed console script beside this interpreter.
DIGEST = str(Path(sys.executable).with_name("digest"))


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
def serving(handler: Any, host: str = "127.0.0.1") -> Iterator[int]:
    """An aiosmtpd server with ``handler`` on a free port (yielded); stopped on exit."""
    port = free_port(host)
    controller = Controller(handler, hostname=host, port=port, ready_timeout=10)
    controller.start()
    try:
        yield port
    finally:
        controller.stop()


@contextmanager
def recording_smtp(host: str = "127.0.0.1") -> Iterator[RecordingSMTPServer]:
    """A running SMTP server that records every message; stopped on exit."""
    handler = RecordingHandler()
    with serving(handler, host) as port:
        yield RecordingSMTPServer(host=host, port=port, handler=handler)


@pytest.fixture
def smtp_server() -> Iterator[RecordingSMTPServer]:
    """An aiosmtpd server on a free loopback port recording every message."""
    with recording_smtp() as server:
        yield server


DIGEST = str(Path(sys.executable).with_name("digest"))


def wait_for(condition: Callable[[], object], what: str, limit: float = 60.0) -> object:
    """Poll until ``condition()`` is truthy (a generous limit, not a timing assertion)."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


@contextmanager
def digest_serve(env: dict[str, str], cwd: Path, port: int, *extra: str) -> Iterator[str]:
    """``digest serve`` as a subprocess on ``port`` (``extra``: more options, e.g.
    ``--workers 2``); yields its base URL once /healthz answers, stops it on exit. Its
    output goes to ``cwd/serve.log``."""
    with serve_process(env, cwd, port, *extra):
        yield f"http://127.0.0.1:{port}"


@contextmanager
def serve_process(
    env: dict[str, str], cwd: Path, port: int, *extra: str
) -> Iterator[subprocess.Popen[bytes]]:
    """:func:`digest_serve`, yielding the process (its pid, e.g. to read its memory)."""
    log_path = cwd / "serve.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            [DIGEST, "serve", "--host", "127.0.0.1", "--port", str(port), *extra],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=cwd,
        )
        base = f"http://127.0.0.1:{port}"

        def up() -> bool:
            if proc.poll() is not None:
                raise AssertionError(log_path.read_text())
            try:
                return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        try:
            wait_for(up, "digest serve to answer")
            yield proc
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
