"""Work the console starts and the browser watches: a send, a CSV import.

Each runs in a background thread of the web process; pages refresh themselves and read
the progress from the database (a send) or from the job (an import). Several
processes may still send the same issue at once: the delivery leases make that safe.
"""

from __future__ import annotations

import logging
import secrets
import shutil
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass, field, replace
from pathlib import Path

from fastapi import Request
from sqlalchemy.engine import Engine

from digest.core.problems import total_of
from digest.core.settings import Settings
from digest.delivery.queue import SendReport
from digest.exceptions import DigestError, SubscriberError
from digest.jobs.weekly import weekly_job
from digest.notices.subscribers import TransportFactory
from subscribers.service import CsvImportReport, import_csv

logger = logging.getLogger(__name__)


class SendRunner:
    """Runs ``weekly_job`` for one issue in one background thread per process.

    ``last_summary`` adds up every run this console made of the issue: a send paused
    and resumed twice reads "N sent … in T s" with the real totals, not those of the
    last run alone. A resume that comes while the paused run is still winding down is
    not lost: the thread runs the issue again when it is done."""

    def __init__(
        self, settings: Settings, engine: Engine, transport_factory: TransportFactory | None
    ) -> None:
        self.settings = settings
        self.engine = engine
        self.transport_factory = transport_factory
        self.last_summary: str | None = None
        self.number: int | None = None
        self._totals: SendReport | None = None
        self._again = False
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self, number: int, *, actor: str, again: bool = False) -> bool:
        """Send issue ``number`` in the background. While a send of the same issue is
        running, it is run again once that one ends (a resume right after a pause);
        False while another issue's send runs."""
        with self._lock:
            if self.running:
                if self.number != number:
                    return False
                self._again = True
                return True
            if self.number != number:
                self._totals = None
            self.number = number
            self._again = False
            self._thread = threading.Thread(
                target=self._run, args=(number, actor, again), name=f"send-{number}", daemon=True
            )
            self._thread.start()
            return True

    def join(self, timeout: float | None = None) -> None:
        if self._thread is not None:
            self._thread.join(timeout)

    def _run(self, number: int, actor: str, again: bool) -> None:
        while True:
            self._run_once(number, actor, again)
            with self._lock:
                if not self._again:
                    return
                self._again = False

    def _run_once(self, number: int, actor: str, again: bool) -> None:
        transport = self.transport_factory(self.settings) if self.transport_factory else None
        try:
            result = weekly_job(
                self.settings,
                engine=self.engine,
                transport=transport,
                issue=number,
                again=again,
                actor=actor,
            )
            if result.report is not None:
                self._totals = added(self._totals, result.report)
                result.report = self._totals
            self.last_summary = result.summary()
        except DigestError as exc:
            self.last_summary = f"send of #{number} stopped: {exc}"
            logger.error(self.last_summary)
        except Exception:  # a console send must never take the web process down
            logger.exception("send of #%s crashed", number)
            self.last_summary = f"send of #{number} crashed; see the server log"


def added(before: SendReport | None, run: SendReport) -> SendReport:
    """``run``'s report with the counts and time of the runs ``before`` it added in;
    the stop reason is the latest run's."""
    if before is None:
        return run
    return replace(
        run,
        sent=before.sent + run.sent,
        retried=before.retried + run.retried,
        failed=before.failed + run.failed,
        skipped=before.skipped + run.skipped,
        waiting=before.waiting + run.waiting,
        batches=before.batches + run.batches,
        throttled=before.throttled + run.throttled,
        elapsed=before.elapsed + run.elapsed,
        errors=before.errors + run.errors,
    )


def send_runner(request: Request) -> SendRunner:
    state = request.app.state
    if getattr(state, "send_runner", None) is None:
        state.send_runner = SendRunner(state.settings, state.engine, state.transport_factory)
    runner: SendRunner = state.send_runner
    return runner


@dataclass
class ImportJob:
    """One CSV upload being imported: all-or-nothing, so it either reports every bad
    line (and wrote nothing) or how many it added; with ``skip_invalid``, how many it
    added and which lines it left out."""

    id: str
    filename: str
    by: str
    rows: int
    done: int = 0
    finished: bool = False
    report: CsvImportReport | None = None
    problems: list[str] = field(default_factory=list)
    #: how many problems ``problems`` stands for (it lists the first MAX_PROBLEMS)
    problems_total: int = 0
    #: leave bad rows out (the report lists them) rather than refuse the whole file
    skip_invalid: bool = False
    thread: threading.Thread | None = field(default=None, repr=False, compare=False)

    @property
    def percent(self) -> int:
        return 100 if self.finished else int(100 * self.done / self.rows) if self.rows else 0


class ImportRunner:
    """CSV imports in background threads; the newest ``KEEP`` jobs are remembered."""

    KEEP = 20

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._jobs: OrderedDict[str, ImportJob] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, job_id: str) -> ImportJob | None:
        with self._lock:
            return self._jobs.get(job_id)

    def start(
        self, path: Path, *, filename: str, source: str, by: str, skip_invalid: bool = False
    ) -> ImportJob:
        """Import ``path`` (a private copy the job deletes when done); ``skip_invalid``
        leaves bad rows out (listed in the report) instead of refusing the file."""
        with path.open("rb") as handle:
            rows = max(0, sum(1 for _ in handle) - 1)
        job = ImportJob(secrets.token_urlsafe(12), filename, by, rows, skip_invalid=skip_invalid)
        with self._lock:
            self._jobs[job.id] = job
            while len(self._jobs) > self.KEEP:
                self._jobs.popitem(last=False)
        job.thread = threading.Thread(
            target=self._run, args=(job, path, source), name=f"import-{job.id}", daemon=True
        )
        job.thread.start()
        return job

    def _run(self, job: ImportJob, path: Path, source: str) -> None:
        def advance(n: int) -> None:
            job.done += n

        try:
            job.report = import_csv(
                self.engine, path, source=source, progress=advance, skip_invalid=job.skip_invalid
            )
        except SubscriberError as exc:
            job.problems = [_without_folder(line, path) for line in str(exc).splitlines()]
            job.problems_total = total_of(job.problems)
        except DigestError as exc:
            job.problems = [str(exc)]
        except Exception:
            logger.exception("CSV import %s crashed", job.filename)
            job.problems = ["the import crashed; nothing was written (see the server log)"]
        finally:
            job.finished = True
            shutil.rmtree(path.parent, ignore_errors=True)


def _without_folder(line: str, path: Path) -> str:
    """``/tmp/x/readers.csv:3: …`` → ``line 3: …`` (the folder is ours, not theirs)."""
    prefix = f"{path}:"
    if line.startswith(prefix):
        number, _, rest = line[len(prefix) :].partition(":")
        return f"line {number}:{rest}" if number.isdigit() else line[len(prefix) :]
    return line


def private_copy(name: str) -> Path:
    """A path in a fresh private folder for an uploaded file called ``name``."""
    folder = Path(tempfile.mkdtemp(prefix="digest-import-"))
    safe = "".join(ch for ch in Path(name).name if ch.isalnum() or ch in "._-")[:80]
    return folder / (safe or "upload.csv")


def import_runner(request: Request) -> ImportRunner:
    state = request.app.state
    if getattr(state, "import_runner", None) is None:
        state.import_runner = ImportRunner(state.engine)
    runner: ImportRunner = state.import_runner
    return runner
