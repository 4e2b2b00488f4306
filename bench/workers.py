"""Benchmark: sender processes on every core — `digest send --workers N` to smtp-sink.

Two measurements, each with its baseline from the same run:

- **vs smtp-source** (default): N subscribers (100,000) in a fresh store, Postfix's
  ``smtp-sink`` on loopback, ``digest send --workers W`` with C SMTP sessions each
  (2 × 2 = 4 sessions by default), then Postfix's ``smtp-source`` with W × C sessions,
  the same message count and size against the same sink. Prints both rates and their
  ratio; with ``--rounds R``, R such pairs in alternating order and the median ratio.
- **scaling** (``--scale``): a fresh PostgreSQL schema per run with N subscribers
  (1,000,000 by default; inserted server-side with generate_series), then
  ``digest send --workers W`` for each W in ``--workers`` (1, 2, 4): messages/s,
  enqueue time, each worker's peak RSS, and the rate relative to one worker.

Needs ``smtp-sink``/``smtp-source`` (Debian's ``postfix``, daemon not started) and, for
``--scale``, a PostgreSQL server (``DIGEST_BENCH_POSTGRES_URL``, default the local
trust-auth one).

    .venv/bin/python bench/workers.py                         # 100k: workers 2 vs smtp-source
    .venv/bin/python bench/workers.py -n 20000 -w 2 -c 2
    .venv/bin/python bench/workers.py --rounds 5              # median of 5 alternating rounds
    .venv/bin/python bench/workers.py --scale                 # 1M on PostgreSQL, 1/2/4 workers
    .venv/bin/python bench/workers.py --scale -n 200000 -w 1 -w 2
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from common import ROOT, WEEK, PeakRSS, bench_settings, demo_message, seed, send_env
from e2e_smtp import free_port, smtp_source, tool
from sqlalchemy import text
from sqlalchemy.engine import make_url

from digest.core.recipient import Recipient
from digest.store.engine import make_engine, migrate

PG_DEFAULT = "postgresql://postgres@127.0.0.1:5432/test"


@contextmanager
def smtp_sink(sink: str) -> Iterator[int]:
    port = free_port()
    command = [sink, f"127.0.0.1:{port}", "2048"]
    if os.geteuid() == 0:
        command[1:1] = ["-u", "postfix"]
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        time.sleep(0.3)
        yield port
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@dataclass
class Send:
    wall: float
    summary: str
    #: the `digest send` process's own peak RSS (the worker, when there is one)
    own_rss_mb: float

    def loop_rate(self) -> float:
        found = re.search(r"\(([\d,]+)/s\)", self.summary)
        return float(found.group(1).replace(",", "")) if found else 0.0

    def rss(self) -> str:
        found = re.search(r"peak RSS ([\d, ]+) MB", self.summary)
        return found.group(1) if found else f"{self.own_rss_mb:.0f}"

    def enqueue(self) -> str:
        found = re.search(r"enqueued [\d,]+ in ([\d.]+)s", self.summary)
        return f"{found.group(1)} s" if found else "-"


def digest_send(database_url: str, port: int, workers: int, connections: int) -> Send:
    env = send_env(database_url, port, connections, DIGEST_BATCH_SIZE="500")
    digest = Path(sys.executable).parent / "digest"
    command = [str(digest), "send", "--week", WEEK, "--yes", "--again"]
    if workers > 1:
        command += ["--workers", str(workers)]
    started = time.monotonic()
    proc = subprocess.Popen(
        command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT
    )
    peak = PeakRSS(proc.pid)
    out, err = proc.communicate()
    wall = time.monotonic() - started
    rss = peak.stop()
    if proc.returncode != 0:
        raise SystemExit(f"digest send failed:\n{out}\n{err}")
    return Send(wall, out.strip().splitlines()[-1], rss)


def versus_source(
    n: int, workers: int, connections: int, rounds: int, sink: str, source: str
) -> None:
    """``rounds`` of one digest send and one smtp-source run each, in alternating order
    (digest first in odd rounds, smtp-source first in even ones) so that a drift in the
    machine's speed weighs on both sides alike; every round's ratio and their median."""
    ratios: list[tuple[float, float]] = []
    for number in range(1, rounds + 1):
        with tempfile.TemporaryDirectory() as tmp:
            # A fresh store each round: a sent issue has nothing left to send.
            work = Path(tmp)
            settings = bench_settings(work)
            engine = seed(settings, work, n)
            message = demo_message(settings, engine)
            size = len(message.as_bytes(Recipient(1, "r@example.com", "R")))
            engine.dispose()
            if number == 1:
                print(f"subscribers           {n:,} (message {size:,} bytes)")
                print(
                    f"digest send           --workers {workers} × {connections} sessions; "
                    f"smtp-source {workers * connections} sessions"
                )
            with smtp_sink(sink) as port:
                if number % 2:
                    send = digest_send(settings.database_url, port, workers, connections)
                    source_wall = smtp_source(source, workers * connections, n, size, port)
                else:
                    source_wall = smtp_source(source, workers * connections, n, size, port)
                    send = digest_send(settings.database_url, port, workers, connections)
        digest_rate, source_rate = n / send.wall, n / source_wall
        ratios.append((digest_rate / source_rate, send.loop_rate() / source_rate))
        print(
            f"round {number}: digest {digest_rate:,.0f} msg/s whole command "
            f"({send.wall:.1f} s), send loop {send.loop_rate():,.0f} msg/s; "
            f"smtp-source {source_rate:,.0f} msg/s ({source_wall:.1f} s); ratio "
            f"{ratios[-1][0]:.2f} whole, {ratios[-1][1]:.2f} loop; "
            f"peak RSS per worker {send.rss()} MB",
            flush=True,
        )
    whole = statistics.median(r[0] for r in ratios)
    loop = statistics.median(r[1] for r in ratios)
    print(
        f"ratio digest/source   {whole:.2f} (whole command), {loop:.2f} (send loop)"
        + (f", median of {rounds} rounds" if rounds > 1 else "")
    )
    print(f"digest said           {send.summary}")


@contextmanager
def pg_schema(base: str) -> Iterator[str]:
    schema = f"digest_bench_{uuid.uuid4().hex[:10]}"
    admin = make_engine(base)
    with admin.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    url = make_url(base.replace("postgresql://", "postgresql+psycopg://", 1))
    url = url.update_query_dict({"options": f"-csearch_path={schema}"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        with admin.begin() as conn:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


def scaling(n: int, worker_counts: list[int], connections: int, sink: str, base: str) -> None:
    print(f"{n:,} subscribers on PostgreSQL, {connections} SMTP sessions per worker")
    head = f"{'workers':>8}{'msg/s':>10}{'vs 1':>7}{'wall s':>9}{'enqueue':>10}"
    print(f"{head}  peak RSS per worker (MB)")
    first: float | None = None
    for workers in worker_counts:
        with tempfile.TemporaryDirectory() as tmp, pg_schema(base) as url:
            work = Path(tmp)
            settings = bench_settings(work, database_url=url)
            engine = seed(settings, work, 0)
            with engine.begin() as conn:
                conn.execute(
                    text(
                        "INSERT INTO subscriber (email, name, status, source, created_at,"
                        " updated_at, confirmed_at)"
                        " SELECT 'reader' || lpad(i::text, 7, '0') || '@example.com',"
                        " 'Reader ' || i, 'active', 'bench', now(), now(), now()"
                        " FROM generate_series(0, :n - 1) AS i"
                    ),
                    {"n": n},
                )
                conn.execute(text("ANALYZE subscriber"))
            migrate(engine)
            engine.dispose()
            with smtp_sink(sink) as port:
                send = digest_send(url, port, workers, connections)
        rate = n / send.wall
        first = first or rate
        print(
            f"{workers:>8}{rate:>10,.0f}{rate / first:>7.2f}{send.wall:>9.1f}"
            f"{send.enqueue():>10}  {send.rss()}",
            flush=True,
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, help="subscribers (100,000; 1,000,000 with --scale)")
    parser.add_argument("-w", "--workers", type=int, action="append", help="worker processes")
    parser.add_argument("-c", "--connections", type=int, default=2, help="SMTP sessions each")
    parser.add_argument("--scale", action="store_true", help="1/2/4 workers on PostgreSQL")
    parser.add_argument(
        "-r", "--rounds", type=int, default=1, help="digest/smtp-source rounds (median ratio)"
    )
    args = parser.parse_args(argv)
    sink, source = tool("smtp-sink"), tool("smtp-source")
    if not sink or not source:
        raise SystemExit("smtp-sink / smtp-source not found: apt-get install postfix")
    if args.scale:
        base = os.environ.get("DIGEST_BENCH_POSTGRES_URL", PG_DEFAULT)
        scaling(args.n or 1_000_000, args.workers or [1, 2, 4], args.connections, sink, base)
    else:
        versus_source(
            args.n or 100_000,
            (args.workers or [2])[0],
            args.connections,
            args.rounds,
            sink,
            source,
        )


if __name__ == "__main__":
    main()
