"""Benchmark: a whole send to Postfix's smtp-sink, against Postfix's own smtp-source.

For each size (default 20,000 and 100,000 subscribers): a fresh SQLite store with the
demo digest's comparisons and N active subscribers; ``smtp-sink`` on a loopback port;
``digest send --yes`` as a child process with ``DIGEST_SMTP_CONNECTIONS`` sessions;
then ``smtp-source`` with the same session count, message count and message size
against the same sink. Prints both rates, their ratio, wall time and the send
process's peak RSS.

Needs ``smtp-sink`` and ``smtp-source`` from Debian's ``postfix`` package — this
script installs nothing (see bench/README.md): ``apt-get install postfix``, and do not
start the postfix daemon.

    .venv/bin/python bench/e2e_smtp.py                    # 20k and 100k, 4 sessions
    .venv/bin/python bench/e2e_smtp.py -n 5000 -c 2
    .venv/bin/python bench/e2e_smtp.py -n 20000 --verp   # VERP envelope senders on
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from common import ROOT, WEEK, PeakRSS, bench_settings, demo_message, free_port, seed, send_env

from digest.core.recipient import Recipient

SBIN = ("/usr/sbin", "/usr/local/sbin")


def tool(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    for folder in SBIN:
        candidate = Path(folder) / name
        if candidate.exists():
            return str(candidate)
    return None


@dataclass
class Result:
    subscribers: int
    connections: int
    size: int
    digest_wall: float
    digest_loop_rate: float
    digest_rss_mb: float
    source_wall: float
    summary: str

    @property
    def digest_rate(self) -> float:
        return self.subscribers / self.digest_wall

    @property
    def source_rate(self) -> float:
        return self.subscribers / self.source_wall

    def lines(self) -> list[str]:
        return [
            f"subscribers           {self.subscribers:,} (message {self.size:,} bytes, "
            f"{self.connections} SMTP sessions)",
            f"digest send           {self.digest_rate:,.0f} msg/s over the whole command "
            f"({self.digest_wall:.1f} s wall); send loop {self.digest_loop_rate:,.0f} msg/s",
            f"smtp-source           {self.source_rate:,.0f} msg/s ({self.source_wall:.1f} s wall)",
            f"ratio digest/source   {self.digest_rate / self.source_rate:.2f} (whole command), "
            f"{self.digest_loop_rate / self.source_rate:.2f} (send loop)",
            f"peak RSS of the send  {self.digest_rss_mb:.0f} MB",
            f"digest said           {self.summary}",
        ]


def smtp_source(source: str, sessions: int, messages: int, size: int, port: int) -> float:
    """The baseline: Postfix's smtp-source sends ``messages`` of ``size`` bytes over
    ``sessions`` kept-open connections (``-d``, as the pool does); its wall time."""
    started = time.monotonic()
    subprocess.run(
        [
            source,
            "-d",
            "-s",
            str(sessions),
            "-m",
            str(messages),
            "-l",
            str(size),
            "-f",
            "digest@verdicts.example.com",
            "-t",
            "reader@example.com",
            f"127.0.0.1:{port}",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    return time.monotonic() - started


def run_one(
    subscribers: int, connections: int, sink: str, source: str, verp: bool = False
) -> Result:
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        settings = bench_settings(work)
        engine = seed(settings, work, subscribers)
        size = len(
            demo_message(settings, engine).as_bytes(
                Recipient(1, "reader0000000@example.com", "Reader 0")
            )
        )
        engine.dispose()
        port = free_port()
        sink_proc = subprocess.Popen(
            [sink, "-u", "postfix", f"127.0.0.1:{port}", "1024"]
            if os.geteuid() == 0
            else [sink, f"127.0.0.1:{port}", "1024"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        try:
            time.sleep(0.3)
            env = send_env(settings.database_url, port, connections)
            if verp:  # a per-delivery envelope sender (docs/delivery.md, bounces by mail)
                env["DIGEST_VERP_DOMAIN"] = "bounces.verdicts.example.com"
            digest = Path(sys.executable).parent / "digest"
            started = time.monotonic()
            proc = subprocess.Popen(
                [str(digest), "send", "--week", WEEK, "--yes"],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=ROOT,
            )
            assert proc.stdout is not None and proc.stderr is not None
            peak = PeakRSS(proc.pid)
            _, status = os.waitpid(proc.pid, 0)
            digest_wall = time.monotonic() - started
            digest_rss = peak.stop()
            output = proc.stdout.read().decode().strip()
            if os.waitstatus_to_exitcode(status) != 0:
                raise SystemExit(f"digest send failed: {output}\n{proc.stderr.read().decode()}")
            loop = re.search(r"\(([\d,]+)/s\)", output)
            loop_rate = float(loop.group(1).replace(",", "")) if loop else 0.0
            source_wall = smtp_source(source, connections, subscribers, size, port)
        finally:
            sink_proc.terminate()
            sink_proc.wait(timeout=10)
    return Result(
        subscribers,
        connections,
        size,
        digest_wall,
        loop_rate,
        digest_rss,
        source_wall,
        output.splitlines()[-1],
    )


def main(argv: list[str] | None = None) -> list[Result]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, action="append", help="subscribers (repeatable)")
    parser.add_argument("-c", "--connections", type=int, default=4)
    parser.add_argument("--verp", action="store_true", help="send with VERP envelope senders")
    args = parser.parse_args(argv)
    sink, source = tool("smtp-sink"), tool("smtp-source")
    if not sink or not source:
        print(
            "smtp-sink / smtp-source not found. They come with Postfix; install them with\n"
            "    sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive "
            "apt-get install -y postfix\n"
            "(the benchmark runs smtp-sink itself on loopback; do not start postfix).",
            file=sys.stderr,
        )
        raise SystemExit(2)
    results = []
    for n in args.n or [20_000, 100_000]:
        result = run_one(n, args.connections, sink, source, args.verp)
        print("\n".join(result.lines()) + "\n", flush=True)
        results.append(result)
    return results


if __name__ == "__main__":
    main()
