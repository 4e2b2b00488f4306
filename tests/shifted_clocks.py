"""Run the tests marked ``clock`` again under shifted clocks (``make test-clocks``).

A test that mixes a literal date with the real clock passes on the day it is written
and fails some day later; this run brings that day forward. Every process the tests
start sees the shifted time too: libfaketime (Debian's ``faketime``) is preloaded into
the whole process tree, with an offset from now, so parent and children agree.

The clocks: about 400 days ahead, and the two Sundays of 2027 on which Europe/Berlin
changes its clocks, started a minute before the change so the run crosses it, with
``TZ=Europe/Berlin``. ``make test`` runs the first two (400 days ahead and the spring
Sunday), ``make test-clocks`` all three (``--all``). Monotonic clocks move by the same
offset, so durations stay true.

Python's timed waits (``Event.wait``, ``queue.get``) take their deadline on a call
libfaketime 0.9.10 does not shift; ``tests/faketime_waits.c``, built here and preloaded
with it, makes them end on time, so threads that poll keep polling.

Exit status: 0 when every clock passed (or faketime or a C compiler is missing: then
it says so and the check is skipped), 1 otherwise.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

#: (name, the moment the run starts at); None = 400 days from now. `make test` runs the
#: first two (CI's time budget); `make test-clocks` (``--all``) runs all three.
CLOCKS: list[tuple[str, datetime | None]] = [
    ("400 days ahead", None),
    # 02:00 CET -> 03:00 CEST at 01:00 UTC.
    ("Europe/Berlin springs forward, Sunday 2027-03-28", datetime(2027, 3, 28, 0, 59, tzinfo=UTC)),
    # 03:00 CEST -> 02:00 CET at 01:00 UTC.
    ("Europe/Berlin falls back, Sunday 2027-10-31", datetime(2027, 10, 31, 0, 59, tzinfo=UTC)),
]
IN_MAKE_TEST = 2
#: The end-to-end tests (``slow``: servers and subprocesses) run once, in the main suite,
#: to keep CI within its time; the dates they carry are those of the in-process tests.
SELECTION = "clock and not slow"
#: Preloaded with libfaketime so that timed waits end (see that file).
WAITS_SOURCE = Path(__file__).with_name("faketime_waits.c")


def offset_spec(start: datetime | None, now: datetime) -> str:
    """libfaketime's relative offset (``+N`` seconds) that makes now read ``start``."""
    if start is None:
        start = now + timedelta(days=400)
    return f"{int((start - now).total_seconds()):+d}"


def build_waits_shim(folder: Path) -> Path | None:
    """tests/faketime_waits.c built as a shared library in ``folder``; None without a C
    compiler."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None
    shim = folder / "faketime_waits.so"
    command = [compiler, "-shared", "-fPIC", "-O2", "-o", str(shim), str(WAITS_SOURCE), "-ldl"]
    subprocess.run(command, check=True)
    return shim


def main(argv: list[str]) -> int:
    faketime = shutil.which("faketime")
    if faketime is None:
        print("shifted clocks: skipped, `faketime` is not installed (apt-get install faketime)")
        return 0
    with tempfile.TemporaryDirectory(prefix="shifted-clocks-") as folder:
        shim = build_waits_shim(Path(folder))
        if shim is None:
            print("shifted clocks: skipped, no C compiler for tests/faketime_waits.c (gcc)")
            return 0
        return run_clocks(faketime, shim, argv)


def run_clocks(faketime: str, shim: Path, argv: list[str]) -> int:
    clocks = CLOCKS if "--all" in argv else CLOCKS[:IN_MAKE_TEST]
    argv = [arg for arg in argv if arg != "--all"]
    # faketime adds libfaketime after what LD_PRELOAD holds: the shim's own calls to
    # clock_gettime reach libfaketime's.
    preload = ":".join(filter(None, [str(shim), os.environ.get("LD_PRELOAD", "")]))
    failed: list[str] = []
    for name, start in clocks:
        spec = offset_spec(start, datetime.now(UTC))
        # Monotonic clocks shift by the same offset: durations stay true (sparing them
        # with FAKETIME_DONT_FAKE_MONOTONIC breaks time.sleep on Python 3.11).
        env = os.environ | {"TZ": "Europe/Berlin", "LD_PRELOAD": preload}
        command = [faketime, "-f", spec, sys.executable, "-m", "pytest", "-m", SELECTION, *argv]
        print(f"shifted clocks: {name} (faketime -f {spec})", flush=True)
        began = time.monotonic()
        code = subprocess.call(command, env=env)
        print(
            f"shifted clocks: {name}: {'passed' if code == 0 else 'FAILED'} "
            f"in {time.monotonic() - began:.0f}s",
            flush=True,
        )
        if code != 0:
            failed.append(name)
    if failed:
        print(f"shifted clocks: failed under {', '.join(failed)}")
        return 1
    print(f"shifted clocks: all {len(clocks)} passed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
