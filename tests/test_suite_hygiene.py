"""The test run's own rules (pyproject.toml): a warning from the project's code fails
the test, a third-party library's own warning does not."""

from __future__ import annotations

import warnings

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
