"""Charts drawn on the server as SVG: no chart library to ship, nothing for
the browser to compute, and the same picture in a screenshot, a printout or
a page with scripts turned off.

Each function takes plain numbers and labels (already translated) and
returns markup to put in a template.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from markupsafe import Markup, escape

PALETTE = ("#3370ff", "#34c724", "#ff8800", "#f54a45", "#7f3bf5", "#14c0ff", "#ffc60a", "#8f959e")


def _fmt(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def _nice_top(value: float) -> float:
    """The axis's top: four equal steps of a round size (1, 2 or 5 × 10ⁿ,
    at least 1), so every tick is a whole number when the data are."""
    quarter = max(value / 4, 1.0)
    step = 1.0
    while step * 10 <= quarter:
        step *= 10
    for multiple in (1, 2, 5, 10):
        if multiple * step >= quarter:
            return 4 * multiple * step
    return 40 * step


def stacked_columns(
    categories: Sequence[str],
    series: Mapping[str, Sequence[float]],
    *,
    title: str,
    width: int = 720,
    height: int = 260,
) -> Markup:
    """One column per category (e.g. hour), its parts stacked by series
    (e.g. channel), with a legend."""
    left, right, top, bottom = 40, 10, 28, 34
    plot_w, plot_h = width - left - right, height - top - bottom
    totals = [sum(values[i] for values in series.values()) for i in range(len(categories))]
    peak = _nice_top(max(totals, default=0))
    slot = plot_w / max(len(categories), 1)
    parts = [_svg_open(width, height, title)]
    parts += _y_axis(left, top, plot_w, plot_h, peak)
    for i, category in enumerate(categories):
        x = left + i * slot + slot * 0.15
        y = float(top + plot_h)
        for colour, (name, values) in zip(_colours(), series.items(), strict=False):
            value = values[i]
            if value <= 0:
                continue
            h = plot_h * value / peak
            y -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{slot * 0.7:.1f}" height="{h:.1f}" '
                f'fill="{colour}"><title>{escape(category)} {escape(name)}: {_fmt(value)}</title></rect>'
            )
        if len(categories) <= 12 or i % 2 == 0:
            parts.append(
                f'<text x="{x + slot * 0.35:.1f}" y="{top + plot_h + 14}" text-anchor="middle">'
                f"{escape(category)}</text>"
            )
    parts += _legend(list(series), left, height - 6)
    parts.append("</svg>")
    return Markup("".join(parts))


def horizontal_bars(
    items: Sequence[tuple[str, float]],
    *,
    title: str,
    unit: str = "",
    width: int = 420,
    colours: Sequence[str] | None = None,
) -> Markup:
    """One bar per item (a label and a value), longest first as given."""
    row, top = 26, 8
    room = int(width * 0.5)  # at most half the width for the labels
    label_w = min(max((_text_width(label) for label, _ in items), default=40) + 14, room)

    height = top + row * max(len(items), 1) + 8
    peak = max((v for _, v in items), default=0) or 1
    bar_room = width - label_w - 70
    parts = [_svg_open(width, height, title)]
    for i, (label, value) in enumerate(items):
        y = top + i * row
        colour = (colours or PALETTE)[i % len(colours or PALETTE)]
        w = max(bar_room * value / peak, 1 if value else 0)
        parts.append(
            f'<text x="{label_w - 8}" y="{y + 15}" text-anchor="end">{escape(_fit(label, room - 14))}</text>'
            f'<rect x="{label_w}" y="{y + 4}" width="{w:.1f}" height="{row - 10}" rx="3" fill="{colour}">'
            f"<title>{escape(label)}: {_fmt(value)}{escape(unit)}</title></rect>"
            f'<text x="{label_w + w + 6:.1f}" y="{y + 15}">{_fmt(value)}{escape(unit)}</text>'
        )
    if not items:
        parts.append(f'<text x="{width / 2}" y="{top + 14}" text-anchor="middle">—</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def trend_line(
    labels: Sequence[str],
    values: Sequence[float],
    *,
    title: str,
    width: int = 480,
    height: int = 170,
    colour: str = PALETTE[3],
) -> Markup:
    """A line over time (e.g. new dead letters per day)."""
    left, right, top, bottom = 36, 10, 12, 24
    plot_w, plot_h = width - left - right, height - top - bottom
    peak = _nice_top(max(values, default=0))
    step = plot_w / max(len(values) - 1, 1)
    points = [(left + i * step, top + plot_h - plot_h * v / peak) for i, v in enumerate(values)]
    parts = [_svg_open(width, height, title)]
    parts += _y_axis(left, top, plot_w, plot_h, peak)
    if points:
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        for (x, y), label, v in zip(points, labels, values, strict=False):
            parts.append(
                f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}">'
                f"<title>{escape(label)}: {_fmt(v)}</title></circle>"
            )
    for i, label in enumerate(labels):
        if i in (0, len(labels) - 1) or len(labels) <= 8:
            anchor = "end" if i == len(labels) - 1 and i else "middle"
            parts.append(
                f'<text x="{left + i * step:.1f}" y="{height - 6}" text-anchor="{anchor}">'
                f"{escape(label)}</text>"
            )
    parts.append("</svg>")
    return Markup("".join(parts))


def sparkline(values: Sequence[float], *, title: str, width: int = 140, height: int = 28) -> Markup:
    """A small line in a table row: the shape of a count over time."""
    peak = max(values, default=0) or 1
    step = (width - 4) / max(len(values) - 1, 1)
    points = " ".join(
        f"{2 + i * step:.1f},{height - 3 - (height - 6) * v / peak:.1f}"
        for i, v in enumerate(values)
    )
    return Markup(
        f'<svg class="spark" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" xmlns="http://www.w3.org/2000/svg" aria-label="{escape(title)}">'
        f"<title>{escape(title)}: {', '.join(_fmt(v) for v in values)}</title>"
        f'<polyline points="{points}" fill="none" stroke="{PALETTE[3]}" stroke-width="1.5"/></svg>'
    )


def share_bar(parts_: Sequence[tuple[str, float, str]], *, title: str, width: int = 420) -> Markup:
    """One bar split into shares (label, value, colour): e.g. delivered vs exceptions."""
    height = 54
    total = sum(v for _, v, _ in parts_) or 1
    x = 0.0
    out = [_svg_open(width, height, title)]
    for label, value, colour in parts_:
        w = width * value / total
        if w > 0:
            out.append(
                f'<rect x="{x:.1f}" y="0" width="{w:.1f}" height="26" fill="{colour}">'
                f"<title>{escape(label)}: {_fmt(value)}</title></rect>"
            )
        x += w
    lx = 0
    for label, value, colour in parts_:
        out.append(
            f'<rect x="{lx}" y="36" width="10" height="10" fill="{colour}"/>'
            f'<text x="{lx + 14}" y="45">{escape(label)} {_fmt(value)}</text>'
        )
        lx += 14 + 13 * len(label) + 8 * len(_fmt(value)) + 24
    out.append("</svg>")
    return Markup("".join(out))


def _text_width(text: str) -> int:
    """About how wide ``text`` is at the charts' 12 px: a Chinese character
    is a full square, a Latin one about half."""
    return sum(12 if ord(ch) > 0x2E80 else 7 for ch in text)


def _fit(text: str, room: int) -> str:
    """``text``, cut with an ellipsis to fit ``room`` pixels (the whole text
    stays in the bar's tooltip)."""
    if _text_width(text) <= room:
        return text
    while text and _text_width(text + "…") > room:
        text = text[:-1]
    return text + "…"


def _svg_open(width: int, height: int, title: str) -> str:
    return (
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" '
        f'xmlns="http://www.w3.org/2000/svg" aria-label="{escape(title)}"><title>{escape(title)}</title>'
    )


def _y_axis(left: int, top: int, plot_w: float, plot_h: float, peak: float) -> list[str]:
    lines = []
    for k in range(5):
        value = peak * k / 4
        y = top + plot_h - plot_h * k / 4
        lines.append(
            f'<line x1="{left}" x2="{left + plot_w:.1f}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="#8f959e" stroke-opacity=".25"/>'
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end">{_fmt(value)}</text>'
        )
    return lines


def _legend(names: Sequence[str], left: int, y: int) -> list[str]:
    out, x = [], float(left)
    for colour, name in zip(_colours(), names, strict=False):
        out.append(
            f'<rect x="{x:.1f}" y="{y - 9}" width="10" height="10" fill="{colour}"/>'
            f'<text x="{x + 14:.1f}" y="{y}">{escape(name)}</text>'
        )
        x += 24 + 7 * len(name)
    return out


def _colours() -> Sequence[str]:
    return PALETTE * 4
