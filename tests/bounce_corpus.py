"""The bounce, complaint and reply samples in tests/data/bounces (see its README),
filled in for one delivery and turned into wire format (CRLF line ends)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from string import Template

CORPUS = Path(__file__).parent / "data" / "bounces"
ORIGINAL_BODY = "This week the panel compared two small vision models.\n"


@dataclass(frozen=True)
class Filling:
    """The values a sample is filled with: one reader's delivery."""

    verp: str = "bounces+1-00000000000000000000@bounces.verdicts.test"
    rcpt: str = "ada@example.com"
    message_id: str = "<2026-W49.0123456789abcdef0123@verdicts.test>"
    unsubscribe: str = "http://digest.test/unsubscribe/NOTATOKEN"
    sender: str = "digest@verdicts.test"


def names() -> list[str]:
    return sorted(p.stem for p in CORPUS.glob("*.eml"))


def sample(name: str, filling: Filling | None = None) -> bytes:
    """Sample ``name`` (without .eml) filled with ``filling``, CRLF line ends."""
    f = filling or Filling()
    values = {
        "verp": f.verp,
        "rcpt": f.rcpt,
        "message_id": f.message_id,
        "unsubscribe": f.unsubscribe,
        "from": f.sender,
    }
    headers = Template((CORPUS / "original-headers.txt").read_text()).substitute(values)
    values["original_headers"] = headers
    values["original_message"] = headers + "\n" + ORIGINAL_BODY
    text = Template((CORPUS / f"{name}.eml").read_text()).substitute(values)
    return text.replace("\r\n", "\n").replace("\n", "\r\n").encode("utf-8")
