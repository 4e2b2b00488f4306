"""Hostile request bodies over a raw socket, and a server process's memory.

httpx and TestClient frame a body the polite way and read it into memory first; these
attacks need what an attacker sends: a chunked body of any size, a Content-Length that
lies, a body that stalls. :func:`attack` streams one and stops as soon as the server
answers, so :attr:`Answer.sent` shows how much the server let in before it answered.
``bench/body_attacks.py`` uses the same client against ``digest serve``.
"""

from __future__ import annotations

import os
import re
import select
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from servers import free_port, serve_process

from digest.accounts.service import add_user
from digest.store.engine import make_engine, migrate, session_scope

MiB = 1024 * 1024
SECRET = "body-attack-secret-0123456789abcdef"
OPERATOR, PASSWORD = "op@example.com", "correct horse battery staple"
#: One chunk of filler; a body is this, repeated (the content never matters).
_FILLER = b"x" * (256 * 1024)


@dataclass
class Answer:
    """What came back, and how much of the body had gone out by then."""

    status: int | None  # None: no answer before the client gave up (or a bare reset)
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    sent: int = 0  # body bytes written to the socket before the answer arrived
    seconds: float = 0.0  # from the request head to the answer

    @property
    def closes(self) -> bool:
        return self.headers.get("connection", "").lower() == "close"


@dataclass(frozen=True)
class Attack:
    """One hostile request: ``size`` body bytes after ``prefix`` (a form's first fields)."""

    path: str
    size: int
    content_type: str = "application/json"
    chunked: bool = True
    declared: int | None = None  # a Content-Length header (honest or not)
    prefix: bytes = b""
    cookie: str | None = None
    stall_after: int | None = None  # send this many body bytes, then nothing more
    extra: tuple[tuple[str, str], ...] = ()

    def head(self, host: str) -> bytes:
        lines = [
            f"POST {self.path} HTTP/1.1",
            f"Host: {host}",
            f"Content-Type: {self.content_type}",
        ]
        if self.chunked:
            lines.append("Transfer-Encoding: chunked")
        if self.declared is not None:
            lines.append(f"Content-Length: {self.declared}")
        if self.cookie:
            lines.append(f"Cookie: {self.cookie}")
        lines.extend(f"{name}: {value}" for name, value in self.extra)
        return ("\r\n".join(lines) + "\r\n\r\n").encode()

    def pieces(self) -> Iterator[bytes]:
        """The body as written: the prefix, then filler up to ``size`` (or the stall);
        made as it goes (a 500 MiB attack must not cost the client 500 MiB)."""
        total = self.size if self.stall_after is None else min(self.size, self.stall_after)
        left = total
        while left > 0:
            piece = self.prefix[:left] if left == total and self.prefix else _FILLER[:left]
            left -= len(piece)
            yield b"%x\r\n%s\r\n" % (len(piece), piece) if self.chunked else piece
        if self.chunked and self.stall_after is None:
            yield b"0\r\n\r\n"


def attack(host: str, port: int, hostile: Attack, *, wait: float = 60.0) -> Answer:
    """Send ``hostile`` and read the first answer; give up ``wait`` seconds after the
    last byte went out (a generous bound, not a timing assertion)."""
    answer = Answer(status=None)
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(hostile.head(f"{host}:{port}"))
        started = time.monotonic()
        sock.setblocking(False)
        for piece in hostile.pieces():
            view = memoryview(piece)
            while view:
                readable, writable, _ = select.select([sock], [sock], [], wait)
                if readable or not writable:
                    return _read(sock, answer, started, wait)
                try:
                    written = sock.send(view)
                except (BrokenPipeError, ConnectionResetError):
                    return _read(sock, answer, started, wait)
                view = view[written:]
                answer.sent += written
        return _read(sock, answer, started, wait)


