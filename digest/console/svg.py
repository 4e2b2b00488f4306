"""Server-rendered SVG charts: no script, no library, readable by screen readers.

Every chart is ``role="img"`` labelled by its ``<title>`` and ``<desc>``, each mark has
its own ``<title>`` (a tooltip with the exact value), and the pages put a table with
the same figures beside it. Only presentation attributes are used (no ``style``), so
the console's CSP needs no ``'unsafe-inline'``.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

logger = logging.getLogger(__name__)

WIDTH, HEIGHT = 720, 300
LEFT, RIGHT, TOP, BOTTOM = 62, 36, 44, 50
INK, GRID, MUTED = "#1f2933", "#d1d5db", "#4b5563"
PLOT_W, PLOT_H = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM


@dataclass(frozen=True)
class Series:
    name: str
    color: str
    values: Sequence[float]


def nice_max(value: float) -> float:
    """A round number at or above ``value`` for the top of an axis."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power:
            return float(step * power)
    return float(10 * power)


#: gridlines above the baseline
STEPS = 4


def axis(value: float, *, whole: bool = False) -> tuple[float, int]:
    """The step between gridlines (``STEPS`` of them reach ``value``) and the decimals
    that print every gridline's value exactly: each label names its own line, never a
    rounded neighbour ("1.2%" beside the 1.25% line). ``whole`` counts (subscribers)
    step by whole numbers."""
    raw = max(value, 1.0 if whole else 0.0) / STEPS or 0.25
    power = 10.0 ** math.floor(math.log10(raw))
    step = 10 * power
    for mantissa in (1, 1.5, 2, 2.5, 3, 4, 5, 6, 8):
        candidate = mantissa * power
        if candidate >= raw * (1 - 1e-9) and not (whole and candidate != int(candidate)):
            step = candidate
            break
    decimals = next(
        d
        for d in range(7)
        if all(abs(round(step * i, d) - step * i) < 1e-9 for i in range(STEPS + 1))
    )
    return step, decimals


def _fmt(value: float, unit: str) -> str:
    if unit == "%":
        return f"{value:.1f}%" if value < 10 and value != int(value) else f"{value:.0f}%"
    return f"{value:,.0f}"


def _open(chart_id: str, title: str, desc: str, width: int, height: int) -> list[str]:
    return [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" '
        f'aria-labelledby="{chart_id}-t {chart_id}-d" class="chart" font-family="sans-serif" '
        f'font-size="15">',
        f'<title id="{chart_id}-t">{escape(title)}</title>',
        f'<desc id="{chart_id}-d">{escape(desc)}</desc>',
    ]


def _frame(
    chart_id: str, title: str, desc: str, step: float, decimals: int, unit: str
) -> list[str]:
    parts = _open(chart_id, title, desc, WIDTH, HEIGHT)
    for i in range(STEPS + 1):
        label = f"{step * i:,.{decimals}f}{unit}"
        y = TOP + PLOT_H - PLOT_H * i / STEPS
        parts.append(
            f'<line x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>'
        )
        # Centred on its line (dominant-baseline), not sitting a baseline above it.
        parts.append(
            f'<text x="{LEFT - 6}" y="{y:.1f}" text-anchor="end" dominant-baseline="central" '
            f'fill="{MUTED}">{escape(label)}</text>'
        )
    return parts


def _legend(series: Sequence[Series]) -> list[str]:
    parts = []
    x = LEFT
    for s in series:
        parts.append(f'<rect x="{x}" y="10" width="14" height="14" fill="{s.color}"/>')
        parts.append(f'<text x="{x + 19}" y="22" fill="{INK}">{escape(s.name)}</text>')
        x += 44 + 8 * len(s.name)
    return parts


def _labels(labels: Sequence[str], xs: Sequence[float]) -> list[str]:
    every = max(1, math.ceil(len(labels) / 7))
    y = HEIGHT - BOTTOM + 18
    return [
        f'<text x="{x:.1f}" y="{y}" text-anchor="middle" fill="{MUTED}">{escape(label)}</text>'
        for i, (label, x) in enumerate(zip(labels, xs, strict=True))
        if (len(labels) - 1 - i) % every == 0  # counted back from the newest, always shown
    ]


