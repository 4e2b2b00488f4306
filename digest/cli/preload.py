"""What the fork server imports once for every worker it forks
(``digest.delivery.launch.PRELOAD`` names this module, as a string).

The worker, its transports, and the command line (a worker re-runs the parent's main
script, which then costs nothing). Then everything imported is frozen out of the
garbage collector's reach (``gc.freeze``, as the gc docs advise before ``fork``
without ``exec``): these objects live as long as the process, so a worker's
collections never walk them (less CPU per collection), never write their headers
(so their pages stay shared with the fork server instead of being copied into every
worker), and the fork server's own shutdown does not walk them either (about 0.3 s of
a send on two cores).

It lives with the command line because it imports the command line: in
``digest/delivery`` it would be an import from the bottom of the house to the top.
"""

import gc

import digest.cli
import digest.delivery.worker
import digest.jobs.weekly
import digest.transports.smtp  # noqa: F401

gc.freeze()
