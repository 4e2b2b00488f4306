"""A private Dovecot IMAP server for tests: Debian's dovecot with its own configuration,
TLS certificate (signed by a CA made for the test), one user and one Maildir, in a
fresh folder, on a loopback port; started and stopped by the test.

:func:`unavailable` says why it cannot run here (not installed, not root); the test
skips with that reason.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

DOVECOT = Path("/usr/sbin/dovecot")
DH = Path("/usr/share/dovecot/dh.pem")
USER, PASSWORD = "bounces", "imap-test-password"
#: The mailbox owner (dovecot refuses to serve mail as root).
MAIL_OWNER = "nobody"


def unavailable() -> str | None:
    if not DOVECOT.exists():
        return "Dovecot is not installed (apt-get install dovecot-imapd; .ci/run installs it)"
    if os.geteuid() != 0:
        return "a Dovecot instance needs root to start"
    for user in ("dovecot", "dovenull", MAIL_OWNER):
        try:
            pwd.getpwnam(user)
        except KeyError:
            return f"the {user} user is missing (the Debian package creates it)"
    return None


@dataclass
class Dovecot:
    root: Path
    port: int
    ca_file: Path

    @property
    def maildir(self) -> Path:
        return self.root / "mail"

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def fix_owner(self) -> None:
        """Messages the test wrote into the Maildir belong to the mail user."""
        owner = pwd.getpwnam(MAIL_OWNER)
        for folder, dirs, files in os.walk(self.maildir):
            for name in [*dirs, *files]:
                os.chown(os.path.join(folder, name), owner.pw_uid, owner.pw_gid)
        os.chown(self.maildir, owner.pw_uid, owner.pw_gid)


def _certificates(root: Path) -> tuple[Path, Path, Path]:
    """A CA, and a server certificate for 127.0.0.1 signed by it."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "digest test CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    paths = root / "ca.pem", root / "cert.pem", root / "key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    paths[2].chmod(0o600)
    return paths


@contextmanager
def running_dovecot(port: int) -> Iterator[Dovecot]:
    """Dovecot with IMAPS on 127.0.0.1:``port``; stopped and removed on exit."""
    root = Path(tempfile.mkdtemp(prefix="digest-dovecot-"))
    root.chmod(0o755)
    ca, cert, key = _certificates(root)
    owner = pwd.getpwnam(MAIL_OWNER)
    for sub in ("cur", "new", "tmp"):
        (root / "mail" / sub).mkdir(parents=True)
    (root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
    dh = f"ssl_dh = <{DH}\n" if DH.exists() else ""
    config = root / "dovecot.conf"
    config.write_text(
        f"""
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = required
ssl_cert = <{cert}
ssl_key = <{key}
{dh}disable_plaintext_auth = yes
auth_mechanisms = plain
default_internal_user = dovecot
default_login_user = dovenull
mail_location = maildir:{root}/mail
first_valid_uid = {owner.pw_uid}
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={owner.pw_uid} gid={owner.pw_gid} home={root}/home
}}
service imap-login {{
  inet_listener imap {{
    port = 0
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
"""
    )
    dovecot = Dovecot(root, port, ca)
    dovecot.fix_owner()
    # Output to a file, not a pipe: the daemon keeps what it inherits open.
    with (root / "start.log").open("wb") as out:
        start = subprocess.run(
            [str(DOVECOT), "-c", str(config)], stdout=out, stderr=subprocess.STDOUT, check=False
        )
    if start.returncode != 0:
        said = (root / "start.log").read_text(errors="replace") + dovecot.log()
        shutil.rmtree(root, ignore_errors=True)
        raise RuntimeError(f"dovecot did not start: {said}")
    try:
        yield dovecot
    finally:
        subprocess.run(
            [str(DOVECOT), "-c", str(config), "stop"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            check=False,
        )
        shutil.rmtree(root, ignore_errors=True)
