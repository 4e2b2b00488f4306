"""How ``digest send --workers N`` starts its worker processes.

The workers are forked from a fork server that imported the package once. ``digest
send --workers N`` starts it first thing (:func:`start_worker_server`), so its imports
overlap the parent's rendering and enqueueing; any other caller gets it started with
the first worker: each worker then starts in
milliseconds instead of importing everything afresh, which took about a second of a
30-second send. The fork server is a fresh single-threaded process, so its children
inherit no connection, lock or thread of the parent (a plain ``fork`` of a parent that
is drawing a progress bar could). Where there is no fork server (Windows), workers
are spawned.

Deliberately light: it imports nothing of the package, so calling it costs nothing
before the command's own imports.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.forkserver
from multiprocessing.context import ForkServerContext, SpawnContext

#: What the fork server imports once for every worker it forks (the module says what).
PRELOAD = ["digest.cli.preload"]


def worker_context() -> ForkServerContext | SpawnContext:
    """The multiprocessing context workers start from."""
    if "forkserver" in multiprocessing.get_all_start_methods():
        ctx = multiprocessing.get_context("forkserver")
        ctx.set_forkserver_preload(PRELOAD)
        return ctx
    return multiprocessing.get_context("spawn")


def start_worker_server() -> None:
    """Start the fork server (where there is one) now rather than at the first worker;
    calling it again does nothing while it runs."""
    if worker_context().get_start_method() == "forkserver":
        multiprocessing.forkserver.ensure_running()
