"""``make demo`` prints how to open the console and log in: that works as printed
(only the port is a free one instead of 8000)."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from pathlib import Path

import httpx
import pytest
from servers import DIGEST, digest_serve, free_port

pytestmark = pytest.mark.slow


@pytest.mark.skipif(not Path(DIGEST).exists(), reason=f"console script not installed at {DIGEST}")
def test_the_printed_demo_login_works(tmp_path: Path) -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    demo = subprocess.run(
        [DIGEST, "demo"], cwd=tmp_path, env=clean, capture_output=True, text=True, timeout=120
    )
    assert demo.returncode == 0, demo.stderr
    command = re.search(r"^console: (.+?) \S*digest serve, then open (\S+)$", demo.stdout, re.M)
    login = re.search(r"log in as (\S+) with password (\S+) ", demo.stdout)
    assert command and login, demo.stdout
    assert command.group(2) == "http://127.0.0.1:8000/console"
    env = {**clean, **dict(pair.split("=", 1) for pair in shlex.split(command.group(1)))}
    port = free_port()
    with (
        digest_serve(env, tmp_path, port) as base,
        httpx.Client(base_url=base, follow_redirects=True) as browser,
    ):
        form = browser.get("/console/login")
        csrf = re.search(r'name="csrf" value="([^"]+)"', form.text)
        assert csrf
        answer = browser.post(
            "/console/login",
            data={"email": login.group(1), "password": login.group(2), "csrf": csrf.group(1)},
            headers={"Origin": base},
        )
        assert answer.status_code == 200, answer.text
        assert f"{login.group(1)} (editor)" in answer.text
        assert 'href="/console/issues/1"' in answer.text
