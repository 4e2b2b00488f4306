"""Import reports in bounded memory: the first problems, and how many there were.

A 4 MB CSV of two million bad lines made the web process grow by a gigabyte and its job
page 177 MB, and the CLI use 4.4 GB, because every problem was kept (issue 22). A
report now keeps the first :data:`MAX_PROBLEMS` lines and counts the rest.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable

logger = logging.getLogger(__name__)

#: Problems an import report lists; the rest are counted.
MAX_PROBLEMS = 1000


class Problems:
    """The first ``limit`` problems of an import and the number of all of them."""

    def __init__(self, limit: int = MAX_PROBLEMS) -> None:
        self.limit = limit
        self.kept: list[str] = []
        self.total = 0

    def add(self, problem: str) -> None:
        self.total += 1
        if len(self.kept) < self.limit:
            self.kept.append(problem)

    append = add  # a drop-in for the list it replaces

    def extend(self, problems: Iterable[str]) -> None:
        for problem in problems:
            self.add(problem)

    def __bool__(self) -> bool:
        return self.total > 0

    @property
    def left_out(self) -> int:
        return self.total - len(self.kept)

    def lines(self) -> list[str]:
        """The kept problems, then one line counting those not listed."""
        if not self.left_out:
            return list(self.kept)
        return [*self.kept, more_line(self.left_out, len(self.kept))]


def more_line(left_out: int, shown: int) -> str:
    return f"… and {left_out:,} more problems not listed (the first {shown:,} are)"


_MORE = re.compile(r"^… and ([\d,]+) more problems not listed")


def total_of(lines: list[str]) -> int:
    """How many problems ``lines`` (from :meth:`Problems.lines`) stand for."""
    if lines and (found := _MORE.match(lines[-1])):
        return len(lines) - 1 + int(found.group(1).replace(",", ""))
    return len(lines)
