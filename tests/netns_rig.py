"""Worker "hosts" in Linux network namespaces, for partition tests.

Each host is a network namespace with two veth pairs to this machine: one it reaches
the database over, one it reaches the mail server over (10.231.N.0/30 and
10.232.N.0/30; the host end is ``.1``, the namespace end ``.2``). Cutting a host's
database link (``ip link set … down`` on our end) is a network partition between that
worker and PostgreSQL while its SMTP sessions stay up: exactly the case where a worker
that did not fence itself would keep sending rows another worker has taken over.

Skips the calling test with the reason when namespaces cannot be made here (not root,
no CAP_NET_ADMIN, no ``ip``).
"""

from __future__ import annotations

import random
import shutil
import subprocess
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import pytest


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=check)


@dataclass
class Host:
    """One worker host: a namespace and its two links."""

    name: str
    db_link: str
    mail_link: str
    #: our end of the database link (PostgreSQL listens here for this host)
    db_host: str
    #: our end of the mail link (the SMTP server listens here for this host)
    mail_host: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def popen(
        self, argv: Sequence[str], env: dict[str, str], out: IO[bytes], cwd: Path
    ) -> subprocess.Popen[bytes]:
        """Run ``argv`` inside the namespace."""
        proc = subprocess.Popen(
            ["ip", "netns", "exec", self.name, *argv],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            cwd=cwd,
        )
        self.procs.append(proc)
        return proc

    def cut_db(self) -> None:
        """Partition this host from the database: its packets go nowhere."""
        _ip("link", "set", self.db_link, "down")

    def restore_db(self) -> None:
        _ip("link", "set", self.db_link, "up")


def _can_make_namespaces() -> str | None:
    """None when ``ip netns`` works here, else why not."""
    if shutil.which("ip") is None:
        return "the ip command (iproute2) is missing"
    probe = f"dgp{uuid.uuid4().hex[:8]}"
    made = _ip("netns", "add", probe, check=False)
    if made.returncode != 0:
        return f"ip netns is not permitted here: {made.stderr.strip()}"
    _ip("netns", "del", probe, check=False)
    return None


def _link(host_end: str, ns_end: str, namespace: str, host_addr: str, ns_addr: str) -> None:
    _ip("link", "add", host_end, "type", "veth", "peer", "name", ns_end)
    _ip("link", "set", ns_end, "netns", namespace)
    _ip("addr", "add", f"{host_addr}/30", "dev", host_end)
    _ip("link", "set", host_end, "up")
    _ip("-n", namespace, "addr", "add", f"{ns_addr}/30", "dev", ns_end)
    _ip("-n", namespace, "link", "set", ns_end, "up")


@contextmanager
def worker_hosts(count: int = 2) -> Iterator[list[Host]]:
    """``count`` namespaces, each with a database link and a mail link; removed (with
    any process still running in them) on exit."""
    why = _can_make_namespaces()
    if why is not None:
        pytest.skip(why)
    tag = uuid.uuid4().hex[:6]
    base = random.randrange(0, 60) * 4  # two test runs at once pick different subnets
    hosts: list[Host] = []
    try:
        for i in range(count):
            name = f"dg{tag}{i}"
            _ip("netns", "add", name)
            octet = base + i
            host = Host(
                name=name,
                db_link=f"dgd{tag}{i}",
                mail_link=f"dgm{tag}{i}",
                db_host=f"10.231.{octet}.1",
                mail_host=f"10.232.{octet}.1",
            )
            hosts.append(host)
            _ip("-n", name, "link", "set", "lo", "up")
            _link(host.db_link, "db0", name, host.db_host, f"10.231.{octet}.2")
            _link(host.mail_link, "mail0", name, host.mail_host, f"10.232.{octet}.2")
        yield hosts
    finally:
        for host in hosts:
            for proc in host.procs:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait(timeout=10)
            _ip("link", "del", host.db_link, check=False)
            _ip("link", "del", host.mail_link, check=False)
            _ip("netns", "del", host.name, check=False)
