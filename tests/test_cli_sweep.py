"""No traceback reaches a person: every ``digest`` command, run as its own help's example
in an environment a new user really meets, ends with one clear line and a documented
exit status.

The commands come from Typer's own command tree (:data:`test_cli.COMMANDS`), so a new
command is swept without editing this file. Each runs as a real process (the console
script in the virtual environment), because the guarantee lives in ``main()``, around
everything Typer and Click do.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from test_cli import COMMANDS

DIGEST = Path(sys.executable).with_name("digest")
#: Every status the CLI documents (README "Exit status"): done, error, usage, stopped
#: short, a bug (said in one line), interrupted.
DOCUMENTED_EXIT = {0, 1, 2, 3, 70, 130}
#: A command still running after this long has started without a traceback (``serve``,
#: ``worker``, ``inbound`` on a sound setup run until stopped): it is stopped and its
#: output so far is checked. No list of such commands to keep up to date.
RUNNING_AFTER = 15.0
SECRET = "sweep-secret-0123456789abcdef"
EXCEPTION_LINE = re.compile(r"^\s*[A-Za-z_][\w.]*(Error|Exception|Exit)\b")


def example_args(command: Any) -> list[str]:
    """The arguments of the command's own help example, without the leading ``digest``,
    environment assignments, pipes and redirections."""
    example = (command.help or "").strip().split("\n\n")[-1].removeprefix("Example: ")
    words = shlex.split(" ".join(example.split()))
    start = words.index("digest") + 1
    args: list[str] = []
    for word in words[start:]:
        if word in {"|", ">", "&&", ";"}:
            break
        args.append(word)
    return args


@dataclass(frozen=True)
class Place:
    """An environment a person may run ``digest`` in: what its working folder holds
    (copied afresh for every command, so no command sees another's doing) and its
    DIGEST_* variables."""

    name: str
    template: Path
    env: dict[str, str]
    read_only: bool = False


def _env(**digest: str) -> dict[str, str]:
    # Nothing of the outer environment: no DIGEST_*, no virtualenv on PATH. The DNS
    # server is a closed loopback port, so `digest doctor` never leaves the machine.
    return {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "DIGEST_DNS_SERVER": "127.0.0.1:9"} | {
        f"DIGEST_{key.upper()}": value for key, value in digest.items()
    }


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory) -> list[Place]:
    root = tmp_path_factory.mktemp("sweep")
    bare = root / "bare"
    bare.mkdir()
    # A store the demo made, then used without the secret only the demo can do without.
    demo = root / "demo"
    demo.mkdir()
    subprocess.run(
        [str(DIGEST), "demo"],
        cwd=demo,
        env=_env() | {"HOME": str(demo)},
        check=True,
        capture_output=True,
    )
    # The same store after a newer digest migrated it past what this one knows.
    newer = root / "newer"
    shutil.copytree(demo, newer)
    with sqlite3.connect(newer / "demo-data" / "digest.db") as conn:
        conn.execute("UPDATE alembic_version SET version_num = 'f0f0f0f0f0f0'")
    store = "sqlite:///demo-data/digest.db"
    return [
        Place("bare", bare, _env()),
        Place("no-secret", demo, _env(database_url=store)),
        Place("newer-schema", newer, _env(database_url=store, secret_key=SECRET)),
        Place("read-only", bare, _env(secret_key=SECRET), read_only=True),
    ]


def run(
    place: Place, args: list[str], workdir: Path, running_after: float = RUNNING_AFTER
) -> tuple[int | None, str]:
    """Run ``digest ARGS`` in a fresh copy of the place; ``None`` for a command that
    was still running after ``running_after`` seconds, when it was stopped."""
    shutil.copytree(place.template, workdir)
    # Root writes through any mode bits: for root the read-only folder is immutable.
    immutable = place.read_only and os.geteuid() == 0
    if place.read_only:
        workdir.chmod(0o555)
    if immutable:
        subprocess.run(["chattr", "+i", str(workdir)], check=True)
    try:
        with subprocess.Popen(
            [str(DIGEST), *args],
            cwd=workdir,
            env=place.env | {"HOME": str(workdir)},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        ) as proc:
            try:
                return proc.wait(timeout=running_after), proc.communicate()[0]
            except subprocess.TimeoutExpired:
                proc.terminate()
                try:
                    return None, proc.communicate(timeout=30)[0]
                except subprocess.TimeoutExpired:
                    proc.kill()
                    return None, proc.communicate()[0]
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(workdir)], check=False)


def _runnable() -> Iterator[tuple[str, list[str]]]:
    for path, command in COMMANDS:
        if hasattr(command, "commands"):  # a group: its commands are swept themselves
            continue
        yield " ".join(path), example_args(command)


SWEEP = list(_runnable())
Outcomes = dict[tuple[str, str], tuple[int | None, str]]


@pytest.fixture(scope="module")
def outcomes(places: list[Place], tmp_path_factory: pytest.TempPathFactory) -> Outcomes:
    runs = tmp_path_factory.mktemp("runs")
    jobs = [(place, name, args) for place in places for name, args in SWEEP]
    # Independent processes in their own folders: three at a time keeps two cores busy.
    with ThreadPoolExecutor(max_workers=3) as pool:
        results = pool.map(
            lambda job: run(job[1][0], job[1][2], runs / f"{job[0]}"), enumerate(jobs)
        )
        return {
            (place.name, name): result
            for (place, name, _), result in zip(jobs, results, strict=True)
        }


def test_the_sweep_covers_every_command() -> None:
    names = {name for name, _ in SWEEP}
    assert {"send", "serve", "worker", "demo", "subscribers add", "users add"} <= names
    for name, args in SWEEP:
        assert args[: len(name.split())] == name.split(), (name, args)


@pytest.mark.slow
@pytest.mark.timeout(900)  # the first test runs the whole sweep (the module fixture)
@pytest.mark.parametrize("place", ["bare", "no-secret", "newer-schema", "read-only"])
@pytest.mark.parametrize("name", [name for name, _ in SWEEP])
def test_no_command_shows_a_traceback(outcomes: Outcomes, place: str, name: str) -> None:
    code, output = outcomes[(place, name)]
    assert "Traceback" not in output, output
    if code is None:  # still running: it started cleanly (serve, worker, inbound)
        return
    assert code in DOCUMENTED_EXIT, (code, output)
    if code not in (0, 3):
        # One clear line at the end: the command's own words (an "error:" line, a
        # report's verdict, Click's usage hint), never an exception's repr.
        last = [line for line in output.splitlines() if line.strip()][-1]
        assert not EXCEPTION_LINE.match(last), output


def _place(places: list[Place], name: str) -> Place:
    return next(p for p in places if p.name == name)


#: The checks below wait for their command to end, however loaded the machine.
ENDS_WITHIN = 180.0


def test_a_missing_secret_names_the_setting(places: list[Place], tmp_path: Path) -> None:
    no_secret = _place(places, "no-secret")
    code, output = run(no_secret, ["serve"], tmp_path / "serve", ENDS_WITHIN)
    assert code == 1
    assert output.strip().splitlines()[-1].startswith("error: DIGEST_SECRET_KEY is not set")
    # The report's own case: ~40 lines of traceback ending in ConfigError.
    code, output = run(no_secret, ["preflight", "--issue", "1"], tmp_path / "pre", ENDS_WITHIN)
    assert code == 1
    assert output.strip().splitlines() == [
        "error: DIGEST_SECRET_KEY is not set; it signs unsubscribe and confirmation links. "
        'Generate one: python -c "import secrets; print(secrets.token_urlsafe(32))"'
    ]


def test_a_newer_schema_says_what_to_do(places: list[Place], tmp_path: Path) -> None:
    newer = _place(places, "newer-schema")
    code, output = run(newer, ["status"], tmp_path / "status", ENDS_WITHIN)
    assert code == 1
    assert "newer version of digest" in output, output


def test_a_read_only_folder_names_the_path_and_the_setting(
    places: list[Place], tmp_path: Path
) -> None:
    code, output = run(_place(places, "read-only"), ["init"], tmp_path / "init", ENDS_WITHIN)
    assert code == 1
    assert "is not writable; set DIGEST_DATABASE_URL" in output, output
