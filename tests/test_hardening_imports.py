"""Issue 22 item 6: import error reports are bounded — the first problems and a count,
in bounded memory, in the CLI, the console and the comparison importer."""

from __future__ import annotations

import csv
import io
import json
import tracemalloc
from pathlib import Path

import pytest
from cli_support import DigestCLI
from console_support import OPERATOR, Console
from sqlalchemy.engine import Engine

from digest.core.problems import MAX_PROBLEMS
from digest.exceptions import ImportValidationError, SubscriberError
from digest.store.importer import import_comparisons
from subscribers.service import import_csv

LINES = 30_000


def _bad_csv(path: Path, lines: int = LINES) -> Path:
    path.write_text("email\n" + "".join(f"not-an-address-{i}\n" for i in range(lines)))
    return path


@pytest.mark.parametrize("skip_invalid", [False, True])
def test_a_csv_of_many_bad_lines_is_reported_in_bounded_memory(
    engine: Engine, tmp_path: Path, skip_invalid: bool
) -> None:
    source = _bad_csv(tmp_path / "bad.csv")
    tracemalloc.start()
    try:
        try:
            report = import_csv(engine, source, skip_invalid=skip_invalid)
            listed, total = len(report.skipped), report.skipped_total
        except SubscriberError as exc:
            lines = str(exc).splitlines()
            listed, total = len(lines) - 1, LINES
            more = f"… and {LINES - MAX_PROBLEMS:,} more problems not listed"
            assert lines[-1] == f"{more} (the first {MAX_PROBLEMS:,} are)"
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert (listed, total) == (MAX_PROBLEMS, LINES)
    # Keeping every problem took 60-70 times the file's size (138 MB for a 2 MB file of
    # 200,000 lines); now the file's text and a thousand problems (about 7 times here).
    assert peak < 15 * source.stat().st_size, peak


def test_the_cli_lists_the_first_problems_and_counts_the_rest(
    digest_cli: DigestCLI, tmp_path: Path
) -> None:
    source = _bad_csv(tmp_path / "bad.csv", 5000)
    refused = digest_cli("subscribers", "import", source)
    assert refused.exit_code == 1
    err = refused.stderr.splitlines()
    assert len(err) == MAX_PROBLEMS + 2
    assert "… and 4,000 more problems not listed" in err[-2]
    assert "5,000 problems, the first 1,000 listed above" in err[-1]
    report = tmp_path / "skipped.csv"
    done = digest_cli("subscribers", "import", source, "--skip-invalid", "--report", report)
    assert done.exit_code == 0 and "skipped 5,000 bad lines" in done.stdout
    rows = list(csv.reader(io.StringIO(report.read_text(encoding="utf-8"))))
    assert len(rows) == 1 + MAX_PROBLEMS + 1 and "4,000 more" in rows[-1][2]


def test_the_console_job_page_stays_small(console: Console, tmp_path: Path) -> None:
    body = _bad_csv(tmp_path / "bad.csv", 20_000).read_bytes()
    operator, csrf = console.login(OPERATOR)
    for skip in (False, True):
        data = {"csrf": csrf, "consent": "signup sheet"} | ({"skip_invalid": "yes"} if skip else {})
        answer = operator.post(
            "/console/subscribers/import/new",
            data=data,
            files={"file": ("readers.csv", body, "text/csv")},
            follow_redirects=False,
        )
        assert answer.status_code == 303, answer.text
        job = console.app.state.import_runner.get(answer.headers["location"].rsplit("/", 1)[1])
        job.thread.join(timeout=60)
        page = operator.get(answer.headers["location"]).text
        assert len(page) < 400_000  # 177 MB for two million lines before
        if skip:
            assert "20,000 bad lines left out" in page
            download = operator.get(answer.headers["location"] + "/skipped.csv").text
            assert download.count("\n") == 1 + MAX_PROBLEMS + 1
        else:
            assert "Nothing was imported: 20000 problems" in page
            assert "19,000 more problems not listed" in page


def test_comparison_import_problems_are_bounded_too(engine: Engine, tmp_path: Path) -> None:
    source = tmp_path / "many.json"
    source.write_text(json.dumps([{"title": f"x{i}"} for i in range(5000)]))
    with pytest.raises(ImportValidationError) as refused:
        import_comparisons(engine, [source])
    assert len(refused.value.problems) == MAX_PROBLEMS + 1
    assert "more problems not listed" in refused.value.problems[-1]
