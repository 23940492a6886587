"""Charts as inline SVG, built on the server: no chart library, no script, nothing fetched.

- :func:`bar_chart`: vertical bars, one per labelled value, with the value above each bar.
- :func:`heat_colour`: a rate in [0, 1] to a colour from white to deep red (monotonic: a higher
  rate is never lighter), and :func:`ink_for` the readable text colour on it.
- :func:`heat_map`: a matrix of rates as coloured cells with the rate written in each.

Every label is XML-escaped here, so a value from a service cannot inject markup; the result is
a :class:`markupsafe.Markup` that templates insert as is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from decimal import Decimal

from markupsafe import Markup, escape

LOW = (255, 255, 255)     # rate 0
HIGH = (165, 15, 21)      # rate 1 (#a50f15)
BAR = "#2b6cb0"


def _num(value: float | Decimal | int | str) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return 0.0
    return number if number == number else 0.0  # NaN -> 0


def heat_colour(rate: float | Decimal | str) -> str:
    """``#rrggbb`` for a rate; clamped to [0, 1], linear from white to deep red."""
    r = min(1.0, max(0.0, _num(rate)))
    rgb = (round(lo + (hi - lo) * r) for lo, hi in zip(LOW, HIGH, strict=True))
    return "#{:02x}{:02x}{:02x}".format(*rgb)


def ink_for(colour: str) -> str:
    """Black or white text, whichever reads better on ``colour`` (relative luminance)."""
    red, green, blue = (int(colour[i:i + 2], 16) / 255 for i in (1, 3, 5))
    luminance = 0.2126 * red + 0.7152 * green + 0.0722 * blue
    return "#000000" if luminance > 0.5 else "#ffffff"


def bar_chart(bars: Sequence[tuple[str, float | Decimal | int | str]], *, title: str,
              width: int = 640, height: int = 260,
              fmt: Callable[[float], str] = lambda v: f"{v:,.0f}") -> Markup:
    """One bar per ``(label, value)``; heights proportional to the largest value."""
    top, bottom, side = 28, 40, 12
    plot_h = height - top - bottom
    values = [max(0.0, _num(v)) for _, v in bars]
    peak = max(values, default=0.0) or 1.0
    slot = (width - 2 * side) / max(len(bars), 1)
    bar_w = max(4.0, slot * 0.6)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
             f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">',
             f"<title>{escape(title)}</title>",
             f'<line x1="{side}" y1="{top + plot_h}" x2="{width - side}" y2="{top + plot_h}" '
             f'stroke="#888" stroke-width="1"/>']
    for i, ((label, _), value) in enumerate(zip(bars, values, strict=True)):
        h = plot_h * value / peak
        x = side + i * slot + (slot - bar_w) / 2
        y = top + plot_h - h
        centre = x + bar_w / 2
        parts.append(f'<rect class="bar" x="{x:.1f}" y="{y:.1f}" width="{bar_w:.1f}" '
                     f'height="{h:.1f}" fill="{BAR}" data-value="{value:g}">'
                     f"<title>{escape(label)}: {escape(fmt(value))}</title></rect>")
        parts.append(f'<text x="{centre:.1f}" y="{y - 6:.1f}" text-anchor="middle" '
                     f'font-size="12">{escape(fmt(value))}</text>')
        parts.append(f'<text x="{centre:.1f}" y="{top + plot_h + 18:.1f}" '
                     f'text-anchor="middle" font-size="12">{escape(label)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every interpolated text is escaped above


SERIES_COLOURS = ("#2b6cb0", "#dd6b20", "#c53030", "#6b46c1", "#2f855a", "#4a5568", "#b7791f")


def line_chart(labels: Sequence[str], series: Sequence[tuple[str, Sequence[float | int]]], *,
               title: str, width: int = 640, height: int = 260) -> Markup:
    """One polyline per ``(name, values)`` over the x ``labels``, with a legend."""
    top, bottom, side, legend_w = 28, 40, 40, 130
    plot_w, plot_h = width - side - legend_w, height - top - bottom
    peak = max((_num(v) for _, values in series for v in values), default=0.0) or 1.0
    step = plot_w / max(len(labels) - 1, 1)

    def point(i: int, v: float | int) -> str:
        return f"{side + i * step:.1f},{top + plot_h - plot_h * max(0.0, _num(v)) / peak:.1f}"

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" role="img" '
             f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">',
             f"<title>{escape(title)}</title>",
             f'<line x1="{side}" y1="{top + plot_h}" x2="{side + plot_w}" y2="{top + plot_h}" '
             f'stroke="#888" stroke-width="1"/>',
             f'<text x="{side - 6}" y="{top + 4}" text-anchor="end" font-size="11">'
             f"{peak:,.0f}</text>"]
    for j, (name, values) in enumerate(series):
        colour = SERIES_COLOURS[j % len(SERIES_COLOURS)]
        points = " ".join(point(i, v) for i, v in enumerate(values))
        parts.append(f'<polyline class="series" fill="none" stroke="{colour}" stroke-width="2" '
                     f'points="{points}"><title>{escape(name)}</title></polyline>')
        y = top + 14 * j
        parts.append(f'<rect x="{side + plot_w + 12}" y="{y}" width="10" height="10" '
                     f'fill="{colour}"/><text x="{side + plot_w + 26}" y="{y + 9}" '
                     f'font-size="12">{escape(name)}</text>')
    for i in sorted({0, len(labels) - 1}):
        if 0 <= i < len(labels):
            parts.append(f'<text x="{side + i * step:.1f}" y="{top + plot_h + 18}" '
                         f'text-anchor="middle" font-size="11">{escape(labels[i])}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every interpolated text is escaped above


def heat_map(rows: Sequence[str], cols: Sequence[str], rate: Callable[[str, str], float | None],
             *, title: str, row_label: Callable[[str], str] = str,
             col_label: Callable[[str], str] = str, cell: int = 84) -> Markup:
    """Cells coloured by :func:`heat_colour`; ``rate(row, col)`` None leaves a cell blank."""
    head_w, head_h = 120, 34
    width, height = head_w + cell * len(cols) + 2, head_h + 40 * len(rows) + 2
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="heatmap" role="img" '
             f'width="{width}" height="{height}" viewBox="0 0 {width} {height}">',
             f"<title>{escape(title)}</title>"]
    for j, col in enumerate(cols):
        parts.append(f'<text x="{head_w + j * cell + cell / 2:.1f}" y="{head_h - 12}" '
                     f'text-anchor="middle" font-size="12">{escape(col_label(col))}</text>')
    for i, row in enumerate(rows):
        y = head_h + i * 40
        parts.append(f'<text x="{head_w - 8}" y="{y + 25}" text-anchor="end" '
                     f'font-size="12">{escape(row_label(row))}</text>')
        for j, col in enumerate(cols):
            x = head_w + j * cell
            value = rate(row, col)
            fill = heat_colour(value) if value is not None else "#f4f4f4"
            parts.append(f'<rect class="cell" x="{x}" y="{y}" width="{cell - 2}" height="38" '
                         f'fill="{fill}" data-rate="{"" if value is None else f"{value:.4f}"}"/>')
            if value is not None:
                parts.append(f'<text x="{x + cell / 2 - 1:.1f}" y="{y + 24}" '
                             f'text-anchor="middle" font-size="12" fill="{ink_for(fill)}">'
                             f"{value * 100:.1f}%</text>")
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 - every interpolated text is escaped above
