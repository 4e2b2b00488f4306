"""The wheel installs anywhere: built from the sources, installed into a fresh virtual
environment outside the repository, it runs ``digest demo`` and ``digest send --dry-run``
from an empty folder with nothing of the checkout in reach.

To stay fast and offline-friendly the new environment does not download the
dependencies again: the wheel goes in with ``--no-deps`` and a ``.pth`` line puts this
test environment's site-packages *after* the new one's. A ``.pth`` line adds a folder
without running the ``.pth`` files inside it, so the checkout's editable install stays
out of reach and ``digest`` can only come from the wheel (the test asserts where it
was imported from, and where the templates and migrations were found). ``pip check``
then proves the wheel's declared dependencies are what it ran with.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest
from store_support import REPO, sample_emails

pytestmark = pytest.mark.slow

#: What a source distribution needs to build the wheel (a copy: no build/ left in the repo).
SOURCES = ("digest", "subscribers", "templates", "migrations", "pyproject.toml", "setup.py")


def _run(*args: str | Path, cwd: Path, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [str(a) for a in args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, (args, result.stdout[-3000:], result.stderr[-3000:])
    return result.stdout


def _build_wheel(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in SOURCES:
        origin = REPO / name
        if origin.is_dir():
            shutil.copytree(origin, src / name, ignore=ignore)
        else:
            shutil.copy2(origin, src / name)
    (src / "README.md").write_text("# weekly verdict digest\n", encoding="utf-8")
    dist = tmp_path / "dist"
    _run(sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "-w", dist, src, cwd=src)
    (wheel,) = dist.glob("*.whl")
    return wheel


def test_the_wheel_carries_templates_migrations_and_samples(tmp_path: Path) -> None:
    wheel = _build_wheel(tmp_path)
    names = set(zipfile.ZipFile(wheel).namelist())
    for folder, inside in (("templates", "digest/templates"), ("migrations", "digest/migrations")):
        for path in (REPO / folder).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts:
                assert f"{inside}/{path.relative_to(REPO / folder).as_posix()}" in names
    for path in (REPO / "digest").rglob("*.py"):
        assert path.relative_to(REPO).as_posix() in names
    assert "digest/sample/comparisons.json" in names
    assert "digest/sample/subscribers.csv" in names

    venv = tmp_path / "venv"
    _run(sys.executable, "-m", "venv", "--without-pip", venv, cwd=tmp_path)
    python = venv / "bin" / "python"
    purelib = "import sysconfig; print(sysconfig.get_paths()['purelib'])"
    new_site = Path(_run(python, "-c", purelib, cwd=tmp_path).strip())
    (new_site / "zz_test_dependencies.pth").write_text(
        sysconfig.get_paths()["purelib"] + "\n", encoding="utf-8"
    )
    _run(
        sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps", wheel,
        cwd=tmp_path,
    )  # fmt: skip

    work = tmp_path / "empty folder"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DIGEST_", "PYTHON"))}
    where = _run(
        python,
        "-c",
        "import digest, digest.core.resources as r; "
        "print(digest.__file__); print(r.resource_dir('templates')); "
        "print(r.resource_dir('migrations'))",
        cwd=work,
        env=env,
    ).split()
    assert all(Path(p).is_relative_to(new_site) for p in where), where

    demo = _run(venv / "bin" / "digest", "demo", cwd=work, env=env)
    assert f"{len(sample_emails())} sent" in demo
    assert (work / "demo-data" / "preview" / "digest.html").stat().st_size > 0

    dry = _run(
        venv / "bin" / "digest", "send", "--dry-run", "--issue", "1",
        cwd=work,
        env={**env, "DIGEST_DATABASE_URL": "sqlite:///demo-data/digest.db", "DIGEST_DEMO": "1"},
    )  # fmt: skip
    assert "dry run" in dry and "nothing sent" in dry
    check = _run(sys.executable, "-m", "pip", "--python", python, "check", cwd=work)
    assert "No broken requirements" in check
