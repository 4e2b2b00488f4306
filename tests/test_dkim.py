"""DKIM signing of SMTP sends, verified by dkimpy against the key a loopback DNS server
publishes; ``digest doctor`` against the same server."""

from __future__ import annotations

import hashlib
import random
import socket
from pathlib import Path

import dkim
import pytest
from cli_support import DigestCLI, settings_env
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa
from dns_server import LoopbackDNS, dns_server  # noqa: F401
from servers import RecordingSMTPServer
from smtp_faults import seed_issue_store
from sqlalchemy.engine import Engine
from store_support import WEEK

from digest.core.recipient import Recipient
from digest.core.settings import Settings
from digest.exceptions import ConfigError
from digest.issue.freeze import freeze_issue, issue_message
from digest.jobs.weekly import weekly_job
from digest.mail.dkim import DkimSigner, hash_simple_body
from digest.mail.doctor import resolver, run_checks, txt_records
from digest.mail.mimefast import smtp_data
from digest.store.engine import session_scope
from digest.transports.smtp import SMTPTransport

DOMAIN = "verdicts.test"
SELECTOR = "mail2026"


def _key_file(tmp_path: Path, kind: str) -> Path:
    key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
    if kind == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        key = ed25519.Ed25519PrivateKey.generate()
    path = tmp_path / f"dkim-{kind}.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return path


def _dnsfunc(settings: Settings):  # type: ignore[no-untyped-def]
    """dkimpy's DNS hook, answered by the loopback server through dnspython."""
    res = resolver(settings)

    def lookup(name: bytes, timeout: int = 5) -> bytes:
        found = txt_records(res, name.decode("ascii").rstrip("."))
        return found[0].encode("ascii") if found else b""

    return lookup


def _publish(dns: LoopbackDNS, signer: DkimSigner) -> None:
    dns.zone.publish(f"{SELECTOR}._domainkey.{DOMAIN}", signer.public_record())
    dns.zone.publish(DOMAIN, "v=spf1 ip4:192.0.2.10 -all", "google-site-verification=abc")
    dns.zone.publish(f"_dmarc.{DOMAIN}", "v=DMARC1; p=quarantine; rua=mailto:dmarc@verdicts.test")


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
def test_smtp_sends_are_signed_and_verify_against_the_published_key(
    kind: str,
    settings: Settings,
    engine: Engine,
    tmp_path: Path,
    smtp_server: RecordingSMTPServer,
    dns_server: LoopbackDNS,  # noqa: F811
) -> None:
    signed = settings.model_copy(
        update={
            "transport": "smtp",
            "smtp_host": smtp_server.host,
            "smtp_port": smtp_server.port,
            "dkim_selector": SELECTOR,
            "dkim_private_key_file": _key_file(tmp_path, kind),
            "dns_server": dns_server.address,
        }
    )
    signer = DkimSigner.from_settings(signed)
    assert signer is not None
    _publish(dns_server, signer)
    seed_issue_store(engine, signed, tmp_path, 3)
    weekly_job(signed, engine=engine, transport=SMTPTransport(signed), week=WEEK)
    assert len(smtp_server.messages) == 3
    lookup = _dnsfunc(signed)
    for received in smtp_server.messages:
        raw = received.data.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        assert raw.startswith(b"DKIM-Signature: v=1; a=" + signer.algorithm.encode())
        assert dkim.verify(raw, dnsfunc=lookup), received.rcpt_tos
        parsed = received.parsed()
        names = "".join(str(parsed["DKIM-Signature"]).split()).split("h=", 1)[1].split(";")[0]
        for header in (
            "from", "to", "subject", "date", "message-id", "list-id", "list-unsubscribe",
            "list-unsubscribe-post", "feedback-id", "mime-version", "content-type",
        ):  # fmt: skip
            assert header in names.split(":"), header
        assert parsed["Feedback-ID"] == f"issue-1:weekly-verdicts.{DOMAIN}:newsletter:{DOMAIN}"
        signature = raw.split(b"\r\nFrom: ", 1)[0]
        assert all(len(line) <= 78 for line in signature.split(b"\r\n")), signature
        # Any change in transit breaks the signature.
        tampered = raw.replace(b"Subject: ", b"Subject: Re: ", 1)
        assert not dkim.verify(tampered, dnsfunc=lookup)
        body_changed = raw.replace(b"Unsubscribe", b"Unsubscr1be", 1)
        assert body_changed != raw and not dkim.verify(body_changed, dnsfunc=lookup)


