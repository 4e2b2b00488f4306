"""Benchmark: the public web tier at send time, against the stack's own ceiling.

Starts ``digest serve`` on a fresh SQLite store and on a throw-away PostgreSQL schema
(the demo comparisons, one sent issue, readers with unsubscribe and confirmation
links), and a bare Starlette app under the same uvicorn answering the same bytes
(bench/web_baseline.py). Each route is driven with ``wrk`` — one C process with a
fixed connection count and HdrHistogram percentiles, light enough to leave the two
cores to the servers (a Python load generator such as locust would take one of
them), and Debian ships it — in alternating rounds (digest first, then the baseline
first). Per route and server: requests/s, p50 and p99 latency and the ratio to the
baseline's requests/s measured in the same round, the median over rounds.

    .venv/bin/python bench/web.py                         # 3 s per route and round, 2 rounds
    .venv/bin/python bench/web.py --duration 10 --rounds 3 --workers 1,2
    .venv/bin/python bench/web.py --backends sqlite --routes click,archive
    .venv/bin/python bench/web.py --checkout /work/main   # another checkout's digest serve

Needs ``wrk`` (``apt-get install -y wrk``); exits 2 without it. PostgreSQL from
``DIGEST_BENCH_POSTGRES_URL`` (default postgresql://postgres@127.0.0.1:5432/test, a
fresh schema, dropped at the end); without it only SQLite runs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SECRET = "bench-secret-key-0123456789abcdef"
BASE_URL = "https://verdicts.example.com"
WEEK = "2026-W47"
PG_DEFAULT = "postgresql://postgres@127.0.0.1:5432/test"


@dataclass(frozen=True)
class RouteSpec:
    name: str
    label: str
    method: str
    path: str  # a fixed path, or a token route filled from a file
    tokens: str | None = None  # which token file the Lua script cycles through
    body: str | None = None
    expect: int = 200


ROUTES = [
    RouteSpec("click", "GET /r/<token>", "GET", "/r/", tokens="click", expect=302),
    RouteSpec("archive", "GET /archive/1", "GET", "/archive/1"),
    RouteSpec("feed", "GET /archive/feed.atom", "GET", "/archive/feed.atom"),
    RouteSpec(
        "unsubscribe",
        "POST /unsubscribe/<token>",
        "POST",
        "/unsubscribe/",
        tokens="unsubscribe",
        body="List-Unsubscribe=One-Click",
    ),
    RouteSpec("confirm", "GET /confirm/<token>", "GET", "/confirm/", tokens="confirm"),
    RouteSpec("subscribe", "POST /subscribe", "POST", "/subscribe", body="email"),
]


# ------------------------------------------------------------------ the store


def seed(database_url: str, workdir: Path, readers: int) -> None:
    """Runs in the serving checkout's Python (its own models and migrations): the demo
    comparisons, one issue marked sent, ``readers`` active and ``readers`` pending
    subscribers; writes the tokens the Lua scripts cycle through."""
    from datetime import timedelta

    from sqlalchemy import insert, select, update

    from digest.core.clock import utcnow, window
    from digest.core.settings import Settings
    from digest.core.tokens import TokenMinter, make_token, new_nonce
    from digest.issue.freeze import freeze_issue
    from digest.store.engine import make_engine, migrate, session_scope
    from digest.store.importer import import_comparisons
    from digest.store.models import Issue, IssueLink
    from digest.store.subscriber_models import Subscriber

    settings = Settings(  # type: ignore[call-arg]
        database_url=database_url,
        secret_key=SECRET,
        base_url=BASE_URL,
        from_address="Weekly AI Tool Verdicts <digest@verdicts.example.com>",
        timezone="UTC",
    )
    engine = make_engine(database_url)
    migrate(engine)
    items = json.loads((ROOT / "digest" / "sample" / "comparisons.json").read_text("utf-8"))
    start, _ = window(WEEK, settings.tz)
    for index, item in enumerate(items):
        item["published_at"] = (start + timedelta(hours=10 + index)).isoformat()
    source = workdir / "comparisons.json"
    source.write_text(json.dumps(items), encoding="utf-8")
    import_comparisons(engine, [source])
    with session_scope(engine) as session:
        issue = freeze_issue(session, WEEK, settings)
        assert issue is not None and issue.id is not None
        issue_id = issue.id
    now = utcnow()
    I = Issue.__table__  # type: ignore[attr-defined]  # noqa: E741
    S = Subscriber.__table__  # type: ignore[attr-defined]
    L = IssueLink.__table__  # type: ignore[attr-defined]
    nonces = [new_nonce() for _ in range(readers)]
    with engine.begin() as conn:
        conn.execute(
            update(I)
            .where(I.c.id == issue_id)
            .values(state="sent", started_at=now, finished_at=now)
        )
        for status in ("active", "pending"):
            rows = [
                {
                    "email": f"{status}{i:07d}@example.com",
                    "name": f"Reader {i}",
                    "status": status,
                    "source": "bench",
                    "created_at": now,
                    "updated_at": now,
                    "confirmed_at": now if status == "active" else None,
                    "confirm_nonce": nonces[i] if status == "pending" else None,
                }
                for i in range(readers)
            ]
            conn.execute(insert(S), rows)
        active = conn.execute(
            select(S.c.id, S.c.email).where(S.c.status == "active").order_by(S.c.id)
        ).all()
        pending = conn.execute(
            select(S.c.id, S.c.confirm_nonce).where(S.c.status == "pending").order_by(S.c.id)
        ).all()
        links = conn.execute(select(L.c.id).where(L.c.issue_id == issue_id)).scalars().all()
    unsub = TokenMinter(settings, "unsubscribe")
    click = TokenMinter(settings, "click")
    files = {
        "unsubscribe": [unsub.for_address(r.id, r.email) for r in active],
        "confirm": [
            make_token(
                settings, "confirm", r.id, binding=bytes.fromhex(r.confirm_nonce), issued_at=now
            )
            for r in pending
        ],
        "click": [click.make(link) for link in links],
    }
    if engine.dialect.name == "postgresql":
        # Fresh statistics now, not an autovacuum during the first measured route.
        with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
            for table in ("subscriber", "issue", "issue_link", "comparison"):
                conn.exec_driver_sql(f"VACUUM ANALYZE {table}")
    for name, tokens in files.items():
        if not tokens:
            raise SystemExit(f"seed: no {name} tokens (DIGEST_CLICK_COUNTS off?)")
        (workdir / f"{name}.tokens").write_text("\n".join(tokens) + "\n", encoding="ascii")
    engine.dispose()


# ------------------------------------------------------------------ servers


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(port: int, proc: subprocess.Popen[bytes], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server on port {port} exited with status {proc.returncode}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):
                return
        except OSError:
            time.sleep(0.3)
    raise SystemExit(f"server on port {port} did not answer within {timeout:.0f} s")


@dataclass
class Server:
    name: str
    port: int
    proc: subprocess.Popen[bytes]
    workdir: Path
    log: Any = None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.log is not None:
            self.log.close()


def server_env(database_url: str, workdir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DIGEST_")}
    env.update(
        DIGEST_DATABASE_URL=database_url,
        DIGEST_SECRET_KEY=SECRET,
        DIGEST_BASE_URL=BASE_URL,
        DIGEST_FROM="Weekly AI Tool Verdicts <digest@verdicts.example.com>",
        DIGEST_TIMEZONE="UTC",
        DIGEST_TRANSPORT="maildir",
        DIGEST_OUTBOX=str(workdir / "outbox"),
        # Measured: the sign-up path itself, not its 429 (one load generator is one
        # client; the per-client limit is tested in tests/, not here).
        DIGEST_SUBSCRIBE_RATE_LIMIT="100000",
        DIGEST_SUBSCRIBE_RATE_WINDOW="1",
    )
    return env


def start_digest(
    checkout: Path, name: str, database_url: str, workdir: Path, workers: int
) -> Server:
    python = checkout / ".venv" / "bin" / "python"
    env = server_env(database_url, workdir)
    subprocess.run(
        [str(python), str(Path(__file__).resolve()), "--seed", database_url, str(workdir)],
        env=env,
        check=True,
        cwd=str(workdir),
    )
    port = free_port()
    command = [str(checkout / ".venv" / "bin" / "digest"), "serve", "--port", str(port)]
    if workers != 1:
        command += ["--workers", str(workers)]
    log = open(workdir / "server.log", "wb")  # noqa: SIM115  (closed by Server.stop)
    proc = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT)
    server = Server(name, port, proc, workdir, log)
    wait_ready(port, proc)
    return server


def start_baseline(bodies: Path, workers: int) -> Server:
    port = free_port()
    env = {**os.environ, "BENCH_WEB_BODIES": str(bodies)}
    log = open(bodies / "baseline.log", "wb")  # noqa: SIM115  (closed by Server.stop)
    proc = subprocess.Popen(
        [
            sys.executable,
            str(HERE / "web_baseline.py"),
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    server = Server("baseline", port, proc, bodies, log)
    wait_ready(port, proc)
    return server


def capture_bodies(server: Server, bodies: Path) -> None:
    """What digest serve answers, saved for the baseline to answer byte for byte."""

    def fetch(path: str, data: bytes | None = None) -> bytes:
        request = urllib.request.Request(f"http://127.0.0.1:{server.port}{path}", data=data)
        with urllib.request.urlopen(request, timeout=30) as answer:  # noqa: S310  (http on loopback)
            return bytes(answer.read())

    unsub = (server.workdir / "unsubscribe.tokens").read_text().split()[-1]
    confirm = (server.workdir / "confirm.tokens").read_text().split()[0]
    (bodies / "archive.html").write_bytes(fetch("/archive/1"))
    (bodies / "feed.atom").write_bytes(fetch("/archive/feed.atom"))
    (bodies / "confirm.html").write_bytes(fetch(f"/confirm/{confirm}"))
    (bodies / "unsubscribed.html").write_bytes(
        fetch(f"/unsubscribe/{unsub}", b"List-Unsubscribe=One-Click")
    )
    (bodies / "subscribed.html").write_bytes(fetch("/subscribe", b"email=probe@example.com"))


# ------------------------------------------------------------------ wrk

LUA = """
local tokens = {}
local path, method, body, kind = "%(path)s", "%(method)s", "%(body)s", "%(kind)s"
local counter, myid = 0, 0
local threads = {}
function setup(thread)
  thread:set("tid", #threads + 1)
  table.insert(threads, thread)
end
function init(args)
  myid = tid or math.random(1, 1000000)
  if "%(tokens)s" ~= "" then
    for line in io.lines("%(tokens)s") do table.insert(tokens, line) end
  end
  counter = math.random(0, #tokens > 0 and #tokens - 1 or 0)
  math.randomseed(os.time() + myid)
end
function request()
  counter = counter + 1
  local headers = {}
  local p, b = path, nil
  if #tokens > 0 then p = path .. tokens[(counter %% #tokens) + 1] end
  if method == "POST" then
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    if kind == "email" then
      local r = math.random(1, 1000000000)
      b = string.format("email=w%%d-%%d-%%d%%%%40example.com", myid, counter, r)
    else
      b = body
    end
  end
  return wrk.format(method, p, headers, b)
end
"""


@dataclass
class Result:
    rps: float
    p50_ms: float
    p99_ms: float
    bad: int = 0  # answers that were not 2xx/3xx, plus socket errors
    rounds: list[float] = field(default_factory=list)


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text.strip())
    if not match:
        return float("nan")
    return float(match.group(1)) * _UNITS[match.group(2)]


def run_wrk(port: int, spec: RouteSpec, workdir: Path, seconds: float, connections: int) -> Result:
    script = workdir / f"{spec.name}.lua"
    tokens = str(workdir / f"{spec.tokens}.tokens") if spec.tokens else ""
    script.write_text(
        LUA
        % {
            "path": spec.path,
            "method": spec.method,
            "body": spec.body if spec.body and spec.body != "email" else "",
            "kind": spec.body or "",
            "tokens": tokens,
        }
    )
    out = subprocess.run(
        [
            "wrk",
            "-t2",
            f"-c{connections}",
            f"-d{max(1, round(seconds))}s",
            "--latency",
            "--timeout",
            "10s",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}",
        ],
        capture_output=True,
        text=True,
    )
    if out.returncode:
        raise SystemExit(f"wrk failed on {spec.name}: {out.stderr or out.stdout}")
    return _parse(out.stdout)


def _parse(out: str) -> Result:
    rps = float(re.search(r"Requests/sec:\s*([\d.]+)", out).group(1))  # type: ignore[union-attr]
    p50 = re.search(r"^\s*50%\s+(\S+)", out, re.M)
    p99 = re.search(r"^\s*99%\s+(\S+)", out, re.M)
    bad = 0
    non2xx = re.search(r"Non-2xx or 3xx responses:\s*(\d+)", out)
    if non2xx:
        bad += int(non2xx.group(1))
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    if errors:
        bad += int(errors.group(1)) + int(errors.group(3)) + int(errors.group(4))
    return Result(rps, _ms(p50.group(1)) if p50 else 0.0, _ms(p99.group(1)) if p99 else 0.0, bad)


def _median(results: list[Result]) -> Result:
    return Result(
        statistics.median(r.rps for r in results),
        statistics.median(r.p50_ms for r in results),
        statistics.median(r.p99_ms for r in results),
        sum(r.bad for r in results),
    )


# ------------------------------------------------------------------ main


def postgres_url(base: str) -> tuple[str, str] | None:
    """A fresh schema on ``base`` (its URL and name), or None when PostgreSQL is absent."""
    try:
        from sqlalchemy import create_engine, text
        from sqlalchemy.engine import make_url
    except ImportError:
        return None
    schema = f"bench_web_{uuid.uuid4().hex[:10]}"
    try:
        engine = create_engine(base)
        with engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        engine.dispose()
    except Exception as exc:  # any failure: say so and go on without it
        print(f"PostgreSQL not used ({base}): {exc.__class__.__name__}", file=sys.stderr)
        return None
    url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False), schema


def drop_schema(base: str, schema: str) -> None:
    from sqlalchemy import create_engine, text

    engine = create_engine(base)
    with engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
    engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seed", nargs=2, metavar=("URL", "DIR"), help=argparse.SUPPRESS)
    parser.add_argument("--duration", type=int, default=3, help="seconds per route and round")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--connections", "-c", type=int, default=32)
    parser.add_argument("--workers", default="1", help="server processes, e.g. 1,2")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--routes", default=",".join(r.name for r in ROUTES))
    parser.add_argument("--readers", type=int, default=20_000)
    parser.add_argument("--checkout", type=Path, default=ROOT, help="whose digest serve")
    args = parser.parse_args()
    if args.seed:
        seed(args.seed[0], Path(args.seed[1]), int(os.environ.get("BENCH_WEB_READERS", "20000")))
        return 0
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install -y wrk", file=sys.stderr)
        return 2
    routes = [r for r in ROUTES if r.name in args.routes.split(",")]
    workers = [int(w) for w in args.workers.split(",")]
    backends = args.backends.split(",")
    os.environ["BENCH_WEB_READERS"] = str(args.readers)
    pg_base = os.environ.get("DIGEST_BENCH_POSTGRES_URL", PG_DEFAULT)
    checkout = args.checkout.resolve()
    print(
        f"# bench/web.py  checkout={checkout}  wrk -t2 -c{args.connections} "
        f"-d{args.duration:g}s × {args.rounds} rounds  load: {os.getloadavg()[0]:.2f} "
        f"{os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}  cores: {os.cpu_count()}",
        flush=True,
    )
    status = 0
    for n in workers:
        with tempfile.TemporaryDirectory(prefix="bench-web-") as tmp:
            status |= run_set(Path(tmp), checkout, n, backends, routes, args, pg_base)
    print(f"# load at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return status


def run_set(
    tmp: Path,
    checkout: Path,
    workers: int,
    backends: list[str],
    routes: list[RouteSpec],
    args: argparse.Namespace,
    pg_base: str,
) -> int:
    servers: list[Server] = []
    schema: str | None = None
    try:
        for backend in backends:
            workdir = tmp / backend
            workdir.mkdir()
            if backend == "sqlite":
                url = f"sqlite:///{workdir / 'web.db'}"
            else:
                found = postgres_url(pg_base)
                if found is None:
                    continue
                url, schema = found
            servers.append(start_digest(checkout, backend, url, workdir, workers))
        if not servers:
            return 1
        bodies = tmp / "bodies"
        bodies.mkdir()
        capture_bodies(servers[0], bodies)
        baseline = start_baseline(bodies, workers)
        servers.append(baseline)
        results: dict[tuple[str, str], list[Result]] = {}
        for spec in routes:
            for round_no in range(args.rounds):
                order = servers if round_no % 2 == 0 else list(reversed(servers))
                for server in order:
                    workdir = server.workdir if server is not baseline else servers[0].workdir
                    result = run_wrk(server.port, spec, workdir, args.duration, args.connections)
                    results.setdefault((spec.name, server.name), []).append(result)
        report(routes, servers, results, workers)
    finally:
        for server in servers:
            server.stop()
        if schema is not None:
            drop_schema(pg_base, schema)
    return 0


def report(
    routes: list[RouteSpec],
    servers: list[Server],
    results: dict[tuple[str, str], list[Result]],
    workers: int,
) -> None:
    print(f"\n## {workers} server process{'es' if workers > 1 else ''}")
    print("| route | server | req/s | p50 ms | p99 ms | not 2xx/3xx | ratio to baseline |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for spec in routes:
        base = results[(spec.name, "baseline")]
        for server in servers:
            runs = results[(spec.name, server.name)]
            med = _median(runs)
            ratio = statistics.median(r.rps / b.rps for r, b in zip(runs, base, strict=True))
            print(
                f"| {spec.label} | {server.name} | {med.rps:,.0f} | {med.p50_ms:.1f} | "
                f"{med.p99_ms:.1f} | {med.bad} | {ratio:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    raise SystemExit(main())
