"""Benchmark: per-recipient message building, fast path vs the stdlib path.

Builds the demo digest's issue once, then makes N recipients' messages with
``IssueMessage.as_bytes`` (the compiled skeleton) and with ``as_bytes_slow`` (the
stdlib ``EmailMessage``), on one core, and checks that both give the same bytes.

    .venv/bin/python bench/build_messages.py            # 20,000 fast, 300 stdlib
    .venv/bin/python bench/build_messages.py -n 50000 --slow 500
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from common import bench_settings, demo_message, seed

from digest.message import Recipient


def rate(build: object, recipients: list[Recipient]) -> float:
    assert callable(build)
    started = time.perf_counter()
    for recipient in recipients:
        build(recipient)
    return len(recipients) / (time.perf_counter() - started)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20_000, help="messages on the fast path")
    parser.add_argument("--slow", type=int, default=300, help="messages on the stdlib path")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        settings = bench_settings(Path(tmp))
        message = demo_message(settings, seed(settings, Path(tmp), 0))
    people = [Recipient(i + 1, f"reader{i:07d}@example.com", f"Reader {i}") for i in range(args.n)]
    sample = people[: args.slow]
    message.as_bytes(people[0])  # compile the skeleton outside the timing
    mismatches = sum(message.as_bytes(r) != message.as_bytes_slow(r) for r in sample[:100])
    fast = max(rate(message.as_bytes, people) for _ in range(3))
    slow = rate(message.as_bytes_slow, sample)
    size = len(message.as_bytes(people[0]))
    print(f"message size        {size:,} bytes (demo digest)")
    print(f"fast path           {fast:,.0f} messages/s  ({args.n:,} messages, best of 3)")
    print(f"stdlib EmailMessage {slow:,.0f} messages/s  ({args.slow:,} messages)")
    print(f"ratio               {fast / slow:,.0f}x")
    print(f"byte-identical      {'yes' if not mismatches else f'NO ({mismatches} differ)'}")
    return {"fast": fast, "slow": slow, "ratio": fast / slow, "size": size}


if __name__ == "__main__":
    main()
