"""The live training plot: loss (scaled to its largest value) and validation Dice (0..1) against the iteration, as a
small SVG the page shows with ``v-html``. Built only from numbers, so no text of the user's reaches the markup."""

from __future__ import annotations

SERIES = (("loss", "#1f77b4", "loss"), ("val_dice", "#ff7f0e", "val Dice"))


def _points(points, total: int, top: float, width: int, height: int, pad: int) -> str:
    span = max(total, points[-1][0], 1)
    return " ".join(f"{pad + (width - 2 * pad) * i / span:.1f},{height - pad - (height - 2 * pad) * v / top:.1f}"
                    for i, v in points)


def curvesSvg(series: dict, total: int, width: int = 380, height: int = 90) -> str:
    """``<svg>`` with one polyline per series present (``series``: name -> [(iteration, value)]); "" when empty."""
    pad, lines, legend = 6, [], []
    for x, (name, colour, label) in enumerate(SERIES):
        points = [(int(i), float(v)) for i, v in series.get(name, []) if v == v]  # NaN dropped
        if not points:
            continue
        top = 1.0 if name == "val_dice" else max(max(v for _, v in points), 1e-9)
        lines.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" '
                     f'points="{_points(points, total, top, width, height, pad)}"/>')
        legend.append(f'<text x="{width - 70}" y="{14 + 12 * x}" font-size="10" fill="{colour}">{label}</text>')
    if not lines:
        return ""
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
            f'data-testid="curves-svg"><rect width="{width}" height="{height}" fill="none" stroke="#ccc"/>'
            + "".join(lines + legend) + "</svg>")