def _read(sock: socket.socket, answer: Answer, started: float, wait: float) -> Answer:
    sock.setblocking(True)
    sock.settimeout(wait)
    data = _receive(sock, b"", lambda got: b"\r\n\r\n" in got)
    answer.seconds = time.monotonic() - started
    head, _, rest = data.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1."):
        return answer
    status_line, *lines = head.decode("latin-1").split("\r\n")
    answer.status = int(status_line.split()[1])
    for line in lines:
        name, _, value = line.partition(":")
        answer.headers[name.strip().lower()] = value.strip()
    length = int(answer.headers.get("content-length", "0"))
    answer.body = _receive(sock, rest, lambda got: len(got) >= length)
    return answer


def _receive(sock: socket.socket, data: bytes, enough: Callable[[bytes], bool]) -> bytes:
    """``data`` and what follows it on ``sock``, until ``enough`` or the end."""
    try:
        while not enough(data):
            got = sock.recv(65536)
            if not got:
                break
            data += got
    except (TimeoutError, ConnectionResetError):
        pass
    return data


def memory(pid: int) -> dict[str, int]:
    """A process's resident size now (VmRSS) and at its peak (VmHWM), in bytes."""
    figures = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        if name in ("VmRSS", "VmHWM"):
            figures[name] = int(value.split()[0]) * 1024
    return figures


def reset_peak(pid: int) -> None:
    """Start a new peak: VmHWM drops to the present VmRSS (Linux ``clear_refs`` 5)."""
    Path(f"/proc/{pid}/clear_refs").write_text("5")


def multipart(boundary: str, fields: dict[str, str], filename: str) -> bytes:
    """A multipart body's text fields and the head of one file part (its content follows)."""
    out = b""
    for name, value in fields.items():
        out += (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
        ).encode()
    out += (
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; '
        f'filename="{filename}"\r\nContent-Type: text/csv\r\n\r\nemail\r\n'
    ).encode()
    return out


@dataclass(frozen=True)
class Served:
    """``digest serve`` on a fresh SQLite store, and an operator logged in to it."""

    proc: subprocess.Popen[bytes]
    host: str
    port: int
    cookie: str  # the operator's console session, as a Cookie header value
    csrf: str

    @property
    def pid(self) -> int:
        return self.proc.pid

    def attack(self, hostile: Attack, *, wait: float = 60.0) -> Answer:
        return attack(self.host, self.port, hostile, wait=wait)


@contextmanager
def served(workdir: Path, **settings: str) -> Iterator[Served]:
    """``digest serve`` as a subprocess with ``settings`` (``DIGEST_`` names) on top of
    a loopback rig; stopped on exit."""
    port = free_port()
    database = f"sqlite:///{workdir / 'digest.db'}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    env.update(
        {
            "DIGEST_DATABASE_URL": database,
            "DIGEST_SECRET_KEY": SECRET,
            "DIGEST_BASE_URL": f"http://127.0.0.1:{port}",
            "DIGEST_OUTBOX": str(workdir / "outbox"),
            **settings,
        }
    )
    engine = make_engine(database)
    migrate(engine)
    with session_scope(engine) as session:
        add_user(session, OPERATOR, "operator", PASSWORD)
    engine.dispose()
    with serve_process(env, workdir, port) as proc:
        cookie, csrf = _log_in(f"http://127.0.0.1:{port}")
        yield Served(proc, "127.0.0.1", port, cookie, csrf)


def _log_in(base: str) -> tuple[str, str]:
    with httpx.Client(base_url=base, follow_redirects=True) as client:
        form = client.get("/console/login")
        answer = client.post(
            "/console/login",
            data={"email": OPERATOR, "password": PASSWORD, "csrf": _csrf(form.text)},
        )
        assert answer.status_code == 200 and answer.url.path == "/console", answer.text
        token = client.cookies.get("digest_console", path="/console")
        assert token
        return f"digest_console={token}", _csrf(answer.text)


def _csrf(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found, page[:2000]
    return found.group(1)
