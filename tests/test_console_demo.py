"""``make demo`` prints how to open the console and log in: that works as printed (only
the port is a free one instead of 8000), over the demo's own database, outbox and
secret. Issue #1 went out with part of the samples; the newer ones wait, so Freeze
works at once; sign-up confirmations, test copies and sends from that console land in
the demo's outbox, with links to the port it serves."""

from __future__ import annotations

import mailbox
import os
import re
import shlex
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path

import httpx
import pytest
from servers import DIGEST, free_port, wait_for
from store_support import sample_emails

pytestmark = pytest.mark.slow

CONSOLE = re.compile(r"^console: (.+? serve --port 8000), then open (\S+)$", re.M)
LOGIN = re.compile(r"as (\S+) with password (\S+) \(a demo (editor|operator)")


def _clean() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}


@contextmanager
def _printed_server(command: str, cwd: Path, port: int) -> Iterator[str]:
    """The printed command, run by a shell as a user would, on ``port``."""
    log = (cwd / "serve.log").open("wb")
    # Its own process group: the shell and the server it starts stop together.
    proc = subprocess.Popen(
        ["/bin/sh", "-c", command],
        cwd=cwd,
        env=_clean(),
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError((cwd / "serve.log").read_text())
        try:
            return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_for(up, "the printed console command to serve")
        yield base
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        log.close()


def _messages(outbox: Path) -> list[EmailMessage]:
    box = mailbox.Maildir(outbox, create=False)
    found = []
    for key in box.iterkeys():
        msg = message_from_bytes(box.get_bytes(key), policy=policy.default)
        assert isinstance(msg, EmailMessage)
        found.append(msg)
    return found


def _body(msg: EmailMessage) -> str:
    part = msg.get_body(("plain",))
    assert part is not None
    return str(part.get_content())


def _log_in(client: httpx.Client, base: str, email: str, password: str) -> str:
    form = client.get("/console/login")
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
    assert csrf
    answer = client.post(
        "/console/login",
        data={"email": email, "password": password, "csrf": csrf.group(1)},
        headers={"Origin": base},
    )
    assert answer.status_code == 200, answer.text
    token = re.search(r'name="csrf" value="([^"]+)"', answer.text)
    assert token
    return token.group(1)


@pytest.mark.skipif(not Path(DIGEST).exists(), reason=f"console script not installed at {DIGEST}")
def test_the_printed_console_command_serves_the_demo_and_its_mail_lands_in_the_demo_outbox(
    tmp_path: Path,
) -> None:
    demo = subprocess.run(
        [DIGEST, "demo"], cwd=tmp_path, env=_clean(), capture_output=True, text=True, timeout=120
    )
    assert demo.returncode == 0, demo.stderr
    command, url = CONSOLE.search(demo.stdout).groups()  # type: ignore[union-attr]
    assert url == "http://127.0.0.1:8000/console"
    logins = {role: (email, password) for email, password, role in LOGIN.findall(demo.stdout)}
    assert set(logins) == {"editor", "operator"}, demo.stdout
    outbox = tmp_path / "demo-data" / "outbox"
    assert f"lands in {shlex.quote('demo-data/outbox')}" in demo.stdout
    sent_by_demo = len(_messages(outbox))
    assert sent_by_demo == len(sample_emails())

    port = free_port()
    served = command.replace("--port 8000", f"--port {port}")
    with (
        _printed_server(served, tmp_path, port) as base,
        httpx.Client(base_url=base, follow_redirects=True, headers={"Origin": base}) as editor,
        httpx.Client(base_url=base, follow_redirects=True, headers={"Origin": base}) as operator,
    ):
        # A reader signs up: the confirmation is in the demo's outbox, linking here.
        answer = httpx.post(f"{base}/subscribe", json={"email": "newcomer@example.com"})
        assert answer.status_code == 202, answer.text

        def confirmation() -> EmailMessage | None:
            for msg in _messages(outbox):
                if "newcomer@example.com" in str(msg["To"]):
                    return msg
            return None

        mail = wait_for(confirmation, "the confirmation in demo-data/outbox")
        assert isinstance(mail, EmailMessage)
        link = re.search(r"(http://\S+)/confirm/[A-Za-z0-9_-]+", _body(mail))
        assert link and link.group(1) == base, _body(mail)

        # The editor finds issue #1 sent and Freeze works: issue #2 of the newer samples.
        csrf = _log_in(editor, base, *logins["editor"])
        home = editor.get("/console")
        assert 'href="/console/issues/1"' in home.text and "Freeze the next issue" in home.text
        listed = editor.get("/console/comparisons").text
        assert "3 comparisons no issue featured yet" in listed
        draft = editor.post("/console/draft", data={"csrf": csrf})
        assert draft.status_code == 200 and draft.url.path == "/console/issues/2", draft.text
        frozen = editor.get("/console/issues/2/text").text
        assert "Read the" in frozen

        # A test copy lands in the same outbox, its links at the served port.
        tested = editor.post("/console/issues/2/test", data={"csrf": csrf, "to": "me@example.com"})
        assert tested.status_code == 200, tested.text
        (test_copy,) = [m for m in _messages(outbox) if "me@example.com" in str(m["To"])]
        assert str(test_copy["Subject"]).startswith("[TEST]")
        text = _body(test_copy)
        links = re.findall(r"https?://[^\s>\]]+", text)
        ours = [u for u in links if "/unsubscribe/" in u or "/archive/" in u or "/r/" in u]
        assert ours and all(u.startswith(f"{base}/") for u in ours), ours
        assert "localhost:8000" not in text and "127.0.0.1:8000" not in text

        # The operator sends issue #2 (a second issue this week, confirmed): in the outbox.
        before = {str(m["Message-ID"]) for m in _messages(outbox)}
        token = _log_in(operator, base, *logins["operator"])
        started = operator.post("/console/issues/2/send", data={"csrf": token, "again": "yes"})
        assert started.status_code == 200, started.text

        def issue_two() -> list[EmailMessage]:
            fresh = [m for m in _messages(outbox) if str(m["Message-ID"]) not in before]
            return fresh if len(fresh) >= len(sample_emails()) else []

        sent = wait_for(issue_two, "issue #2 in demo-data/outbox")
        assert isinstance(sent, list) and len(sent) == len(sample_emails())
        for msg in sent:
            assert str(msg["List-Unsubscribe"]).startswith(f"<{base}/unsubscribe/"), msg


@pytest.mark.skipif(not Path(DIGEST).exists(), reason=f"console script not installed at {DIGEST}")
@pytest.mark.parametrize("workers", [1, 2])
def test_without_a_base_url_serve_links_to_the_port_it_serves(tmp_path: Path, workers: int) -> None:
    port = free_port()
    command = (
        "DIGEST_DEMO=true DIGEST_DATABASE_URL=sqlite:///site.db DIGEST_OUTBOX=mail "
        f"{shlex.quote(DIGEST)} serve --port {port} --workers {workers}"
    )
    with _printed_server(command, tmp_path, port) as base:
        answer = httpx.post(f"{base}/subscribe", json={"email": "reader@example.com"})
        assert answer.status_code == 202, answer.text
        outbox = tmp_path / "mail"
        mail = wait_for(lambda: outbox.is_dir() and _messages(outbox), "the confirmation")
        assert isinstance(mail, list)
        link = re.search(r"(http://\S+)/confirm/[A-Za-z0-9_-]+", _body(mail[0]))
        assert link and link.group(1) == f"http://127.0.0.1:{port}", _body(mail[0])
