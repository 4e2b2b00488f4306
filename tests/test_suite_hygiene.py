"""The test run's own rules (pyproject.toml): a warning from the project's code fails
the test, a third-party library's own warning does not."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest


@pytest.mark.parametrize("module", ["digest.issue.render", "subscribers.optin", "scheduler"])
def test_a_warning_from_the_projects_code_is_an_error(module: str) -> None:
    with pytest.raises(DeprecationWarning, match="old API"):
        warnings.warn_explicit("old API", DeprecationWarning, f"{module}.py", 1, module=module)


def test_a_third_party_warning_stays_a_warning() -> None:
    with warnings.catch_warnings(record=True) as seen:
        warnings.warn_explicit(
            "old API", DeprecationWarning, "somelib.py", 1, module="digestive.somelib"
        )
    assert [str(w.message) for w in seen] == ["old API"]


LITERAL_DATE = re.compile(r"\bdatetime\(20\d\d|\bdate\(20\d\d|[\"']20\d\d-\d\d-\d\d")


def test_every_module_with_a_literal_date_runs_under_the_shifted_clocks() -> None:
    """A literal date beside the real clock is a test that fails some day later; the
    modules that write dates are run again under shifted clocks (``make test-clocks``),
    which brings that day forward. Dated fixtures in other modules must join them."""
    unmarked = [
        path.name
        for path in sorted(Path(__file__).parent.glob("test_*.py"))
        if LITERAL_DATE.search(path.read_text()) and "pytest.mark.clock" not in path.read_text()
    ]
    assert unmarked == []
