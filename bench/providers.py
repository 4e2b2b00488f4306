"""Benchmark: N recipients through each email API's batch format to a local server.

Builds the real sample issue (store → select → render once), then sends it to N
synthetic recipients through the Postmark, SendGrid, Mailgun, Resend and SES
transports, each pointed at a loopback HTTP server that reads every request and
answers like the provider. Reports recipients per second, requests made and bytes
sent per recipient (request bodies as the server received them).

    .venv/bin/python bench/providers.py                     # 100,000 per provider
    .venv/bin/python bench/providers.py -n 20000 -p ses     # one provider, fewer
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from digest.core.recipient import Recipient  # noqa: E402
from digest.core.settings import Settings  # noqa: E402
from digest.issue.freeze import freeze_issue, issue_message  # noqa: E402
from digest.mail.message import IssueMessage  # noqa: E402
from digest.store.engine import make_engine, migrate, session_scope  # noqa: E402
from digest.store.importer import import_comparisons  # noqa: E402
from digest.transports import FACTORIES  # noqa: E402

logger = logging.getLogger(__name__)

PROVIDERS = ("postmark", "sendgrid", "mailgun", "resend", "ses")
#: The providers with a stored-template form, measured both ways in one run.
TEMPLATED = {"postmark": "postmark_templates", "ses": "ses_bulk"}


def _answer(provider: str, path: str, body: bytes) -> tuple[int, dict[str, str], bytes]:
    """A provider-shaped success answer for one request."""
    if path in ("/templates", "/v2/email/templates"):
        return 200, {}, b'{"TemplateId": 1}' if provider == "postmark" else b"{}"
    if path == "/v2/email/outbound-bulk-emails":
        n = len(json.loads(body)["BulkEmailEntries"])
        entries = [{"Status": "SUCCESS", "MessageId": f"ses-{i}"} for i in range(n)]
        return 200, {}, json.dumps({"BulkEmailEntryResults": entries}).encode()
    if provider in ("postmark", "resend"):
        data = json.loads(body)
        n = len(data["Messages"] if isinstance(data, dict) else data)
        if provider == "postmark":
            out: Any = [{"ErrorCode": 0, "Message": "OK", "MessageID": f"pm-{i}"} for i in range(n)]
        else:
            out = {"data": [{"id": f"re-{i}"} for i in range(n)]}
        return 200, {}, json.dumps(out).encode()
    if provider == "sendgrid":
        return 202, {"X-Message-Id": "bench"}, b""
    if provider == "mailgun":
        return 200, {}, b'{"id": "<bench@mg.bench.test>", "message": "Queued. Thank you."}'
    return 200, {}, b'{"MessageId": "ses-bench"}'


class Sink:
    """A loopback server that counts requests and body bytes."""

    def __init__(self, provider: str) -> None:
        self.requests = 0
        self.bytes = 0
        lock = threading.Lock()
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # One send per answer with Nagle off: no 40 ms delayed-ACK stalls per request.
            disable_nagle_algorithm = True
            wbufsize = 64 * 1024

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with lock:
                    sink.requests += 1
                    sink.bytes += len(body)
                status, headers, raw = _answer(provider, self.path, body)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(raw)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(raw)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def sample_issue(workdir: Path) -> tuple[Settings, IssueMessage]:
    settings = Settings(
        database_url=f"sqlite:///{workdir / 'bench.db'}",
        secret_key="bench-secret-0123456789abcdef",
        base_url="https://verdicts.example.com",
        from_address="Verdicts <digest@bench.test>",
    )
    engine = make_engine(settings.database_url)
    migrate(engine)
    items = json.loads((ROOT / "digest" / "sample" / "comparisons.json").read_text())
    for item in items:
        item["published_at"] = "2026-11-12T10:00:00+00:00"
    src = workdir / "comparisons.json"
    src.write_text(json.dumps(items))
    import_comparisons(engine, [src])
    with session_scope(engine) as session:
        issue = freeze_issue(session, "2026-W47", settings)
        assert issue is not None
        message = issue_message(issue, settings)
    engine.dispose()
    return settings, message


def provider_settings(base: Settings, provider: str, url: str) -> Settings:
    extra: dict[str, Any] = {
        "postmark": {"postmark_token": "bench", "postmark_base_url": url},
        "sendgrid": {"sendgrid_api_key": "bench", "sendgrid_base_url": url},
        "mailgun": {
            "mailgun_api_key": "bench",
            "mailgun_domain": "mg.bench.test",
            "mailgun_base_url": url,
        },
        "resend": {"resend_api_key": "bench", "resend_base_url": url},
        "ses": {
            "ses_base_url": url,
            "ses_access_key_id": "AKIDBENCH",
            "ses_secret_access_key": "bench",
            "ses_region": "eu-west-1",
        },
    }[provider]
    return Settings(**(base.model_dump() | {"transport": provider} | extra))


def run(
    provider: str, base: Settings, message: IssueMessage, n: int, template: bool | None = None
) -> dict[str, Any]:
    sink = Sink(provider)
    try:
        settings = provider_settings(base, provider, sink.url)
        if template is not None:
            settings = settings.model_copy(update={TEMPLATED[provider]: template})
        transport = FACTORIES[provider](settings)
        people = [Recipient(i, f"reader{i}@example.com", f"Reader {i}", i) for i in range(1, n + 1)]
        sent = 0
        started = time.perf_counter()
        with transport:
            for start in range(0, n, transport.max_batch):
                results = transport.send_batch(message, people[start : start + transport.max_batch])
                sent += sum(1 for r in results if r.status == "sent")
        elapsed = time.perf_counter() - started
    finally:
        sink.close()
    form = "" if template is None else (" (template)" if template else " (full)")
    return {
        "provider": provider + form,
        "recipients": n,
        "sent": sent,
        "seconds": round(elapsed, 2),
        "recipients_per_s": round(n / elapsed),
        "requests": sink.requests,
        "bytes_per_recipient": round(sink.bytes / n),
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--recipients", type=int, default=100_000)
    parser.add_argument("-p", "--provider", action="append", choices=PROVIDERS)
    parser.add_argument("--json", action="store_true", help="print JSON lines")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR)
    with tempfile.TemporaryDirectory() as tmp:
        base, message = sample_issue(Path(tmp))
        html_kb = len(message.html.encode()) / 1024
        if not args.json:
            print(
                f"issue HTML {html_kb:.1f} KiB, text {len(message.text.encode()) / 1024:.1f} KiB;"
                f" {args.recipients} recipients per provider"
            )
            print(f"{'provider':<20}{'recipients/s':>14}{'requests':>10}{'bytes/recipient':>17}")
        show: Callable[[dict[str, Any]], None] = (
            (lambda r: print(json.dumps(r)))
            if args.json
            else (
                lambda r: print(
                    f"{r['provider']:<20}{r['recipients_per_s']:>14,}"
                    f"{r['requests']:>10,}{r['bytes_per_recipient']:>17,}"
                )
            )
        )
        for provider in args.provider or PROVIDERS:
            if provider in TEMPLATED:
                full = run(provider, base, message, args.recipients, template=False)
                stored = run(provider, base, message, args.recipients, template=True)
                show(full)
                show(stored)
                if not args.json:
                    rate = stored["recipients_per_s"] / full["recipients_per_s"]
                    size = stored["bytes_per_recipient"] / full["bytes_per_recipient"]
                    print(f"{'':<20}template vs full: {rate:.1f}x the rate, {size:.3f}x the bytes")
            else:
                show(run(provider, base, message, args.recipients))


if __name__ == "__main__":
    main()
