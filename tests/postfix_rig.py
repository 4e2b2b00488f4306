"""A private Postfix instance for tests: Debian's postfix with its own configuration
directory, queue and log under a temporary folder, listening on a loopback port,
started and stopped by the test (never the system's instance, never port 25).

It relays everything to one loopback SMTP server (``default_transport``) except the
VERP domain, which goes to ``digest inbound`` (``transport_maps``, SMTP or LMTP).
Queue timings are cut to seconds so a deferral is retried, warned about and (with
``lifetime``) given up on while the test waits.

:func:`unavailable` says why Postfix cannot run here (not installed, not root); the
test skips with that reason.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

SBIN = Path("/usr/sbin")
MASTER_CF = Path("/usr/share/postfix/master.cf.dist")


def unavailable() -> str | None:
    """Why a private Postfix cannot start here; None when it can."""
    if not (SBIN / "postfix").exists() or not MASTER_CF.exists():
        return "Postfix is not installed (apt-get install postfix; .ci/run installs it)"
    if os.geteuid() != 0:
        return "a Postfix instance needs root to start its master process"
    try:
        import pwd

        pwd.getpwnam("postfix")
    except KeyError:
        return "the postfix user is missing (the Debian package creates it)"
    return None


@dataclass
class Postfix:
    root: Path
    port: int

    @property
    def config(self) -> Path:
        return self.root / "conf"

    def log(self) -> str:
        path = self.root / "maillog"
        return path.read_text(errors="replace") if path.exists() else ""

    def queue(self) -> str:
        found = subprocess.run(
            [str(SBIN / "postqueue"), "-c", str(self.config), "-p"],
            capture_output=True,
            text=True,
            check=False,
        )
        return found.stdout + found.stderr


def transport_entry(domain: str, port: int, lmtp: bool) -> str:
    """The transport map's line that routes ``domain`` to digest inbound."""
    where = f"lmtp:inet:127.0.0.1:{port}" if lmtp else f"smtp:[127.0.0.1]:{port}"
    return f"{domain}   {where}"


def _postconf(config: Path, *args: str) -> None:
    subprocess.run([str(SBIN / "postconf"), "-c", str(config), *args], check=True)


@contextmanager
def running_postfix(
    *,
    port: int,
    relay_port: int,
    bounce_domain: str,
    inbound_port: int,
    lmtp: bool = False,
    lifetime: str = "1h",
) -> Iterator[Postfix]:
    """Postfix listening on 127.0.0.1:``port``; stopped (and its folder gone) on exit.

    Its folder is a fresh one under the system's temporary folder, open for reading
    (pytest's are private to root, and Postfix's daemons run as ``postfix``)."""
    root = Path(tempfile.mkdtemp(prefix="digest-postfix-"))
    root.chmod(0o755)
    postfix = Postfix(root, port)
    config = postfix.config
    config.mkdir(parents=True)
    # The packaged default, whatever the system's own instance was configured with.
    shutil.copy(MASTER_CF, config / "master.cf")
    (config / "main.cf").write_text("")
    (root / "queue").mkdir(mode=0o755)
    data = root / "data"
    data.mkdir()
    shutil.chown(data, "postfix")
    # The configuration docs/delivery.md gives operators: the bounce domain is a relay
    # domain, and a transport map hands it to digest inbound.
    (config / "transport").write_text(transport_entry(bounce_domain, inbound_port, lmtp) + "\n")
    subprocess.run(
        [str(SBIN / "postmap"), "-c", str(config), f"hash:{config / 'transport'}"], check=True
    )
    settings = {
        "compatibility_level": "3.6",
        "queue_directory": str(root / "queue"),
        "data_directory": str(data),
        "maillog_file": str(root / "maillog"),
        "maillog_file_prefixes": str(root),
        "myhostname": "relay.digest.test",
        "mydomain": "digest.test",
        "mydestination": "",
        "local_recipient_maps": "",
        "alias_maps": "",
        "alias_database": "",
        "relay_domains": bounce_domain,
        "inet_interfaces": "127.0.0.1",
        "inet_protocols": "ipv4",
        "mynetworks": "127.0.0.0/8",
        "smtpd_relay_restrictions": "permit_mynetworks, reject_unauth_destination",
        "default_transport": f"smtp:[127.0.0.1]:{relay_port}",
        "relay_transport": f"smtp:[127.0.0.1]:{relay_port}",
        "transport_maps": f"hash:{config / 'transport'}",
        "smtp_dns_support_level": "disabled",
        "lmtp_dns_support_level": "disabled",
        "smtp_tls_security_level": "none",
        "smtpd_tls_security_level": "none",
        # Seconds, not hours: retry, warn and give up while the test waits.
        "queue_run_delay": "1s",
        "minimal_backoff_time": "1s",
        "maximal_backoff_time": "2s",
        "delay_warning_time": "1s",
        "maximal_queue_lifetime": lifetime,
        "bounce_queue_lifetime": lifetime,
        "in_flow_delay": "0",
        "smtp_connection_cache_on_demand": "no",
    }
    _postconf(config, *(f"{k}={v}" for k, v in settings.items()))
    # The private instance: no chroot (no copied /etc files), the SMTP server on the
    # test's port instead of 25, a log service writing maillog_file, nothing local.
    _postconf(config, "-F", "*/*/chroot = n")
    _postconf(config, "-M#", "smtp/inet")
    _postconf(
        config,
        "-M",
        f"127.0.0.1:{port}/inet = 127.0.0.1:{port} inet n - n - - smtpd",
    )
    _postconf(config, "-M", "postlog/unix-dgram = postlog unix-dgram n - n - 1 postlogd")
    for service in ("pickup/unix", "pickup/fifo", "local/unix", "virtual/unix", "showq/unix"):
        _postconf(config, "-MX", service)
    start = subprocess.run(
        [str(SBIN / "postfix"), "-c", str(config), "start"], capture_output=True, text=True
    )
    if start.returncode != 0:
        log = postfix.log()
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"postfix did not start: {start.stdout}{start.stderr}{log}")
    try:
        yield postfix
    finally:
        subprocess.run(
            [str(SBIN / "postfix"), "-c", str(config), "stop"], capture_output=True, check=False
        )
        shutil.rmtree(root, ignore_errors=True)
