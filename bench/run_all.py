"""`make bench`: every benchmark in this folder, one after another (see README.md).

Not part of `make test`. The end-to-end SMTP benchmark needs Postfix's smtp-sink and
smtp-source and says so (exit status 2) when they are missing; the others still run.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
BENCHMARKS = [
    "build_messages.py",
    "e2e_smtp.py",
    "providers.py",
    "pause_latency.py",
    "web.py",
]


def main() -> int:
    failed = []
    for name in BENCHMARKS:
        script = HERE / name
        if not script.exists():
            continue
        print(f"== {name}", flush=True)
        code = subprocess.call([sys.executable, str(script)], cwd=HERE.parent)
        if code:
            failed.append(f"{name} (exit {code})")
        print(flush=True)
    if failed:
        print("not completed: " + ", ".join(failed), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