def _start(
    chart_id: str,
    title: str,
    desc: str,
    series: Sequence[Series],
    unit: str,
    top: float | None,
) -> tuple[float, list[str]]:
    """The axis top and the chart's opening: frame, grid and legend."""
    highest = top or max((float(v) for s in series for v in s.values), default=0.0)
    step, decimals = axis(highest, whole=unit != "%")
    top = step * STEPS
    return top, _frame(chart_id, title, desc, step, decimals, unit) + _legend(series)


def _end(parts: list[str], labels: Sequence[str], xs: Sequence[float]) -> Markup:
    parts = [*parts, *_labels(labels, xs), "</svg>"]
    return Markup("".join(parts))  # noqa: S704 (every text in it went through escape())


def bar_chart(
    chart_id: str,
    title: str,
    desc: str,
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    unit: str = "",
    top: float | None = None,
) -> Markup:
    """Grouped bars: one group per label, one bar per series."""
    top, parts = _start(chart_id, title, desc, series, unit, top)
    group = PLOT_W / max(1, len(labels))
    bar = group * 0.8 / max(1, len(series))
    centres = []
    for i, label in enumerate(labels):
        x0 = LEFT + group * i + group * 0.1
        centres.append(LEFT + group * (i + 0.5))
        for j, s in enumerate(series):
            value = float(s.values[i])
            h = PLOT_H * min(value, top) / top
            parts.append(
                f'<rect x="{x0 + bar * j:.1f}" y="{TOP + PLOT_H - h:.1f}" width="{bar:.1f}" '
                f'height="{h:.1f}" fill="{s.color}"><title>{escape(label)}: {escape(s.name)} '
                f"{escape(_fmt(value, unit))}</title></rect>"
            )
    return _end(parts, labels, centres)


def line_chart(
    chart_id: str,
    title: str,
    desc: str,
    labels: Sequence[str],
    series: Sequence[Series],
    *,
    unit: str = "",
) -> Markup:
    """One line per series over the labels (time)."""
    top, parts = _start(chart_id, title, desc, series, unit, None)
    step = PLOT_W / max(1, len(labels) - 1)
    xs = [LEFT + step * i if len(labels) > 1 else LEFT + PLOT_W / 2 for i in range(len(labels))]
    for s in series:
        points = [
            (x, TOP + PLOT_H - PLOT_H * float(v) / top) for x, v in zip(xs, s.values, strict=True)
        ]
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{s.color}" stroke-width="3"/>')
        for (x, y), label, v in zip(points, labels, s.values, strict=True):
            parts.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{s.color}"><title>'
                f"{escape(label)}: {escape(s.name)} {escape(_fmt(float(v), unit))}</title></circle>"
            )
    return _end(parts, labels, xs)


#: wider than the other charts: it takes a row of its own, and its labels are long
H_WIDTH, ROW_H, LABEL_W, VALUE_W, H_TOP = 960, 30, 420, 70, 8
MAX_LABEL = 50


def hbar_chart(
    chart_id: str, title: str, desc: str, labels: Sequence[str], values: Sequence[float], color: str
) -> Markup:
    """One horizontal bar per label, for long labels (comparison titles): the label on
    the left (cut at ``MAX_LABEL`` characters; the bar's tooltip has it whole), the
    value at the end of the bar."""
    height = H_TOP + ROW_H * max(1, len(labels)) + 8
    top = nice_max(max(values, default=0.0))
    span = H_WIDTH - LABEL_W - VALUE_W
    parts = [
        *_open(chart_id, title, desc, H_WIDTH, height),
        f'<line x1="{LABEL_W}" x2="{LABEL_W}" y1="{H_TOP}" y2="{height - 8}" stroke="{GRID}"/>',
    ]
    for i, (label, value) in enumerate(zip(labels, values, strict=True)):
        y = H_TOP + ROW_H * i
        shown = label if len(label) <= MAX_LABEL else label[: MAX_LABEL - 1].rstrip() + "…"
        w = span * min(float(value), top) / top
        figure = escape(_fmt(float(value), ""))
        parts.append(
            f'<text x="{LABEL_W - 8}" y="{y + 19}" text-anchor="end" fill="{INK}">'
            f"{escape(shown)}</text>"
        )
        parts.append(
            f'<rect x="{LABEL_W}" y="{y + 4}" width="{w:.1f}" height="{ROW_H - 8}" '
            f'fill="{color}"><title>{escape(label)}: {figure}</title></rect>'
        )
        parts.append(f'<text x="{LABEL_W + w + 6:.1f}" y="{y + 19}" fill="{MUTED}">{figure}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 (every text in it went through escape())