def test_signer_refuses_weak_or_half_configured_keys(settings: Settings, tmp_path: Path) -> None:
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505
    path = tmp_path / "weak.pem"
    path.write_bytes(
        weak.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(ConfigError, match="2048"):
        DkimSigner.from_settings(
            settings.model_copy(update={"dkim_selector": "s", "dkim_private_key_file": path})
        )
    with pytest.raises(ConfigError, match="DIGEST_DKIM_PRIVATE_KEY_FILE"):
        DkimSigner.from_settings(settings.model_copy(update={"dkim_selector": "s"}))
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key")
    with pytest.raises(ConfigError, match="PEM"):
        DkimSigner.from_settings(
            settings.model_copy(update={"dkim_selector": "s", "dkim_private_key_file": garbage})
        )
    assert DkimSigner.from_settings(settings) is None  # not configured: unsigned


def simple_body(body: bytes) -> bytes:
    """RFC 6376 3.4.3 "simple", the plain way: the reference for the chunked hash."""
    stripped = body.rstrip(b"\r\n")
    if not stripped:
        return b"\r\n"
    # rstrip took the last line's CRLF with the empty lines; put exactly one back.
    return stripped + b"\r\n"


def test_simple_body_canonicalisation() -> None:
    assert simple_body(b"") == b"\r\n"
    assert simple_body(b"a\r\n\r\n\r\n") == b"a\r\n"
    assert simple_body(b"a\r\nb") == b"a\r\nb\r\n"
    assert simple_body(b"a \r\n") == b"a \r\n"  # simple keeps trailing spaces


def test_the_body_hash_of_parts_is_the_hash_of_their_simple_join() -> None:
    rng = random.Random(11)
    alphabet = [b"\r\n", b"\r", b"\n", b"a", b" ", b"x\r\n"]
    for _ in range(3000):
        chunks = [
            b"".join(rng.choice(alphabet) for _ in range(rng.randint(0, 5)))
            for _ in range(rng.randint(0, 5))
        ]
        expected = hashlib.sha256(simple_body(b"".join(chunks))).digest()
        assert hash_simple_body(chunks) == expected, chunks
        assert hash_simple_body([memoryview(c) for c in chunks]) == expected, chunks


@pytest.mark.parametrize("kind", ["rsa", "ed25519"])
def test_the_fast_paths_signed_data_is_the_whole_message_signed(
    kind: str, settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    """The skeleton signs its parts unjoined: the same bytes as signing the stdlib
    message whole, and dkimpy verifies them."""
    seed_issue_store(engine, settings, tmp_path, 0)
    with session_scope(engine) as session:
        issue = freeze_issue(session, WEEK, settings)
        assert issue is not None
        message = issue_message(issue, settings)
    signer = DkimSigner(SELECTOR, DOMAIN, _key_file(tmp_path, kind).read_bytes())
    record = signer.public_record().encode("ascii")
    assert message._compiled() is not None
    for i, name in enumerate(["", "Ada", "Zoë Ünïcode", "x" * 90, "=?utf-8?q?x?="] * 4):
        recipient = Recipient(i * 7919 + 1, f"reader{i}@example.com", name)
        fast = message.as_signed_data(recipient, signer)
        assert fast == smtp_data(signer.sign(message.as_bytes_slow(recipient))), name
        raw = fast[:-3].replace(b"\r\n..", b"\r\n.")  # undo the dot-stuffing
        assert dkim.verify(raw, dnsfunc=lambda _name, timeout=5: record), name


def _doctor_settings(
    settings: Settings, tmp_path: Path, dns: LoopbackDNS
) -> tuple[Settings, DkimSigner]:
    """Settings with an RSA key whose records (SPF, DKIM, DMARC) ``dns`` publishes."""
    s = settings.model_copy(
        update={
            "dkim_selector": SELECTOR,
            "dkim_private_key_file": _key_file(tmp_path, "rsa"),
            "dns_server": dns.address,
        }
    )
    signer = DkimSigner.from_settings(s)
    assert signer is not None
    _publish(dns, signer)
    return s, signer


def test_doctor_passes_with_good_records_and_names_each_problem(
    settings: Settings,
    tmp_path: Path,
    dns_server: LoopbackDNS,  # noqa: F811
) -> None:
    s, signer = _doctor_settings(settings, tmp_path, dns_server)
    assert [(c.name, c.status) for c in run_checks(s)] == [
        ("SPF", "ok"),
        ("DKIM", "ok"),
        ("DMARC", "ok"),
    ]
    # Another key published than the one we sign with.
    (tmp_path / "other").mkdir()
    other = DkimSigner(SELECTOR, DOMAIN, _key_file(tmp_path / "other", "ed25519").read_bytes())
    dns_server.zone.publish(f"{SELECTOR}._domainkey.{DOMAIN}", other.public_record())
    dns_server.zone.publish(DOMAIN, "v=spf1 +all")
    dns_server.zone.publish(f"_dmarc.{DOMAIN}", "v=DMARC1; p=none")
    checks = {c.name: c for c in run_checks(s)}
    assert checks["SPF"].status == "fail" and "any server" in checks["SPF"].detail
    assert checks["DKIM"].status == "fail" and "not the public half" in checks["DKIM"].detail
    assert signer.public_record() in checks["DKIM"].detail  # says what to publish
    assert checks["DMARC"].status == "warn" and "p=none" in checks["DMARC"].detail
    del dns_server.zone.records[f"_dmarc.{DOMAIN}"]
    del dns_server.zone.records[DOMAIN]
    checks = {c.name: c for c in run_checks(s)}
    assert checks["SPF"].status == "fail" and "no v=spf1" in checks["SPF"].detail
    assert checks["DMARC"].status == "fail"


def test_doctor_waits_out_a_silent_dns_server_once(settings: Settings, tmp_path: Path) -> None:
    """A DNS server that never answers fails the first lookup at its timeout; the
    checks after it say they were not run rather than each waiting as long again."""
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    with silent:
        s = settings.model_copy(
            update={
                "dkim_selector": SELECTOR,
                "dkim_private_key_file": _key_file(tmp_path, "rsa"),
                "dns_server": f"127.0.0.1:{silent.getsockname()[1]}",
            }
        )
        checks = run_checks(s)
    assert [(c.name, c.status) for c in checks] == [
        ("SPF", "fail"),
        ("DKIM", "fail"),
        ("DMARC", "fail"),
    ]
    assert checks[0].detail.startswith("DNS lookup failed")
    for check in checks[1:]:
        assert check.detail == "not checked: the DNS server did not answer the SPF lookup"


def test_doctor_command_exit_codes(
    settings: Settings,
    tmp_path: Path,
    dns_server: LoopbackDNS,  # noqa: F811
) -> None:
    s, _signer = _doctor_settings(settings, tmp_path, dns_server)
    cli = DigestCLI(
        env={
            **settings_env(s),
            "DIGEST_DKIM_SELECTOR": SELECTOR,
            "DIGEST_DKIM_PRIVATE_KEY_FILE": str(s.dkim_private_key_file),
            "DIGEST_DNS_SERVER": dns_server.address,
        }
    )
    result = cli.ok("doctor")
    assert "3 of 3 checks pass" in result.stdout and "signed now verifies" in result.stdout
    assert [c["status"] for c in cli.json("doctor", "--json")] == ["ok", "ok", "ok"]
    dns_server.zone.records.pop(f"{SELECTOR}._domainkey.{DOMAIN}")
    failed = cli("doctor")
    assert failed.exit_code == 1 and "no DKIM key record" in failed.stdout
