"""``digest serve --workers N``: N server processes on one port.

Each worker is a fresh interpreter (``spawn``: prometheus-client picks its
multiprocess mode at import, from the environment the command line prepared) that
opens its own listening socket with ``SO_REUSEPORT`` — the kernel spreads new
connections over the workers — and runs uvicorn on the app of
:func:`digest.web.app.serve_app`.

Not uvicorn's own ``--workers``: it shares one socket made without
``IPPROTO_TCP``, and asyncio sets ``TCP_NODELAY`` only on connections of a socket
that says it is TCP, so every answer waited for the peer's delayed ACK (about 40 ms;
660 requests/s where one process did 3,000 — bench/web.py, docs/operations.md).

The parent only supervises: SIGTERM or SIGINT stops every worker gracefully (each
writes its pending click counts and unsubscribes); a worker that dies takes the
others down with it, and the command exits 1 for systemd to restart the whole set;
a parent killed outright takes its workers with it (Linux ``PR_SET_PDEATHSIG``).
"""

from __future__ import annotations

import ctypes
import logging
import multiprocessing
import signal
import socket
import threading
from typing import Any

import uvicorn

logger = logging.getLogger(__name__)

APP = "digest.web.app:serve_app"
BACKLOG = 2048
PR_SET_PDEATHSIG = 1


def listening_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP, not 0: asyncio turns Nagle off (TCP_NODELAY) only for such sockets.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((host, port))
    sock.listen(BACKLOG)
    return sock


def _die_with_parent() -> None:
    """Linux: SIGTERM this worker when the supervising process dies, even by SIGKILL
    (no worker left serving alone, holding the port)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        logger.debug("no prctl here: workers outlive a killed parent")


def _worker(host: str, port: int, options: dict[str, Any]) -> None:
    _die_with_parent()
    sock = listening_socket(host, port)
    config = uvicorn.Config(APP, factory=True, host=host, port=port, **options)
    uvicorn.Server(config).run(sockets=[sock])


def serve_workers(host: str, port: int, workers: int, options: dict[str, Any]) -> int:
    """Run ``workers`` server processes until a signal or a worker's death; the exit
    status (0 after a signal, 1 when a worker died)."""
    # The port must be free: a plain bind (no SO_REUSEPORT) fails while anyone listens
    # there — even another `digest serve --workers`, whose sockets ours would join.
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        probe.bind((host, port))
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_worker, args=(host, port, options), name=f"digest-web-{n}")
        for n in range(workers)
    ]
    stop = threading.Event()
    previous = {
        sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGTERM, signal.SIGINT)
    }
    status = 0
    try:
        for process in processes:
            process.start()
        while not stop.wait(0.5):
            dead = [p for p in processes if not p.is_alive()]
            if dead:
                logger.error(
                    "web worker %s exited with status %s; stopping the others",
                    dead[0].pid,
                    dead[0].exitcode,
                )
                status = 1
                break
    finally:
        for process in processes:
            if process.is_alive():
                process.terminate()  # SIGTERM: uvicorn's graceful shutdown
        for process in processes:
            process.join(30)
            if process.is_alive():
                process.kill()
                process.join()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return status
