"""A real HTTP server on loopback that plays an email provider's API in tests.

Each test hands it a ``respond(request) -> Reply`` function that checks the request
and answers like the provider would. Every request is kept (method, path, headers,
raw body) so tests can assert the exact wire format. ``Reply(hang=True)`` holds the
answer back until the client has given up (a read timeout) and the test ends.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from sqlalchemy.engine import Engine

from digest.core.recipient import Recipient
from digest.core.settings import Settings
from digest.mail.message import IssueMessage

HTML = (
    "<html><body><p>[[%greeting%]]</p><p>This week's verdicts.</p>"
    '<a href="[[%unsubscribe_url%]]">Unsubscribe</a></body></html>'
)
SAMPLE = Path(__file__).resolve().parent.parent / "digest" / "sample" / "comparisons.json"
TEXT = "[[%greeting%]]\n\nThis week's verdicts.\n\nUnsubscribe: [[%unsubscribe_url%]]\n"


@dataclass
class Captured:
    method: str
    path: str
    headers: Message
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    def form(self) -> list[tuple[str, str]]:
        """The fields of a multipart/form-data body, in order (repeated names kept)."""
        head = f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode()
        parsed = message_from_bytes(head + self.body, policy=policy.HTTP)
        fields = []
        for part in parsed.iter_parts():  # type: ignore[attr-defined]
            name = part.get_param("name", header="content-disposition")
            payload = part.get_payload(decode=True) or b""
            fields.append((str(name), payload.decode("utf-8")))
        return fields


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    hang: bool = False


Responder = Callable[[Captured], Reply]


class ProviderServer:
    def __init__(self, respond: Responder) -> None:
        self.respond = respond
        self.requests: list[Captured] = []
        self.release = threading.Event()
        owner = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # One send per answer with Nagle off: no 40 ms delayed-ACK stalls per request.
            disable_nagle_algorithm = True
            wbufsize = 64 * 1024

            def do_GET(self) -> None:
                self.do_POST("GET")

            def do_POST(self, method: str = "POST") -> None:
                length = int(self.headers.get("Content-Length") or 0)
                captured = Captured(method, self.path, self.headers, self.rfile.read(length))
                owner.requests.append(captured)
                reply = owner.respond(captured)
                if reply.hang:
                    owner.release.wait(30)
                    self.close_connection = True
                    return
                raw = (
                    reply.body
                    if isinstance(reply.body, bytes)
                    else (b"" if reply.body is None else json.dumps(reply.body).encode())
                )
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host!s}:{port}"

    def __enter__(self) -> ProviderServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


def configure(settings: Settings, **changes: Any) -> Settings:
    """The test settings with changes, validated like the environment would be."""
    return Settings(**(settings.model_dump() | changes))


def issue_message(settings: Settings, issue_id: int = 7) -> IssueMessage:
    return IssueMessage(
        issue_id=issue_id,
        week="2026-W47",
        subject="This week: A vs B",
        html=HTML,
        text=TEXT,
        settings=settings,
    )


def recipients(n: int, start: int = 1) -> list[Recipient]:
    names = ["Ann&Bob <Team>", "", 'Zoë, "Q"']
    return [
        Recipient(
            subscriber_id=i,
            email=f"reader{i}@example.com",
            name=names[i % len(names)],
            delivery_id=1000 + i,
        )
        for i in range(start, start + n)
    ]


def closed_port_url() -> str:
    """A loopback URL nobody listens on (connection refused: nothing is ever sent)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def seed_store(
    engine: Engine,
    tmp_path: Path,
    emails: list[str],
    published_at: str = "2026-11-12T10:00:00+00:00",
    suffix: str = "",
) -> None:
    """The sample comparisons (by default in week 2026-W47's window) and subscribers."""
    from digest.store.engine import session_scope
    from digest.store.importer import import_comparisons
    from subscribers.service import add_subscriber

    items = json.loads(SAMPLE.read_text())
    for item in items:
        item["published_at"] = published_at
        item["slug"] += suffix
        item.pop("url", None)
    src = tmp_path / f"comparisons{suffix}.json"
    src.write_text(json.dumps(items))
    import_comparisons(engine, [src])
    with session_scope(engine) as session:
        for email in emails:
            add_subscriber(session, email, "Reader")
