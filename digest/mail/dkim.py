"""DKIM signatures (RFC 6376; Ed25519 per RFC 8463) for the messages the SMTP transport
sends, made at the speed of the fast message path.

``dkim.sign`` from dkimpy parses the whole message and canonicalises it line by line
in Python: several milliseconds for a 55 KB digest, more than the RSA signature
itself. The body differs per recipient (greeting, unsubscribe link), so it must be
hashed per message — but "simple" body canonicalisation of bytes we built ourselves
(CRLF already, no trailing blank lines beyond one) is a single rstrip, so that is one
SHA-256 call over the body; only the dozen signed header fields are canonicalised
("relaxed") in Python. The tests verify the result with dkimpy.

Configuration: ``DIGEST_DKIM_SELECTOR``, ``DIGEST_DKIM_DOMAIN`` (default: the From
domain) and ``DIGEST_DKIM_PRIVATE_KEY_FILE`` (PEM, RSA of at least 2048 bits or
Ed25519).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from digest.config import Settings
from digest.exceptions import ConfigError

logger = logging.getLogger(__name__)

#: What we sign when present, in this order (From twice: a second From added in transit
#: breaks the signature instead of riding on it).
SIGNED_HEADERS = (
    "from",
    "to",
    "subject",
    "date",
    "message-id",
    "reply-to",
    "list-id",
    "list-unsubscribe",
    "list-unsubscribe-post",
    "feedback-id",
    "auto-submitted",
    "mime-version",
    "content-type",
    "content-transfer-encoding",
)
OVERSIGNED = ("from",)
MIN_RSA_BITS = 2048
_WSP = re.compile(rb"[ \t]+")
_FOLD = re.compile(rb"\r\n(?=[ \t])")


def _relaxed_header(name: bytes, value: bytes) -> bytes:
    """RFC 6376 3.4.2 "relaxed" for one field: lower-case name, unfolded value with
    runs of whitespace made one space and none at the ends."""
    if b"\r\n" in value or b"\t" in value or b"  " in value:
        value = _WSP.sub(b" ", _FOLD.sub(b"", value))
    return name.strip().lower() + b":" + value.strip(b" ")


def simple_body(body: bytes) -> bytes:
    """RFC 6376 3.4.3 "simple": trailing empty lines go, the body ends with one CRLF."""
    stripped = body.rstrip(b"\r\n")
    if not stripped:
        return b"\r\n"
    # rstrip took the last line's CRLF with the empty lines; put exactly one back.
    return stripped + b"\r\n"


def _fields(head: bytes) -> list[tuple[bytes, bytes]]:
    """The header block as (name, raw value including folds) in order."""
    fields: list[tuple[bytes, bytes]] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            name, value = fields[-1]
            fields[-1] = (name, value + b"\r\n" + line)
        elif line:
            name, _, value = line.partition(b":")
            fields.append((name, value))
    return fields


class DkimSigner:
    """Signs whole messages (CRLF line ends, as every transport sends them)."""

    def __init__(self, selector: str, domain: str, key_pem: bytes) -> None:
        self.selector = selector
        self.domain = domain
        key = serialization.load_pem_private_key(key_pem, password=None)
        if isinstance(key, rsa.RSAPrivateKey):
            if key.key_size < MIN_RSA_BITS:
                raise ConfigError(
                    f"DIGEST_DKIM_PRIVATE_KEY_FILE: RSA key of {key.key_size} bits; "
                    f"receivers want at least {MIN_RSA_BITS}"
                )
            self.algorithm = "rsa-sha256"
        elif isinstance(key, ed25519.Ed25519PrivateKey):
            self.algorithm = "ed25519-sha256"
        else:
            raise ConfigError("DIGEST_DKIM_PRIVATE_KEY_FILE: not an RSA or Ed25519 private key")
        self._key = key
        self._head = (
            f"v=1; a={self.algorithm}; c=relaxed/simple;\r\n d={domain}; s={selector};\r\n h="
        ).encode("ascii")
        self._h_tags: dict[tuple[bytes, ...], tuple[list[bytes], bytes]] = {}

    @classmethod
    def from_settings(cls, settings: Settings) -> DkimSigner | None:
        """The configured signer, or None when DKIM is not configured."""
        if not settings.dkim_selector and not settings.dkim_private_key_file:
            return None
        if not settings.dkim_selector or not settings.dkim_private_key_file:
            raise ConfigError(
                "DKIM needs both DIGEST_DKIM_SELECTOR and DIGEST_DKIM_PRIVATE_KEY_FILE"
            )
        try:
            pem = Path(settings.dkim_private_key_file).read_bytes()
        except OSError as exc:
            raise ConfigError(f"DIGEST_DKIM_PRIVATE_KEY_FILE: cannot read it: {exc}") from exc
        try:
            return cls(settings.dkim_selector, settings.effective_dkim_domain, pem)
        except ValueError as exc:
            raise ConfigError(
                f"DIGEST_DKIM_PRIVATE_KEY_FILE: not a PEM private key: {exc}"
            ) from exc

    def _names(self, present: tuple[bytes, ...]) -> tuple[list[bytes], bytes]:
        """The header names to sign for a message with ``present`` fields, and the
        folded h= value (every copy of an issue has the same fields: computed once)."""
        cached = self._h_tags.get(present)
        if cached is None:
            names = [h for h in SIGNED_HEADERS if h.encode() in present]
            names += [h for h in OVERSIGNED if h in names]
            cached = ([h.encode() for h in names], _fold_names(names).encode("ascii"))
            if len(self._h_tags) < 64:
                self._h_tags[present] = cached
        return cached

    def public_record(self) -> str:
        """The TXT record to publish at ``selector._domainkey.domain``."""
        return f"v=DKIM1; k={self.algorithm.split('-')[0]}; p={public_key_b64(self._key)}"

    def sign(self, message: bytes) -> bytes:
        """``message`` with a DKIM-Signature header field in front."""
        head, sep, body = message.partition(b"\r\n\r\n")
        if not sep:
            raise ValueError("a message needs a header block and a body")
        body_hash = base64.b64encode(hashlib.sha256(simple_body(body)).digest())
        # RFC 6376 5.4.2: several instances of a name are signed from the bottom up.
        by_name: dict[bytes, list[bytes]] = {}
        for name, value in _fields(head):
            by_name.setdefault(name.strip().lower(), []).append(value)
        names, h_tag = self._names(tuple(by_name))
        lines = []
        for h in names:
            instances = by_name.get(h)
            if instances:
                lines.append(_relaxed_header(h, instances.pop()) + b"\r\n")
        tags = self._head + h_tag + b";\r\n bh=" + body_hash + b";\r\n b="
        lines.append(_relaxed_header(b"DKIM-Signature", b" " + tags))
        signed = b"".join(lines)
        if isinstance(self._key, rsa.RSAPrivateKey):
            signature = self._key.sign(signed, padding.PKCS1v15(), hashes.SHA256())
        else:
            signature = self._key.sign(hashlib.sha256(signed).digest())
        b64 = base64.b64encode(signature)
        folded = b"\r\n ".join(b64[i : i + 72] for i in range(0, len(b64), 72))
        return b"DKIM-Signature: " + tags + b"\r\n " + folded + b"\r\n" + message


def _fold_names(names: list[str]) -> str:
    """The h= list folded between names so no line passes 78 characters (RFC 6376
    allows folding whitespace around the colons)."""
    lines, line = [], " h="
    for index, name in enumerate(names):
        piece = name + (":" if index < len(names) - 1 else "")
        if len(line) + len(piece) > 76:
            lines.append(line)
            line = " "
        line += piece
    lines.append(line)
    return "\r\n".join(lines)[3:]


def public_key_b64(key: rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey) -> str:
    """The p= value of a DKIM key record for ``key``'s public half."""
    public = key.public_key()
    if isinstance(public, ed25519.Ed25519PublicKey):
        raw = public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    else:
        raw = public.public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    return base64.b64encode(raw).decode("ascii")
