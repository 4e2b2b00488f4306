"""Hostile request bodies against ``digest serve``: the server's memory and how much
of each body it takes in before it answers (docs/hardening.md, issue 22).

Starts ``digest serve`` on a fresh SQLite store (an operator logged in), then for each
attack: resets the server's peak resident size, streams the body over a raw socket
until the server answers, and prints the answer, the body bytes sent by then, the
seconds to the answer and the server's resident size before and at its peak.

    .venv/bin/python bench/body_attacks.py            # the issue's sizes (500/300 MiB)
    .venv/bin/python bench/body_attacks.py --mib 100  # every body 100 MiB
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))

from body_attacks import Attack, MiB, memory, multipart, reset_peak, served  # noqa: E402

BOUNDARY = "bench-boundary-0123456789"
MULTIPART = f"multipart/form-data; boundary={BOUNDARY}"
FORM = "application/x-www-form-urlencoded"


def attacks(size: int, upload: int, cookie: str, csrf: str) -> list[tuple[str, Attack]]:
    upload_head = multipart(BOUNDARY, {"csrf": csrf, "consent": "bench"}, "people.csv")
    anonymous_head = multipart(BOUNDARY, {"csrf": "x", "consent": "bench"}, "people.csv")
    return [
        ("chunked JSON, /webhooks/sendgrid", Attack("/webhooks/sendgrid", size)),
        ("chunked JSON, /subscribe", Attack("/subscribe", size)),
        (
            "chunked form, /console/subscribers/add (logged in)",
            Attack("/console/subscribers/add", size, FORM, prefix=b"email=", cookie=cookie),
        ),
        (
            "multipart, /console/subscribers/import/new (anonymous)",
            Attack(
                "/console/subscribers/import/new",
                upload,
                MULTIPART,
                chunked=False,
                declared=upload,
                prefix=anonymous_head,
            ),
        ),
        (
            "chunked multipart, /console/subscribers/import/new (logged in)",
            Attack(
                "/console/subscribers/import/new",
                upload,
                MULTIPART,
                prefix=upload_head,
                cookie=cookie,
            ),
        ),
        (
            "Content-Length: 100, then the stream, /webhooks/sendgrid",
            Attack("/webhooks/sendgrid", size, chunked=False, declared=100),
        ),
        (
            "5 bytes, then a stall, /webhooks/sendgrid",
            Attack("/webhooks/sendgrid", size, stall_after=5),
        ),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mib", type=int, default=500, help="body size (default 500 MiB)")
    parser.add_argument(
        "--upload-mib", type=int, default=300, help="console upload size (default 300 MiB)"
    )
    parser.add_argument("--wait", type=float, default=120.0, help="seconds to wait for an answer")
    args = parser.parse_args()
    print(
        f"$ .venv/bin/python bench/body_attacks.py --mib {args.mib} --upload-mib {args.upload_mib}"
    )
    print("| attack | answer | body sent before it | seconds | server RSS before | peak RSS |")
    print("|---|---|---:|---:|---:|---:|")
    with tempfile.TemporaryDirectory() as tmp, served(Path(tmp)) as server:
        for name, hostile in attacks(
            args.mib * MiB, args.upload_mib * MiB, server.cookie, server.csrf
        ):
            reset_peak(server.pid)
            before = memory(server.pid)["VmRSS"]
            answer = server.attack(hostile, wait=args.wait)
            peak = memory(server.pid)["VmHWM"]
            status = answer.status or f"none in {args.wait:.0f} s"
            print(
                f"| {name} | {status} | {answer.sent / MiB:,.1f} MiB | {answer.seconds:.1f} "
                f"| {before / MiB:,.0f} MiB | {peak / MiB:,.0f} MiB |",
                flush=True,
            )


if __name__ == "__main__":
    main()
