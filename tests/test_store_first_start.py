"""Commands started together on a new store take turns creating it.

A cron job and an operator, or `digest send --workers 4` beside `digest serve`, can
meet a store that does not exist yet; each process migrates it on open. Without a lock
both found no tables and both created them ("table comparison already exists")."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from conftest import throwaway_postgres

DIGEST = Path(sys.executable).with_name("digest")


def _start_together(url: str, cwd: Path, count: int) -> list[tuple[int, str]]:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "DIGEST_DATABASE_URL": url}
    procs = [
        subprocess.Popen(
            [str(DIGEST), "init"],
            cwd=cwd,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(count)
    ]
    return [(proc.wait(timeout=120), proc.communicate()[0]) for proc in procs]


@pytest.mark.slow
def test_processes_that_start_together_on_a_new_sqlite_store_all_succeed(tmp_path: Path) -> None:
    results = _start_together(f"sqlite:///{tmp_path / 'new.db'}", tmp_path, 6)
    assert [code for code, _ in results] == [0] * 6, results
    assert all("database ready" in output for _, output in results)


@pytest.mark.slow
@pytest.mark.postgres
def test_processes_that_start_together_on_a_new_postgres_schema_all_succeed(
    tmp_path: Path,
) -> None:
    with throwaway_postgres() as url:
        results = _start_together(url, tmp_path, 4)
    assert [code for code, _ in results] == [0] * 4, results
