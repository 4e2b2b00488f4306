"""A private, throwaway PostgreSQL cluster for tests that stop and restart the server.

The shared server on 127.0.0.1:5432 is never restarted (other suites use it). A test
that needs to take the database away mid-send starts its own cluster here: ``initdb``
into a temporary folder (as the ``postgres`` OS user when the tests run as root, as
``initdb`` refuses root), trust authentication, a free port, listening on loopback and
on any extra addresses asked for (the host end of a network namespace's veth pair).
It is stopped and removed at the end.

The cluster ends a transaction left open by a client that vanished after a few seconds,
and probes idle clients with keepalives, as docs/scale.md recommends for production:
a worker cut off in the middle of a claim must not hold its rows' locks for hours.

Skips the calling test with the reason when the PostgreSQL server binaries are missing,
or when running as root without a ``postgres`` account to run them as.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from servers import free_port

#: Server settings of the throwaway cluster: fast and unsafe on purpose (no fsync),
#: plus the partition-related settings production should have (docs/scale.md).
SERVER_OPTIONS = {
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "max_connections": "200",
    "idle_in_transaction_session_timeout": "5s",
    "tcp_keepalives_idle": "5",
    "tcp_keepalives_interval": "2",
    "tcp_keepalives_count": "3",
}


def server_binaries() -> Path | None:
    """The newest installed PostgreSQL server's bin folder (Debian's layout)."""

    def version(initdb: str) -> int:
        name = Path(initdb).parent.parent.name
        return int(name) if name.isdigit() else 0

    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=version)
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


@dataclass
class PrivatePostgres:
    """A running private cluster; :meth:`restart` takes it away and brings it back."""

    bin: Path
    folder: Path
    port: int
    hosts: tuple[str, ...]
    run_as: str | None

    @property
    def data(self) -> Path:
        return self.folder / "data"

    @property
    def log(self) -> Path:
        return self.folder / "server.log"

    def url(self, host: str = "127.0.0.1", database: str = "postgres") -> str:
        return f"postgresql://postgres@{host}:{self.port}/{database}"

    def _cmd(self, *args: str) -> list[str]:
        if self.run_as is None:
            return list(args)
        return ["runuser", "-u", self.run_as, "--", *args]

    def _run(self, *args: str, timeout: float = 60) -> None:
        done = subprocess.run(
            self._cmd(*args), capture_output=True, text=True, timeout=timeout, check=False
        )
        if done.returncode != 0:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            raise RuntimeError(
                f"{' '.join(args[:2])} failed ({done.returncode}): {done.stderr.strip()}\n{log}"
            )

    def start(self) -> None:
        options = [f"-p {self.port}", f"-k {self.folder}"]
        options.append(f"-c listen_addresses='{','.join(self.hosts)}'")
        options += [f"-c {k}={v}" for k, v in SERVER_OPTIONS.items()]
        self._run(
            str(self.bin / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log),
            "-w",
            "-t",
            "60",
            "-o",
            " ".join(options),
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        """``fast``: what a maintenance restart does (sessions are ended, new ones are
        told "the database system is shutting down"); ``immediate``: a crash."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def restart(self, down_seconds: float = 2.0, mode: str = "fast") -> float:
        """Stop, stay down for ``down_seconds``, start again; returns the monotonic
        time at which it answers again."""
        self.stop(mode)
        time.sleep(down_seconds)
        self.start()
        return time.monotonic()


def _owner() -> str | None:
    """The OS account to run the server as: ``postgres`` when we are root (initdb
    refuses root), ourselves otherwise."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam("postgres")
    except KeyError:
        pytest.skip("running as root without a postgres account to run a private cluster as")
    return "postgres"


@contextmanager
def private_postgres(extra_hosts: Sequence[str] = ()) -> Iterator[PrivatePostgres]:
    """A fresh cluster on a free port, listening on 127.0.0.1 and ``extra_hosts``
    (addresses that must already exist on this host); removed on exit."""
    binaries = server_binaries()
    if binaries is None or not (binaries / "pg_ctl").exists():
        pytest.skip("the PostgreSQL server binaries (initdb, pg_ctl) are not installed")
    run_as = _owner()
    folder = Path(tempfile.mkdtemp(prefix="digest-pg-"))
    if run_as is not None:
        account = pwd.getpwnam(run_as)
        os.chown(folder, account.pw_uid, account.pw_gid)
    folder.chmod(0o700)
    cluster = PrivatePostgres(binaries, folder, free_port(), ("127.0.0.1", *extra_hosts), run_as)
    try:
        cluster._run(
            str(binaries / "initdb"),
            "-D",
            str(cluster.data),
            "-U",
            "postgres",
            "--auth=trust",
            "--no-sync",
            "-E",
            "UTF8",
            "--locale=C",
        )
        if extra_hosts:
            # Trust the namespaces' addresses too (initdb trusts loopback only).
            hba = cluster.data / "pg_hba.conf"
            lines = "".join(f"host all all {host}/32 trust\n" for host in _peers(extra_hosts))
            _append_as(run_as, hba, lines)
        cluster.start()
        yield cluster
    finally:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            cluster.stop("immediate")  # unless it never started, or is down already
        shutil.rmtree(folder, ignore_errors=True)


def _peers(hosts: Sequence[str]) -> list[str]:
    """For each host end ``a.b.c.1`` of a /30 veth pair, the namespace end ``a.b.c.2``."""
    peers = []
    for host in hosts:
        prefix, _, last = host.rpartition(".")
        peers.append(f"{prefix}.{int(last) + 1}")
    return peers


def _append_as(user: str | None, path: Path, text: str) -> None:
    with path.open("a", encoding="utf-8") as handle:
        handle.write(text)
    if user is not None:
        account = pwd.getpwnam(user)
        os.chown(path, account.pw_uid, account.pw_gid)
