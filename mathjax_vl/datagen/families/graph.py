"""Cartesian plots (function graphs, analytic geometry) with the grid and tick labels laid out here.

Why not matplotlib's own ticks: an `Axis` builds a `Tick` per tick value (two tick lines, a grid
line, two labels), picks the values with a locator and lays the axis out again at draw time (the
tick label boxes place the axis label; an automatic title position measures the whole axis):
most of a 384 px graph's time (the same problems' graphs render 2.2x faster without it, measured
by `benchmarks/datagen.py --compare-with`). The builder knows the window, so it picks the tick
values itself (1-2-5 steps), draws the grid, the frame and the axes through the origin as two
`LineCollection`s and writes each tick label as a plain text just outside the frame. It also
knows every label's size, so a tick label that would collide with the axis names or leave the
canvas is left out (the grid line stays) instead of being clipped: the engine's clipped-label
gate never sees one.
"""

from __future__ import annotations

import math
import re

from mathjax_vl.datagen.families.drawing import (
    _CANVAS_PX,
    _FOOTER,
    FONT_SIZE,
    Point,
    _open_figure,
    fmt,
    text_size_px,
)
from mathjax_vl.datagen.spec import FIGURE_DPI

TICK_FONT_SIZE = 9
NAME_FONT_SIZE = 10  # the axis names "x" and "y"
TITLE_FONT_SIZE = 11
Y_NAME_RISE_PX = 8.0  # "y" sits this far above the frame: clear of a tick label at the top
LABEL_GAP_PX = 4.0  # between the frame and the tick labels / axis names
MAX_TICKS = 6  # labelled values per axis (a 1-2-5 step is chosen to stay within it)

Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in canvas pixels, y up


def tick_step(lo: float, hi: float, max_ticks: int | None = None) -> float:
    """Smallest 1-2-5 step with at most ``max_ticks`` (default MAX_TICKS) multiples in [lo, hi]."""
    max_ticks = max_ticks or MAX_TICKS
    span = max(hi - lo, 1e-9)
    exponent = math.floor(math.log10(span / max_ticks))
    for k in range(exponent - 1, exponent + 3):
        for m in (1, 2, 5):
            step = m * 10.0**k
            if len(tick_values(lo, hi, step)) <= max_ticks:
                return step
    raise AssertionError(f"no tick step for [{lo}, {hi}]")  # unreachable: 10**(e+2) fits


MAX_GRID_LINES = 24  # per axis; beyond it the grid stays at the labelled step


def grid_step(lo: float, hi: float, step: float) -> float:
    """Grid step under a labelled step: 1 -> 0.5, 2 -> 1, 5 -> 1 (times a power of ten), unless
    that makes more than MAX_GRID_LINES lines."""
    mantissa = round(step / 10.0 ** math.floor(math.log10(step) + 1e-9))
    fine = step / (5 if mantissa == 5 else 2)
    return fine if len(tick_values(lo, hi, fine)) <= MAX_GRID_LINES else step


def tick_values(lo: float, hi: float, step: float) -> list[float]:
    first, last = math.ceil(lo / step - 1e-9), math.floor(hi / step + 1e-9)
    return [round(i * step, 10) for i in range(first, last + 1)]


def tick_text(v: float) -> str:
    """How the program's f"{v:g}" prints a tick value (also the width estimate's input)."""
    return f"{v:g}"


def tick_literal(v: float) -> str:
    return str(int(v)) if float(v).is_integer() else fmt(v)


def label_width_px(text: str, fontsize: float) -> float:
    """Width of a short label in DejaVu Sans: digits 0.64 em, '-' and '.' ~0.36 em, others 0.7."""
    em = fontsize * FIGURE_DPI / 72
    narrow = sum(c in "-.,:;!|il " for c in text)
    digits = sum(c.isdigit() for c in text)
    return em * (0.64 * digits + 0.37 * narrow + 0.72 * (len(text) - digits - narrow))


def _overlaps(a: Box, b: Box, slack: float = 1.0) -> bool:
    return min(a[2], b[2]) - max(a[0], b[0]) > slack and min(a[3], b[3]) - max(a[1], b[1]) > slack


def _inside_canvas(b: Box) -> bool:
    return b[0] >= 1 and b[1] >= 1 and b[2] <= _CANVAS_PX - 1 and b[3] <= _CANVAS_PX - 1


