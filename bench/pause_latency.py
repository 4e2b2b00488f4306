"""Benchmark: how many messages still go out after ``digest pause`` returns.

A real ``digest send --yes`` (a child process) sends to a counting aiosmtpd server in
this process; once a quarter of the list is delivered, the issue is paused (the same
call ``digest pause`` makes, which returns once the pause is recorded). Reported per
run: messages the server accepted after the pause returned, the seconds until the
send process exited (status 3), and the send rate before the pause. Unthrottled runs
are as fast as the machine allows; ``--rate`` throttles (``DIGEST_RATE_LIMIT``).

    .venv/bin/python bench/pause_latency.py                      # 1 and 4 connections
    .venv/bin/python bench/pause_latency.py -n 20000 --rounds 3
    .venv/bin/python bench/pause_latency.py --rate 50 --batch 10000
    .venv/bin/python bench/pause_latency.py --digest /other/checkout/.venv/bin/digest

``--digest`` runs another checkout's ``digest`` against the same store and server: the
baseline of an older send loop, measured the same way.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from common import ROOT, WEEK, bench_settings, free_port, seed, send_env

from digest.delivery.controls import pause_issue


class Counting:
    """Accepts everything; remembers when each message arrived."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.arrivals: list[float] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.arrivals.append(time.monotonic())
        return "250 2.0.0 queued"

    @property
    def count(self) -> int:
        with self.lock:
            return len(self.arrivals)


@dataclass
class Run:
    connections: int
    after_pause: int
    stop_seconds: float
    rate: float
    exit_code: int


def one_run(digest: str, subscribers: int, connections: int, args: argparse.Namespace) -> Run:
    with tempfile.TemporaryDirectory(prefix="digest-pause-bench-") as tmp:
        workdir = Path(tmp)
        settings = bench_settings(workdir)
        engine = seed(settings, workdir, subscribers)
        handler = Counting()
        port = free_port()
        controller = Controller(handler, hostname="127.0.0.1", port=port)
        controller.start()
        env = send_env(
            settings.database_url,
            port,
            connections,
            DIGEST_BATCH_SIZE=str(args.batch),
            PYTHONDONTWRITEBYTECODE="1",
        )
        if args.rate:
            env["DIGEST_RATE_LIMIT"] = str(args.rate)
        try:
            proc = subprocess.Popen(
                [digest, "send", "--week", WEEK, "--yes"],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                cwd=workdir,
            )
            target = max(1, subscribers // 4)
            while handler.count < target:
                if proc.poll() is not None:
                    raise SystemExit(f"the send ended before the pause ({proc.returncode})")
                time.sleep(0.002)
            first = handler.arrivals[0]
            pause_issue(engine, WEEK, "paused by the benchmark")
            paused_at = time.monotonic()
            at_pause = handler.count
            code = proc.wait(timeout=600)
            ended = time.monotonic()
            time.sleep(0.5)  # anything still on the wire
            after = handler.count - at_pause
        finally:
            controller.stop()
            engine.dispose()
        rate = at_pause / (paused_at - first) if paused_at > first else 0.0
        return Run(connections, after, ended - paused_at, rate, code)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--subscribers", type=int, default=8000)
    parser.add_argument("-c", "--connections", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--batch", type=int, default=200)
    parser.add_argument("--rate", type=float, default=None, help="DIGEST_RATE_LIMIT")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--digest", default=str(Path(sys.executable).with_name("digest")))
    args = parser.parse_args()
    print(
        f"pause latency: {args.subscribers} subscribers, batch {args.batch}, "
        f"rate {args.rate or 'unthrottled'}, {args.rounds} rounds, {args.digest}"
    )
    print(f"load average before: {os.getloadavg()[0]:.2f} (the machine is shared)")
    print("connections | sent after pause returned (each round) | median | stop s (median) | msg/s")
    for connections in args.connections:
        runs = [
            one_run(args.digest, args.subscribers, connections, args) for _ in range(args.rounds)
        ]
        after = [r.after_pause for r in runs]
        print(
            f"{connections:>11} | {', '.join(map(str, after)):>38} | "
            f"{statistics.median(after):>6.0f} | "
            f"{statistics.median(r.stop_seconds for r in runs):>15.2f} | "
            f"{statistics.median(r.rate for r in runs):>5.0f}"
        )
        bad = [r.exit_code for r in runs if r.exit_code != 3]
        if bad:
            print(f"  (exit codes other than 3: {bad})")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print(f"reproduce: .venv/bin/python bench/pause_latency.py {' '.join(sys.argv[1:])}")
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    raise SystemExit(main())
