"""End to end over real sockets: ``digest serve`` on a free loopback port, SMTP to an
aiosmtpd server, ``digest send`` as a subprocess.

subscribe → the confirmation arrives → its link activates → the digest carries
working unsubscribe headers → the RFC 8058 POST exactly as Gmail sends it
unsubscribes → the next issue skips that address.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from servers import DIGEST, RecordingSMTPServer, digest_serve, free_port, recording_smtp, wait_for
from subscriber_support import import_sample, parse

from digest.core.settings import Settings
from digest.store.engine import make_engine, migrate, session_scope
from subscribers.service import add_subscriber, list_subscribers

pytestmark = pytest.mark.slow

SECRET = "e2e-secret-key-0123456789abcdef"
WEEK, NEXT_WEEK = "2026-W47", "2026-W48"


def _env(tmp_path: Path, smtp: RecordingSMTPServer, port: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    env.update(
        {
            "DIGEST_DATABASE_URL": f"sqlite:///{tmp_path / 'digest.db'}",
            "DIGEST_TRANSPORT": "smtp",
            "DIGEST_SMTP_HOST": smtp.host,
            "DIGEST_SMTP_PORT": str(smtp.port),
            "DIGEST_SECRET_KEY": SECRET,
            "DIGEST_BASE_URL": f"http://127.0.0.1:{port}",
            "DIGEST_FROM": "Weekly AI Tool Verdicts <digest@verdicts.test>",
            "DIGEST_TIMEZONE": "UTC",
            "DIGEST_OUTBOX": str(tmp_path / "outbox"),
            # A loopback rig: http links and a .test sender pass preflight with a warning
            # (the preflight's health probe does reach the `digest serve` started here).
            "DIGEST_ALLOW_UNSAFE_SEND": "true",
        }
    )
    return env


@pytest.fixture
def server(tmp_path: Path) -> Iterator[tuple[str, RecordingSMTPServer, dict[str, str]]]:
    with recording_smtp() as smtp:
        port = free_port()
        env = _env(tmp_path, smtp, port)
        settings = Settings(database_url=env["DIGEST_DATABASE_URL"], secret_key=SECRET)
        engine = make_engine(settings.database_url)
        migrate(engine)
        import_sample(engine, settings, tmp_path, WEEK)
        engine.dispose()
        with digest_serve(env, tmp_path, port) as base:
            yield base, smtp, env


def _cli(env: dict[str, str], *args: str) -> str:
    done = subprocess.run(
        [DIGEST, *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done.stdout


def _to(smtp: RecordingSMTPServer, address: str) -> list[bytes]:
    return [m.data for m in smtp.messages if address in m.rcpt_tos]


def test_subscribe_confirm_send_one_click_unsubscribe_next_send_skips(
    server: tuple[str, RecordingSMTPServer, dict[str, str]], tmp_path: Path
) -> None:
    base, smtp, env = server
    reader, other = "reader@example.com", "other@example.com"

    with httpx.Client(base_url=base, follow_redirects=False) as browser:
        r = browser.post("/subscribe", data={"email": reader, "name": "Rea <b>der</b>"})
        assert r.status_code == 200 and "Check your inbox" in r.text
        confirmation = wait_for(lambda: _to(smtp, reader), "the confirmation email")
        assert isinstance(confirmation, list) and len(confirmation) == 1
        text = parse(confirmation[0]).get_body(("plain",)).get_content()  # type: ignore[union-attr]
        found = re.search(rf"{re.escape(base)}/confirm/[A-Za-z0-9_-]+", text)
        assert found, text
        r = browser.get(found.group(0))
        assert r.status_code == 200 and "Confirm</button>" in r.text  # a GET confirms nobody
        r = browser.post(found.group(0))  # the page's one button
        assert r.status_code == 200 and "you're subscribed" in r.text
        # Then the welcome: what to expect, when, where to choose topics (issue 26).
        welcome = wait_for(lambda: _to(smtp, reader)[1:], "the welcome email")
        assert isinstance(welcome, list) and len(welcome) == 1
        hello = parse(welcome[0])
        assert str(hello["Subject"]).startswith("Welcome to ")
        body = hello.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert "The next issue goes out on Monday" in body
        assert re.search(rf"{re.escape(base)}/preferences/[A-Za-z0-9_-]+", body)
        assert hello["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    engine = make_engine(env["DIGEST_DATABASE_URL"])
    with session_scope(engine) as session:
        add_subscriber(session, other, "Other")

    _cli(env, "send", "--week", WEEK, "--yes")
    digests = _to(smtp, reader)[2:]
    assert len(digests) == 1 and len(_to(smtp, other)) == 1
    msg = parse(digests[0])
    assert msg["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    urls = re.findall(r"<([^>]+)>", str(msg["List-Unsubscribe"]))
    [http_url] = [u for u in urls if u.startswith(base + "/unsubscribe/")]
    assert any(u.startswith("mailto:") for u in urls)

    # Exactly what Gmail sends: a fresh connection, no cookies, no auth.
    r = httpx.post(
        http_url,
        content=b"List-Unsubscribe=One-Click",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        follow_redirects=False,
    )
    assert r.status_code == 200 and "location" not in r.headers
    # A counted link: to the comparison page, and the log cannot tie it to an address.
    click = re.search(rf"{re.escape(base)}/r/[A-Za-z0-9_-]+", msg.as_string())
    assert click is not None
    clicked = httpx.get(click.group(0), follow_redirects=False)
    assert clicked.status_code == 302 and "/compare/" in clicked.headers["location"]

    with session_scope(engine) as session:
        state = {s.email: s.status for s in list_subscribers(session)}
    engine.dispose()
    assert state == {reader: "unsubscribed", other: "active"}

    # The next week's comparisons arrive after the first issue went out.
    engine = make_engine(env["DIGEST_DATABASE_URL"])
    import_sample(engine, Settings(database_url=env["DIGEST_DATABASE_URL"]), tmp_path, NEXT_WEEK)
    engine.dispose()
    before = len(smtp.messages)
    # A second issue in the same real week: the operator confirms it with --again.
    _cli(env, "send", "--week", NEXT_WEEK, "--yes", "--again")
    second = smtp.messages[before:]
    assert [m.rcpt_tos for m in second] == [(other,)]

    shown = json.loads(_cli(env, "subscribers", "show", reader, "--json"))
    assert [e["action"] for e in shown["events"]] == ["subscribe", "confirm", "unsubscribe"]
    assert {e["ip"] for e in shown["events"]} == {"127.0.0.1"}
    assert shown["confirmed_at"] and shown["events"][1]["source"] == "confirmation link"

    # The access log shows the requests but never a token (issue 13).
    log = (tmp_path / "serve.log").read_text()
    assert "/confirm/[token]" in log and "/unsubscribe/[token]" in log and "/r/[token]" in log
    assert click.group(0).rsplit("/", 1)[1] not in log
    assert found.group(0).rsplit("/", 1)[1] not in log
    assert http_url.rsplit("/", 1)[1] not in log
