"""The send page runs the checks it promises (issue 24 item 5): the preflight, with the
unsubscribe host's live health probe against a real HTTP server on loopback, and
says for each result what it means for this send."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from console_support import OPERATOR, Console, make_console
from servers import RecordingSMTPServer, free_port
from sqlalchemy.engine import Engine

from digest.core.settings import Settings
from digest.transports.smtp import SMTPTransport


@dataclass
class Health:
    """What the fake unsubscribe host answers on /healthz, and the paths it was asked."""

    status: int = 200
    body: bytes = b'{"status": "ok"}'
    asked: list[str] = field(default_factory=list)


@contextmanager
def health_server(health: Health) -> Iterator[str]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            health.asked.append(self.path)
            self.send_response(health.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(health.body)))
            self.end_headers()
            self.wfile.write(health.body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _console(
    settings: Settings,
    engine: Engine,
    tmp_path: Path,
    smtp: RecordingSMTPServer,
    base_url: str,
    *,
    real: bool = True,
    timeout: float = 3.0,
) -> Console:
    console = make_console(
        settings,
        engine,
        tmp_path,
        base_url=base_url,
        preflight_health_timeout=timeout,
        smtp_host=smtp.host,
        smtp_port=smtp.port,
    )
    if real:  # SMTP to the recording server: a transport that reaches people
        console.app.state.transport_factory = SMTPTransport
    return console


def _send_page(console: Console) -> tuple[str, dict[str, tuple[str, str]]]:
    operator, csrf = console.login(OPERATOR)
    assert operator.post("/console/draft", data={"csrf": csrf}).status_code == 200
    page = operator.get("/console/issues/1/send")
    assert page.status_code == 200, page.text
    rows = re.findall(
        r'<tr data-check="([^"]+)">.*?<span class="state (\w+)">.*?'
        r"<td [^>]*data-meaning>(.*?)</td></tr>",
        page.text,
        re.S,
    )
    return page.text, {name: (status, meaning) for name, status, meaning in rows}


def test_a_healthy_unsubscribe_host_is_probed_and_said_to_work(
    settings: Settings, engine: Engine, tmp_path: Path, smtp_server: RecordingSMTPServer
) -> None:
    health = Health()
    with health_server(health) as url:
        console = _console(settings, engine, tmp_path, smtp_server, url)
        page, checks = _send_page(console)
    assert health.asked == ["/healthz"]
    status, meaning = checks["unsubscribe host"]
    assert status == "ok" and "Readers can unsubscribe" in meaning
    # Every check is listed with its meaning, not only the failing ones.
    assert {"html size", "links", "subject", "preheader", "postal address"} <= set(checks)
    assert checks["links"][0] == "warning" and "Does not block this send." in checks["links"][1]
    assert "Send to 12 subscribers now" in page


def test_an_answer_not_from_this_app_blocks_a_real_send(
    settings: Settings, engine: Engine, tmp_path: Path, smtp_server: RecordingSMTPServer
) -> None:
    health = Health(status=404, body=b"<h1>Not Found</h1>")
    with health_server(health) as url:
        console = _console(settings, engine, tmp_path, smtp_server, url)
        page, checks = _send_page(console)
    assert health.asked == ["/healthz"]
    status, meaning = checks["unsubscribe host"]
    assert status == "error"
    assert "readers could not unsubscribe" in meaning and "Blocks this send" in meaning
    assert "Send to 12 subscribers now" not in page and "nothing can be sent" in page


def test_the_demo_transport_is_probed_too_and_told_it_does_not_block(
    settings: Settings, engine: Engine, tmp_path: Path, smtp_server: RecordingSMTPServer
) -> None:
    health = Health(status=200, body=json.dumps({"hello": "world"}).encode())
    with health_server(health) as url:
        console = _console(settings, engine, tmp_path, smtp_server, url, real=False)
        page, checks = _send_page(console)
    assert health.asked == ["/healthz"]
    status, meaning = checks["unsubscribe host"]
    assert status == "error" and "does not block this one" in meaning
    assert "Send to 12 subscribers now" in page


def test_a_host_that_does_not_answer_is_a_warning_that_says_what_breaks(
    settings: Settings, engine: Engine, tmp_path: Path, smtp_server: RecordingSMTPServer
) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    console = _console(settings, engine, tmp_path, smtp_server, closed)
    page, checks = _send_page(console)
    status, meaning = checks["unsubscribe host"]
    assert status == "warning" and "links fail until `digest serve` answers" in meaning
    assert "Send to 12 subscribers now" in page


def test_a_probe_turned_off_says_so(
    settings: Settings, engine: Engine, tmp_path: Path, smtp_server: RecordingSMTPServer
) -> None:
    health = Health()
    with health_server(health) as url:
        console = _console(settings, engine, tmp_path, smtp_server, url, timeout=0)
        _page, checks = _send_page(console)
    assert health.asked == []
    status, meaning = checks["unsubscribe host"]
    assert status == "warning" and "Nobody checked" in meaning