class GraphCanvas:
    """A Cartesian plot: frame, grid, axes through 0, tick labels, axis names, optional title."""

    # Axes box in figure fractions: fixed so tick labels and the title always fit the canvas.
    AXES_BOX = (0.12, 0.1, 0.84, 0.8)

    SQUARE_BOX = (0.13, 0.1, 0.8, 0.8)  # equal aspect: square in pixels on the square canvas

    def __init__(
        self,
        doc: str,
        xlim: tuple[float, float],
        ylim: tuple[float, float],
        equal_aspect: bool = False,
    ) -> None:
        self.doc = doc
        self.equal_aspect = equal_aspect
        self.box = self.SQUARE_BOX if equal_aspect else self.AXES_BOX
        if equal_aspect:  # widen the shorter side so one unit has the same length on both axes
            span = max(xlim[1] - xlim[0], ylim[1] - ylim[0])
            cx, cy = (xlim[0] + xlim[1]) / 2, (ylim[0] + ylim[1]) / 2
            xlim, ylim = (cx - span / 2, cx + span / 2), (cy - span / 2, cy + span / 2)
        self.xlim = (float(xlim[0]), float(xlim[1]))
        self.ylim = (float(ylim[0]), float(ylim[1]))
        self.body: list[str] = []
        self.title: str | None = None
        self.xticks: tuple[tuple[float, str], ...] | None = None  # (value, label) pairs
        self.uses_patches: set[str] = set()

    def px_per_unit(self) -> tuple[float, float]:
        _, _, bw, bh = self.box
        return (
            bw * _CANVAS_PX / (self.xlim[1] - self.xlim[0]),
            bh * _CANVAS_PX / (self.ylim[1] - self.ylim[0]),
        )

    def curve(self, x_lo: float, x_hi: float, expr: str, color: str = "tab:blue") -> None:
        """Plot y = expr (numpy code in ``x``) on [x_lo, x_hi], clipped to the window by ylim."""
        if not re.search(r"\bx\b", expr):  # a constant function: broadcast over x
            expr = f"np.full_like(x, {expr})"
        self.body += [
            f"    x = np.linspace({fmt(x_lo)}, {fmt(x_hi)}, 400)",
            f'    ax.plot(x, {expr}, color="{color}", linewidth=2)',
        ]

    def param_curve(self, t_lo: float, t_hi: float, xexpr: str, yexpr: str, color: str) -> None:
        self.body += [
            f"    t = np.linspace({fmt(t_lo)}, {fmt(t_hi)}, 400)",
            f'    ax.plot({xexpr}, {yexpr}, color="{color}", linewidth=2)',
        ]

    def hline(self, y: float, dashed: bool = True, color: str = "gray") -> None:
        style = '"--"' if dashed else '"-"'
        self.body.append(
            f'    ax.axhline({fmt(y)}, color="{color}", linestyle={style}, linewidth=1.2)'
        )

    def vline(self, x: float, dashed: bool = True, color: str = "gray") -> None:
        style = '"--"' if dashed else '"-"'
        self.body.append(
            f'    ax.axvline({fmt(x)}, color="{color}", linestyle={style}, linewidth=1.2)'
        )

    def segment(self, p: Point, q: Point, color: str = "black", dashed: bool = False) -> None:
        style = ', linestyle="--"' if dashed else ""
        self.body.append(
            f"    ax.plot([{fmt(p[0])}, {fmt(q[0])}], [{fmt(p[1])}, {fmt(q[1])}], "
            f'color="{color}", linewidth=1.5{style})'
        )

    def point(
        self, p: Point, text: str | None, color: str = "black", side: tuple[int, int] = (1, 1)
    ) -> None:
        """A marked point with its label placed inside the plot window."""
        self.body.append(f'    ax.plot([{fmt(p[0])}], [{fmt(p[1])}], "o", color="{color}", ms=5)')
        if text:
            self.label_near(p, text, color, side)

    def label_near(
        self, p: Point, text: str, color: str = "black", side: tuple[int, int] = (1, 1)
    ) -> None:
        """Label beside ``p`` on the preferred ``side`` (signs of x, y), flipped to stay inside."""
        sx, sy = self.px_per_unit()
        w, h = text_size_px(text, FONT_SIZE - 1)
        gap = 6.0
        x, y = float(p[0]), float(p[1])
        dx = (gap + w / 2) / sx * (1 if side[0] >= 0 else -1)
        cx = x + dx
        if not self.xlim[0] + w / 2 / sx <= cx <= self.xlim[1] - w / 2 / sx:
            cx = x - dx
        cx = min(max(cx, self.xlim[0] + (w / 2 + 3) / sx), self.xlim[1] - (w / 2 + 3) / sx)
        dy = (gap + h / 2) / sy * (1 if side[1] >= 0 else -1)
        cy = y + dy
        if not self.ylim[0] + h / 2 / sy <= cy <= self.ylim[1] - h / 2 / sy:
            cy = y - dy
        cy = min(max(cy, self.ylim[0] + (h / 2 + 3) / sy), self.ylim[1] - (h / 2 + 3) / sy)
        self.body.append(
            f"    ax.text({fmt(cx)}, {fmt(cy)}, {text!r}, fontsize={FONT_SIZE - 1}, "
            f'color="{color}", ha="center", va="center", '
            'bbox=dict(boxstyle="round,pad=0.15", facecolor="white", edgecolor="none", alpha=0.8))'
        )

    # ----- axes layout -----
    def _frame_px(self) -> Box:
        bx, by, bw, bh = self.box
        return bx * _CANVAS_PX, by * _CANVAS_PX, (bx + bw) * _CANVAS_PX, (by + bh) * _CANVAS_PX

    def label_values(self) -> tuple[list[float], list[float]]:
        """Candidate labelled values (1-2-5 steps; the same step on both axes if equal aspect)."""
        (x0, x1), (y0, y1) = self.xlim, self.ylim
        sx, sy = tick_step(x0, x1), tick_step(y0, y1)
        if self.equal_aspect:  # square grid cells
            sx = sy = max(sx, sy)
        xs = [float(v) for v, _ in self.xticks] if self.xticks else tick_values(x0, x1, sx)
        return xs, tick_values(y0, y1, sy)

    def grid_values(self) -> tuple[list[float], list[float]]:
        """Grid lines: every labelled value and the minor steps between (1 between 0 and 5)."""
        (x0, x1), (y0, y1) = self.xlim, self.ylim
        sx, sy = tick_step(x0, x1), tick_step(y0, y1)
        if self.equal_aspect:
            sx = sy = max(sx, sy)
        xs = tick_values(x0, x1, grid_step(x0, x1, sx))
        if self.xticks:
            xs = [float(v) for v, _ in self.xticks]
        return xs, tick_values(y0, y1, grid_step(y0, y1, sy))

    def y_name_above(self) -> bool:
        """ "y" goes above the frame's top-left corner, clear of the top tick label, unless a
        long title reaches that corner; then it goes just left of the corner (a top tick label
        there is left out)."""
        fx0, _, fx1, _ = self._frame_px()
        if not self.title:
            return True
        title_left = (fx0 + fx1) / 2 - label_width_px(self.title, TITLE_FONT_SIZE) / 2
        return title_left > fx0 - LABEL_GAP_PX + 10

    def name_boxes(self) -> tuple[Box, Box]:
        """Canvas boxes of "x" (right of the frame's bottom end) and "y" (at its top-left)."""
        fx0, fy0, fx1, fy1 = self._frame_px()
        w_x, h = label_width_px("x", NAME_FONT_SIZE), NAME_FONT_SIZE * FIGURE_DPI / 72 * 1.2
        w_y = label_width_px("y", NAME_FONT_SIZE)
        x_box = (fx1 + LABEL_GAP_PX, fy0, fx1 + LABEL_GAP_PX + w_x, fy0 + h)
        if self.y_name_above():
            bottom = fy1 + Y_NAME_RISE_PX
            y_box = (fx0 - LABEL_GAP_PX - w_y, bottom, fx0 - LABEL_GAP_PX, bottom + h)
        else:
            y_box = (fx0 - LABEL_GAP_PX - w_y, fy1 - h, fx0 - LABEL_GAP_PX, fy1)
        return x_box, y_box

    def tick_labels(self) -> tuple[list[tuple[float, str]], list[tuple[float, str]]]:
        """The (value, text) pairs to label on each axis: inside the canvas, no collisions."""
        xs, ys = self.label_values()
        fx0, fy0, _, _ = self._frame_px()
        sx, sy = self.px_per_unit()
        h = TICK_FONT_SIZE * FIGURE_DPI / 72 * 1.2
        placed: list[Box] = list(self.name_boxes())
        x_texts = [lab for _, lab in self.xticks] if self.xticks else [tick_text(v) for v in xs]
        x_out, y_out = [], []
        for v, text in zip(xs, x_texts):
            cx, w = fx0 + (v - self.xlim[0]) * sx, label_width_px(text, TICK_FONT_SIZE)
            box = (cx - w / 2, fy0 - LABEL_GAP_PX - h, cx + w / 2, fy0 - LABEL_GAP_PX)
            if _inside_canvas(box) and not any(_overlaps(box, b) for b in placed):
                placed.append(box)
                x_out.append((v, text))
        for v in ys:
            text = tick_text(v)
            cy, w = fy0 + (v - self.ylim[0]) * sy, label_width_px(text, TICK_FONT_SIZE)
            box = (fx0 - LABEL_GAP_PX - w, cy - h / 2, fx0 - LABEL_GAP_PX, cy + h / 2)
            if _inside_canvas(box) and not any(_overlaps(box, b) for b in placed):
                placed.append(box)
                y_out.append((v, text))
        return x_out, y_out

    def _axes_lines(self) -> list[str]:
        (x0, x1), (y0, y1) = self.xlim, self.ylim
        grid_x, grid_y = self.grid_values()
        x_labels, y_labels = self.tick_labels()
        _, _, bw, bh = self.box
        gap_x = fmt(LABEL_GAP_PX / (bh * _CANVAS_PX))  # as a fraction of the frame
        gap_y = fmt(LABEL_GAP_PX / (bw * _CANVAS_PX))
        above = self.y_name_above()
        y_name_at = fmt(1 + Y_NAME_RISE_PX / (bh * _CANVAS_PX)) if above else "1"
        y_name_va = "bottom" if above else "top"
        values = lambda vs: f"[{', '.join(tick_literal(v) for v in vs)}]"
        # The frame and the axes through the origin (where in view) are one unclipped collection;
        # the grid another: two artists instead of vlines + hlines + axhline + axvline + a patch.
        lo, hi = f"({fmt(x0)}, {fmt(y0)})", f"({fmt(x1)}, {fmt(y1)})"
        black = [f"[{lo}, ({fmt(x1)}, {fmt(y0)}), {hi}, ({fmt(x0)}, {fmt(y1)}), {lo}]"]
        if y0 < 0 < y1:
            black.append(f"[({fmt(x0)}, 0), ({fmt(x1)}, 0)]")
        if x0 < 0 < x1:
            black.append(f"[(0, {fmt(y0)}), (0, {fmt(y1)})]")
        lines = [
            '    ax.axis("off")  # frame, grid and tick labels are drawn directly below',
            f"    grid = [[(v, {fmt(y0)}), (v, {fmt(y1)})] for v in {values(grid_x)}]",
            f"    grid += [[({fmt(x0)}, v), ({fmt(x1)}, v)] for v in {values(grid_y)}]",
            '    ax.add_collection(LineCollection(grid, colors="0.87", linewidths=0.8))',
            f"    frame_and_axes = [{', '.join(black)}]",
            '    ax.add_collection(LineCollection(frame_and_axes, colors="black", linewidths=0.9, '
            "clip_on=False))",
            "    # tick labels just outside the frame (x in data, y in axes units; and vice versa)",
        ]
        x_kw = (
            f'transform=ax.get_xaxis_transform(), fontsize={TICK_FONT_SIZE}, ha="center", va="top"'
        )
        kept = [v for v, _ in x_labels]
        if self.xticks:
            lines += [
                f"    for v, label in zip({values(kept)}, {[lab for _, lab in x_labels]!r}):",
                f"        ax.text(v, -{gap_x}, label, {x_kw})",
            ]
        else:
            lines += [
                f"    for v in {values(kept)}:",
                f'        ax.text(v, -{gap_x}, f"{{v:g}}", {x_kw})',
            ]
        y_kw = (
            f"transform=ax.get_yaxis_transform(), fontsize={TICK_FONT_SIZE}, "
            'ha="right", va="center"'
        )
        kept = [v for v, _ in y_labels]
        lines += [
            f"    for v in {values(kept)}:",
            f'        ax.text(-{gap_y}, v, f"{{v:g}}", {y_kw})',
        ]
        lines += [
            f'    ax.text({fmt(1 + LABEL_GAP_PX / (bw * _CANVAS_PX))}, 0, "x", '
            f"transform=ax.transAxes, fontsize={NAME_FONT_SIZE}, "
            'ha="left", va="bottom")',
            f'    ax.text(-{gap_y}, {y_name_at}, "y", transform=ax.transAxes, '
            f'fontsize={NAME_FONT_SIZE}, ha="right", va="{y_name_va}")',
        ]
        return lines

    def program(self) -> str:
        imports = [
            "import matplotlib.pyplot as plt",
            "import numpy as np",
            "from matplotlib.collections import LineCollection",
        ]
        box = ", ".join(str(v) for v in self.box)
        lines = _open_figure(self.doc, imports, self.uses_patches, box, self.xlim, self.ylim)
        lines += self._axes_lines()
        if self.title:  # y given: a fixed position, no automatic layout pass at draw time
            lines.append(
                f"    ax.set_title({self.title!r}, fontsize={TITLE_FONT_SIZE}, pad=6, y=1.0)"
            )
        lines += [*self.body, *_FOOTER]
        return "\n".join(lines)


def nice_ticks_window(lo: float, hi: float, pad: float = 0.08) -> tuple[float, float]:
    """Window [lo, hi] widened by ``pad`` of its span on each side and snapped to halves."""
    span = max(hi - lo, 1e-6)
    a, b = lo - pad * span, hi + pad * span
    return math.floor(a * 2) / 2, math.ceil(b * 2) / 2
