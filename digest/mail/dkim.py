"""DKIM signatures (RFC 6376; Ed25519 per RFC 8463) for the messages the SMTP transport
sends, made at the speed of the fast message path.

``dkim.sign`` from dkimpy parses the whole message and canonicalises it line by line
in Python: about 10 ms for a 59 KB digest, more than the RSA signature itself. The
body differs per recipient (greeting, unsubscribe link), so it must be hashed per
message — but "simple" body canonicalisation (RFC 6376 3.4.3) of bytes we built
ourselves (CRLF already) only touches the trailing line breaks, so the body is fed to
SHA-256 as the fast path's pieces, never joined for it (:func:`hash_simple_body`).
Only the dozen signed header fields are canonicalised ("relaxed") in Python, those
that are the same for every recipient once. The tests verify the result with dkimpy.

Configuration: ``DIGEST_DKIM_SELECTOR``, ``DIGEST_DKIM_DOMAIN`` (default: the From
domain) and ``DIGEST_DKIM_PRIVATE_KEY_FILE`` (PEM, RSA of at least 2048 bits or
Ed25519).
"""

from __future__ import annotations

import base64
import hashlib
import logging
import re
from collections.abc import Sequence
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, padding, rsa

from digest.core.settings import Settings
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


def hash_simple_body(chunks: Sequence[bytes | memoryview]) -> bytes:
    """SHA-256 of the "simple" canonical body made of ``chunks`` (trailing empty lines
    dropped, one CRLF at the end), without joining or copying them: only the end of
    the last chunk that is not all line breaks is looked at."""
    hasher = hashlib.sha256()
    last, end = len(chunks) - 1, 0
    while last >= 0:
        chunk = chunks[last]
        end = len(chunk)
        while end and chunk[end - 1] in (13, 10):
            end -= 1
        if end:
            break
        last -= 1
    if last < 0:
        hasher.update(b"\r\n")
        return hasher.digest()
    for index in range(last):
        hasher.update(chunks[index])
    chunk = chunks[last]
    if len(chunk) == end + 2 and chunk[end:] == b"\r\n":
        hasher.update(chunk)  # already ends with exactly one CRLF: the usual case
    else:
        hasher.update(memoryview(chunk)[:end])
        hasher.update(b"\r\n")
    return hasher.digest()


def split_fields(head: bytes) -> list[bytes]:
    """A header block (CRLF-ended lines) as whole fields, folds and CRLF included."""
    fields: list[bytes] = []
    for line in head.split(b"\r\n"):
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line + b"\r\n"
        elif line:
            fields.append(line + b"\r\n")
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
        self._h_tags: dict[tuple[bytes, ...], tuple[list[bytes], bytes, bytes]] = {}
        # field as sent → (lower-case name, "relaxed" line): an issue's static headers
        # are the same bytes for every recipient, so they are canonicalised once.
        self._canon: dict[bytes, tuple[bytes, bytes]] = {}

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

    def _names(self, present: tuple[bytes, ...]) -> tuple[list[bytes], bytes, bytes]:
        """The header names to sign for a message with ``present`` fields, the tags
        of the signature up to ``bh=`` as sent, and their "relaxed" form (every copy
        of an issue has the same fields: computed once)."""
        cached = self._h_tags.get(present)
        if cached is None:
            names = [h for h in SIGNED_HEADERS if h.encode() in present]
            names += [h for h in OVERSIGNED if h in names]
            tags = self._head + _fold_names(names).encode("ascii") + b";\r\n bh="
            cached = ([h.encode() for h in names], tags, _relaxed_header(b"DKIM-Signature", tags))
            if len(self._h_tags) < 64:
                self._h_tags[present] = cached
        return cached

    def _canonical(self, field: bytes) -> tuple[bytes, bytes]:
        hit = self._canon.get(field)
        if hit is None:
            name, _, value = field.partition(b":")
            name = name.strip().lower()
            hit = (name, _relaxed_header(name, value.removesuffix(b"\r\n")) + b"\r\n")
            if len(self._canon) >= 512:  # per-recipient fields: start again, never grow
                self._canon.clear()
            self._canon[field] = hit
        return hit

    def public_record(self) -> str:
        """The TXT record to publish at ``selector._domainkey.domain``."""
        return f"v=DKIM1; k={self.algorithm.split('-')[0]}; p={public_key_b64(self._key)}"

    def sign(self, message: bytes) -> bytes:
        """``message`` with a DKIM-Signature header field in front."""
        end = message.find(b"\r\n\r\n")
        if end < 0:
            raise ValueError("a message needs a header block and a body")
        body = memoryview(message)[end + 4 :]
        return self.field(split_fields(message[: end + 2]), [body]) + message

    def field(self, fields: Sequence[bytes], body: Sequence[bytes | memoryview]) -> bytes:
        """The DKIM-Signature field (folded, CRLF-ended) for a message whose header block
        is ``fields`` (whole fields as :func:`split_fields` gives them) and whose body is
        the join of ``body``: the fast path hands over its parts, never joined twice."""
        body_hash = base64.b64encode(hash_simple_body(body))
        # RFC 6376 5.4.2: several instances of a name are signed from the bottom up.
        by_name: dict[bytes, list[bytes]] = {}
        for raw in fields:
            name, line = self._canonical(raw)
            by_name.setdefault(name, []).append(line)
        names, tags, relaxed_tags = self._names(tuple(by_name))
        lines = [by_name[h].pop() for h in names if by_name.get(h)]
        # The tags are "relaxed" already, and neither the hash nor "; b=" has a space
        # or a fold for canonicalisation to touch.
        lines.append(relaxed_tags + body_hash + b"; b=")
        signed = b"".join(lines)
        if isinstance(self._key, rsa.RSAPrivateKey):
            signature = self._key.sign(signed, padding.PKCS1v15(), hashes.SHA256())
        else:
            signature = self._key.sign(hashlib.sha256(signed).digest())
        b64 = base64.b64encode(signature)
        folded = b"\r\n ".join(b64[i : i + 72] for i in range(0, len(b64), 72))
        return b"DKIM-Signature: " + tags + body_hash + b";\r\n b=\r\n " + folded + b"\r\n"


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
