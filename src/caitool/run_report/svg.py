"""Plots as inline SVG text: bars, lines, points, the reliability diagram.

Written by hand rather than with matplotlib so that the page stays small, needs no optional
package, and scales with the window (a ``viewBox`` and ``width: 100%`` in the style sheet).
Every plot carries a ``<title>`` and its numbers in ``<desc>``, for screen readers.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

WIDTH, HEIGHT = 480, 260
LEFT, RIGHT, TOP, BOTTOM = 62, 14, 14, 40
COLOURS = ("#2b6cb0", "#c05621", "#2f855a", "#6b46c1", "#b83280", "#4a5568")
Point = tuple[float, float]


def _scale(low: float, high: float, start: float, end: float):
    span = (high - low) or 1.0
    return lambda v: start + (v - low) / span * (end - start)


def _tick(value: float) -> str:
    return f"{value:.3g}"


def _frame(title: str, description: str, body: list[str], x_label: str, y_label: str) -> str:
    return (f'<svg class="plot" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
            f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>'
            f'<desc>{escape(description)}</desc>{"".join(body)}'
            f'<text x="{(LEFT + WIDTH - RIGHT) / 2}" y="{HEIGHT - 6}" text-anchor="middle" '
            f'class="label">{escape(x_label)}</text>'
            f'<text transform="translate(12 {(TOP + HEIGHT - BOTTOM) / 2}) rotate(-90)" '
            f'text-anchor="middle" class="label">{escape(y_label)}</text></svg>')


def _axes(x_range: tuple[float, float], y_range: tuple[float, float], ticks: int = 4,
          x_ticks: Sequence[float] | None = None) -> list[str]:
    x = _scale(*x_range, LEFT, WIDTH - RIGHT)
    y = _scale(*y_range, HEIGHT - BOTTOM, TOP)
    out = [f'<line x1="{LEFT}" y1="{HEIGHT - BOTTOM}" x2="{WIDTH - RIGHT}" y2="{HEIGHT - BOTTOM}" '
           'class="axis"/>', f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{HEIGHT - BOTTOM}" class="axis"/>']
    if x_ticks is None:
        x_ticks = [x_range[0] + (x_range[1] - x_range[0]) * i / ticks for i in range(ticks + 1)]
    for xv in x_ticks:
        out.append(f'<text x="{x(xv):.1f}" y="{HEIGHT - BOTTOM + 14}" text-anchor="middle" '
                   f'class="tick">{_tick(xv)}</text>')
    for i in range(ticks + 1):
        yv = y_range[0] + (y_range[1] - y_range[0]) * i / ticks
        out.append(f'<text x="{LEFT - 4}" y="{y(yv) + 3:.1f}" text-anchor="end" class="tick">'
                   f'{_tick(yv)}</text>')
        out.append(f'<line x1="{LEFT}" y1="{y(yv):.1f}" x2="{WIDTH - RIGHT}" y2="{y(yv):.1f}" '
                   'class="grid"/>')
    return out


def _range(values: Sequence[float], pad: float = 0.05) -> tuple[float, float]:
    low, high = min(values), max(values)
    if low == high:
        return low - 1.0, high + 1.0
    margin = (high - low) * pad
    return low - margin, high + margin


def bars(title: str, edges: Sequence[float], series: dict[str, Sequence[float]], x_label: str,
         y_label: str = "pairs") -> str:
    """A histogram: ``edges`` are the bins' bounds (one more than each series' counts);
    several series are drawn side by side within each bin."""
    top = max([1.0, *(v for counts in series.values() for v in counts)])
    x = _scale(edges[0], edges[-1], LEFT, WIDTH - RIGHT)
    y = _scale(0, top, HEIGHT - BOTTOM, TOP)
    body = _axes((edges[0], edges[-1]), (0, top))
    width = (x(edges[1]) - x(edges[0])) / max(1, len(series))
    for k, (name, counts) in enumerate(series.items()):
        colour = COLOURS[k % len(COLOURS)]
        for i, count in enumerate(counts):
            if count:
                left = x(edges[i]) + k * width
                body.append(f'<rect x="{left + 0.5:.1f}" y="{y(count):.1f}" width="{max(width - 1, 1):.1f}" '
                            f'height="{y(0) - y(count):.1f}" fill="{colour}"><title>{escape(name)}: '
                            f'{count:g} in [{edges[i]:.3g}, {edges[i + 1]:.3g})</title></rect>')
    body += _legend(list(series))
    described = "; ".join(f"{name}: {', '.join(f'{c:g}' for c in counts)}" for name, counts in series.items())
    return _frame(title, f"counts per bin from {edges[0]:.3g} to {edges[-1]:.3g}: {described}",
                  body, x_label, y_label)


def lines(title: str, series: dict[str, Sequence[Point]], x_label: str, y_label: str) -> str:
    points = [p for values in series.values() for p in values]
    x_range, y_range = _range([p[0] for p in points], 0.02), _range([p[1] for p in points])
    x = _scale(*x_range, LEFT, WIDTH - RIGHT)
    y = _scale(*y_range, HEIGHT - BOTTOM, TOP)
    steps = sorted({p[0] for p in points})
    whole = len(steps) <= 8 and all(float(v).is_integer() for v in steps)
    body = _axes(x_range, y_range, x_ticks=steps if whole else None)
    for k, (name, values) in enumerate(series.items()):
        colour = COLOURS[k % len(COLOURS)]
        path = " ".join(f"{x(a):.1f},{y(b):.1f}" for a, b in values)
        body.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        body += [f'<circle cx="{x(a):.1f}" cy="{y(b):.1f}" r="2.5" fill="{colour}"><title>'
                 f'{escape(name)}: {b:.4g} at {a:g}</title></circle>' for a, b in values[:500]]
    if len(series) > 1:
        body += _legend(list(series))
    described = "; ".join(f"{name}: " + ", ".join(f"({a:g}, {b:.4g})" for a, b in values[:50])
                          for name, values in series.items())
    return _frame(title, described, body, x_label, y_label)


def scatter(title: str, points: dict[str, Point], x_label: str, y_label: str,
            paths: dict[str, Sequence[str]] | None = None) -> str:
    """Named points (systems), with ``paths`` joining some of them in order (a frontier)."""
    x_range = _range([p[0] for p in points.values()], 0.15)
    y_range = _range([p[1] for p in points.values()], 0.15)
    x = _scale(*x_range, LEFT, WIDTH - RIGHT)
    y = _scale(*y_range, HEIGHT - BOTTOM, TOP)
    body = _axes(x_range, y_range)
    for k, (method, names) in enumerate((paths or {}).items()):
        joined = " ".join(f"{x(points[n][0]):.1f},{y(points[n][1]):.1f}" for n in names if n in points)
        body.append(f'<polyline points="{joined}" fill="none" stroke="{COLOURS[k % len(COLOURS)]}" '
                    f'stroke-width="1.5" stroke-dasharray="4 3"><title>{escape(method)}</title></polyline>')
    for name, (a, b) in points.items():
        body.append(f'<circle cx="{x(a):.1f}" cy="{y(b):.1f}" r="4" fill="{COLOURS[0]}"/>'
                    f'<text x="{x(a) + 6:.1f}" y="{y(b) - 6:.1f}" class="tick">{escape(name)}</text>')
    described = "; ".join(f"{name}: ({a:.1f}, {b:.1f})" for name, (a, b) in points.items())
    return _frame(title, described, body, x_label, y_label)


def reliability(points: Sequence[tuple[float, float, int]], floor: float = 0.0) -> str:
    """Accuracy against confidence per bin, bubble area by rows, with the diagonal a
    calibrated judge would follow and ``floor`` (chance) marked."""
    x = _scale(0, 1, LEFT, WIDTH - RIGHT)
    y = _scale(0, 1, HEIGHT - BOTTOM, TOP)
    body = _axes((0, 1), (0, 1), 5)
    body.append(f'<line x1="{x(0)}" y1="{y(0)}" x2="{x(1)}" y2="{y(1)}" class="diagonal"/>')
    if floor:
        body.append(f'<line x1="{x(0)}" y1="{y(floor):.1f}" x2="{x(1)}" y2="{y(floor):.1f}" '
                    f'class="chance"><title>chance {floor:.3g}</title></line>')
    most = max([1, *(n for _, _, n in points)])
    for confidence, accuracy, n in points:
        radius = 3 + 9 * (n / most) ** 0.5
        body.append(f'<circle cx="{x(confidence):.1f}" cy="{y(accuracy):.1f}" r="{radius:.1f}" '
                    f'fill="{COLOURS[1]}" fill-opacity="0.7"><title>{n} rows: confidence '
                    f'{confidence:.3f}, accuracy {accuracy:.3f}</title></circle>')
    described = "; ".join(f"confidence {c:.3f}, accuracy {a:.3f}, {n} rows" for c, a, n in points)
    return _frame("Reliability diagram", described, body, "confidence in the top option",
                  "accuracy")


def _legend(names: list[str]) -> list[str]:
    # A pale box behind the names, so that a line running under them does not hide them.
    out = [f'<rect x="{WIDTH - RIGHT - 154}" y="{TOP}" width="150" height="{14 * len(names) + 6}" '
           'fill="#fff" fill-opacity="0.85"/>']
    for k, name in enumerate(names):
        top = TOP + 4 + 14 * k
        out.append(f'<rect x="{WIDTH - RIGHT - 150}" y="{top}" width="10" height="10" '
                   f'fill="{COLOURS[k % len(COLOURS)]}"/><text x="{WIDTH - RIGHT - 136}" '
                   f'y="{top + 9}" class="tick">{escape(name[:28])}</text>')
    return out
