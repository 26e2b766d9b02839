"""Builders that emit standalone matplotlib programs (the Plotter's "predefined basic tools").

A family describes its figure with calls such as ``canvas.segment(A, B)`` or
``canvas.label(mid, "5 cm")``; the builder records one readable matplotlib statement per call and
tracks the extent of everything drawn, including an estimate of each text's size in pixels. The
final program sets the axes limits from that extent plus margins, so no label falls off the
canvas (the engine's clipping gate checks it), and the code reads like code a person would write:
that is the image-code supervision MathCoder-VL trains on.

Canvases:
- :class:`GeometryCanvas`: equal-aspect figure with no axes, for plane and solid geometry.
- :class:`mathjax_vl.datagen.families.graph.GraphCanvas`: a Cartesian grid with tick labels, axis
  names and optional title, for function graphs and analytic geometry (MAVIS-style plots).

Programs follow the contract in :mod:`mathjax_vl.datagen.spec` (``draw(out_path)``, Agg backend,
fixed size/dpi, metadata without Software/date, deterministic).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

import numpy as np

from mathjax_vl.datagen.spec import FIGURE_DPI, FIGURE_SIZE_INCHES

Point = tuple[float, float]

FONT_SIZE = 12
# Conservative DejaVu Sans metrics at the figure's dpi: average advance ~0.62 em, line height ~1.25.
_CHAR_W_PX = 0.62 * FONT_SIZE * FIGURE_DPI / 72
_LINE_H_PX = 1.25 * FONT_SIZE * FIGURE_DPI / 72
_CANVAS_PX = FIGURE_SIZE_INCHES[0] * FIGURE_DPI


def fmt(x: float) -> str:
    """A float literal for emitted code: short, deterministic."""
    v = round(float(x), 4)
    if v == 0:
        v = 0.0
    return repr(v)


def pt(p: Sequence[float]) -> str:
    return f"({fmt(p[0])}, {fmt(p[1])})"


def text_size_px(text: str, fontsize: float = FONT_SIZE) -> tuple[float, float]:
    scale = fontsize / FONT_SIZE
    return len(text) * _CHAR_W_PX * scale, _LINE_H_PX * scale


def _open_figure(
    doc: str, imports: list[str], uses_patches: set[str], axes_box: str, x_lim, y_lim
) -> list[str]:
    """The program up to its axes: docstring, imports (+ the patch classes used), `draw(out)`
    creating the fixed-size figure with one axes at `axes_box` and the given limits."""
    if uses_patches:
        imports = [*imports, f"from matplotlib.patches import {', '.join(sorted(uses_patches))}"]
    w, h = FIGURE_SIZE_INCHES
    return [
        *_header(doc, imports),
        f"    fig = plt.figure(figsize=({w}, {h}), dpi={FIGURE_DPI})",
        f"    ax = fig.add_axes([{axes_box}])",
        f"    ax.set_xlim({fmt(x_lim[0])}, {fmt(x_lim[1])})",
        f"    ax.set_ylim({fmt(y_lim[0])}, {fmt(y_lim[1])})",
    ]


def _header(doc: str, imports: Sequence[str]) -> list[str]:
    return [
        f'"""{doc}"""',
        "import sys",
        "",
        "import matplotlib",
        "",
        'matplotlib.use("Agg")',
        *imports,
        "",
        "",
        "def draw(out_path):",
    ]


# zlib level 1 instead of PIL's default 6: faster encoding for a slightly larger file (PNG stays
# lossless; the pixels are identical).
_FOOTER = [
    f'    fig.savefig(out_path, dpi={FIGURE_DPI}, metadata={{"Software": None}},',
    '                pil_kwargs={"compress_level": 1})',
    "    plt.close(fig)",
    "",
    "",
    'if __name__ == "__main__":',
    "    draw(sys.argv[1])",
    "",
]


class GeometryCanvas:
    """Equal-aspect drawing without axes; limits fit the drawing plus every label."""

    def __init__(self, doc: str) -> None:
        self.doc = doc
        self.body: list[str] = []
        self.xs: list[float] = []
        self.ys: list[float] = []
        self.texts: list[tuple[float, float, str, float]] = []  # centre x, y, text, fontsize
        self.uses_patches: set[str] = set()
        # Straight strokes grouped by style (linewidth, dashed): one LineCollection per style
        # instead of one Line2D per segment (each Line2D is an artist to build and draw; a box
        # has 12+ edges). Dots likewise go into one marker-only plot.
        self.strokes: dict[tuple[float, bool], list[list[Point]]] = {}
        self.dots: list[Point] = []

    def _stroke(self, pts: Sequence[Sequence[float]], lw: float, dashed: bool = False) -> None:
        self.strokes.setdefault((lw, dashed), []).append([(float(x), float(y)) for x, y in pts])

    def _extent(self, pts: Sequence[Point]) -> None:
        for x, y in pts:
            self.xs.append(float(x))
            self.ys.append(float(y))

    def comment(self, text: str) -> None:
        self.body.append(f"    # {text}")

    def segment(self, p: Point, q: Point, dashed: bool = False, lw: float = 1.6) -> None:
        self._stroke([p, q], lw, dashed)
        self._extent([p, q])

    def polygon(self, pts: Sequence[Point], fill: str | None = None, dashed: bool = False) -> None:
        self.uses_patches.add("Polygon")
        fc = f'"{fill}"' if fill else '"none"'
        style = ', linestyle="--"' if dashed else ""
        self.body.append(
            f"    ax.add_patch(Polygon([{', '.join(pt(p) for p in pts)}], closed=True, "
            f'facecolor={fc}, edgecolor="black", linewidth=1.6{style}))'
        )
        self._extent(pts)

    def circle(self, c: Point, r: float, dashed: bool = False, fill: str | None = None) -> None:
        self.uses_patches.add("Circle")
        fc = f'"{fill}"' if fill else '"none"'
        style = ', linestyle="--"' if dashed else ""
        self.body.append(
            f"    ax.add_patch(Circle({pt(c)}, {fmt(r)}, facecolor={fc}, "
            f'edgecolor="black", linewidth=1.6{style}))'
        )
        self._extent([(c[0] - r, c[1] - r), (c[0] + r, c[1] + r)])

    def arc(
        self,
        c: Point,
        width: float,
        height: float,
        theta1: float,
        theta2: float,
        dashed: bool = False,
        lw: float = 1.6,
    ) -> None:
        """Elliptical arc (degrees, counter-clockwise from theta1 to theta2)."""
        self.uses_patches.add("Arc")
        style = ', linestyle="--"' if dashed else ""
        self.body.append(
            f"    ax.add_patch(Arc({pt(c)}, {fmt(width)}, {fmt(height)}, theta1={fmt(theta1)}, "
            f'theta2={fmt(theta2)}, color="black", linewidth={lw}{style}))'
        )
        # Extent of the arc from sampled points (exact enough for limits).
        ts = np.radians(np.linspace(theta1, theta2, 73))
        w2, h2 = width / 2, height / 2
        self._extent([(c[0] + w2 * math.cos(t), c[1] + h2 * math.sin(t)) for t in ts])

    def dot(self, p: Point) -> None:
        self.dots.append((float(p[0]), float(p[1])))
        self._extent([p])

    def label(self, p: Point, text: str, fontsize: float = FONT_SIZE, color: str = "black") -> None:
        """Text centred at ``p`` (data coordinates)."""
        self.body.append(
            f"    ax.text({fmt(p[0])}, {fmt(p[1])}, {text!r}, fontsize={fontsize}, "
            f'color="{color}", ha="center", va="center")'
        )
        self.texts.append((float(p[0]), float(p[1]), text, fontsize))

    def point_name(self, p: Point, name: str, away_from: Point, scale: float) -> None:
        """Vertex name placed just outside the figure, away from ``away_from`` (e.g. centroid)."""
        d = np.array(p, float) - np.array(away_from, float)
        n = np.linalg.norm(d)
        d = d / n if n > 1e-9 else np.array([0.0, 1.0])
        self.label(tuple(np.array(p) + d * 0.07 * scale), name)

    def side_label(
        self, p: Point, q: Point, text: str, toward: Point, scale: float, at: float = 0.5
    ) -> None:
        """Label the segment pq at fraction ``at`` (midpoint by default), away from ``toward``."""
        p_, q_ = np.array(p, float), np.array(q, float)
        mid = p_ + (q_ - p_) * at
        normal = np.array([-(q_ - p_)[1], (q_ - p_)[0]])
        normal /= np.linalg.norm(normal)
        if np.dot(normal, np.array(toward, float) - mid) > 0:
            normal = -normal
        w_px, h_px = text_size_px(text)
        # Push the label out by its half extent along the normal (in units of the figure scale).
        push = 0.05 + 0.5 * (abs(normal[0]) * w_px + abs(normal[1]) * h_px) / _CANVAS_PX * 1.4
        self.label(tuple(mid + normal * push * scale), text)

    def right_angle(self, v: Point, a: Point, b: Point, size: float) -> None:
        v_, a_, b_ = (np.array(x, float) for x in (v, a, b))
        ua = (a_ - v_) / np.linalg.norm(a_ - v_) * size
        ub = (b_ - v_) / np.linalg.norm(b_ - v_) * size
        self._stroke([v_ + ua, v_ + ua + ub, v_ + ub], 1.2)

    def angle_mark(
        self, v: Point, a: Point, b: Point, radius: float, text: str | None, scale: float
    ) -> None:
        """Arc at vertex v from ray va to ray vb (the smaller angle), with an optional label."""
        v_ = np.array(v, float)
        t1 = math.degrees(math.atan2(a[1] - v[1], a[0] - v[0]))
        t2 = math.degrees(math.atan2(b[1] - v[1], b[0] - v[0]))
        if (t2 - t1) % 360 > 180:
            t1, t2 = t2, t1
        t2 = t1 + (t2 - t1) % 360
        self.arc(v, 2 * radius, 2 * radius, t1, t2, lw=1.2)
        if text:
            mid = math.radians((t1 + t2) / 2)
            w_px, _ = text_size_px(text)
            r = radius + 0.04 * scale + 0.5 * w_px / _CANVAS_PX * scale * 1.2
            self.label((v_[0] + r * math.cos(mid), v_[1] + r * math.sin(mid)), text)

    def tick(self, p: Point, q: Point, n: int, size: float) -> None:
        """n short ticks across the middle of pq (equal-length marks)."""
        p_, q_ = np.array(p, float), np.array(q, float)
        u = (q_ - p_) / np.linalg.norm(q_ - p_)
        normal = np.array([-u[1], u[0]])
        mid = (p_ + q_) / 2
        for i in range(n):
            c = mid + u * (i - (n - 1) / 2) * size * 0.6
            self._stroke([c - normal * size, c + normal * size], 1.2)

    def arrow_mark(self, p: Point, q: Point, n: int, size: float) -> None:
        """n chevrons pointing from p to q at the middle of pq (parallel-line marks)."""
        p_, q_ = np.array(p, float), np.array(q, float)
        u = (q_ - p_) / np.linalg.norm(q_ - p_)
        normal = np.array([-u[1], u[0]])
        mid = (p_ + q_) / 2
        for i in range(n):
            tip = mid + u * (i - (n - 1) / 2) * size * 0.8
            a, b = tip - u * size + normal * size * 0.6, tip - u * size - normal * size * 0.6
            self._stroke([a, tip, b], 1.2)

    # ----- program assembly -----
    def limits(self, margin_px: float = 10.0) -> tuple[float, float, float, float]:
        """Square data window holding every drawn point and every label's estimated box."""
        x0, x1 = min(self.xs), max(self.xs)
        y0, y1 = min(self.ys), max(self.ys)
        span = max(x1 - x0, y1 - y0, 1e-6) * 1.12
        for _ in range(8):  # fixed point: label sizes in data units depend on the span
            per_px = span / _CANVAS_PX
            lx0, lx1, ly0, ly1 = x0, x1, y0, y1
            for cx, cy, text, fs in self.texts:
                w, h = text_size_px(text, fs)
                hw, hh = (w / 2 + margin_px) * per_px, (h / 2 + margin_px) * per_px
                lx0, lx1 = min(lx0, cx - hw), max(lx1, cx + hw)
                ly0, ly1 = min(ly0, cy - hh), max(ly1, cy + hh)
            pad = margin_px * per_px
            new_span = max(lx1 - lx0, ly1 - ly0) + 2 * pad
            if new_span <= span + 1e-9:
                break
            span = new_span
        cx, cy = (lx0 + lx1) / 2, (ly0 + ly1) / 2
        return cx - span / 2, cx + span / 2, cy - span / 2, cy + span / 2

    def _stroke_lines(self) -> list[str]:
        """One LineCollection per stroke style: edges, hidden (dashed) edges, marks."""
        lines = []
        for (lw, dashed), polylines in self.strokes.items():
            name = ("hidden_" if dashed else "") + ("edges" if lw >= 1.5 else "marks")
            lines.append(f"    {name} = [")
            lines += [f"        [{', '.join(pt(p) for p in poly)}]," for poly in polylines]
            lines.append("    ]")
            # Round caps and joins: what Line2D segments drawn one by one looked like.
            style = 'linestyles="--"' if dashed else 'capstyle="round", joinstyle="round"'
            lines.append(
                f'    ax.add_collection(LineCollection({name}, colors="black", linewidths={lw}, '
                f"{style}))"
            )
        return lines

    def program(self) -> str:
        x0, x1, y0, y1 = self.limits()
        imports = ["import matplotlib.pyplot as plt"]
        if self.strokes:
            imports.append("from matplotlib.collections import LineCollection")
        lines = _open_figure(self.doc, imports, self.uses_patches, "0, 0, 1, 1", (x0, x1), (y0, y1))
        lines += ['    ax.axis("off")', *self._stroke_lines(), *self.body]
        if self.dots:  # on top of the lines (same z-order, added later)
            lines.append(
                f"    ax.plot([{', '.join(fmt(p[0]) for p in self.dots)}], "
                f"[{', '.join(fmt(p[1]) for p in self.dots)}], "
                '"o", color="black", ms=3.5)'
            )
        lines += _FOOTER
        return "\n".join(lines)


# ----- declarative plane-geometry scenes (matplotlib and TikZ from the same description) -----
#
# A scene is plain tuples (picklable, hashable):
#   points:  ((name, x, y, label_dx, label_dy, dot), ...)   label direction is a unit vector
#   paths:   ((("A", "B", "C"), closed, dashed), ...)
#   circles: ((x, y, r, dashed), ...)
#   arcs:    ((x, y, r, theta1_deg, theta2_deg, dashed), ...)   counter-clockwise
#   ellipses: ((x, y, width, height, theta1_deg, theta2_deg, dashed), ...)   elliptical arcs
#   items:   ((fact_key | None, kind, payload), ...)          None: always drawn
#     kind "side":     (p_name, q_name, text, toward_name[, at])  label on segment pq at fraction
#                      ``at`` (0.5: midpoint; move it off a named midpoint), away from toward
#     kind "angle":    (v_name, a_name, b_name, text)         arc + label (text "" for arc only)
#     kind "right":    (v_name, a_name, b_name)               right-angle square
#     kind "ticks":    ((p_name, q_name), ...), n)            equal-length ticks
#     kind "parallel": ((p_name, q_name), ...), n)            parallel chevrons
#     kind "text":     (x, y, text)

Scene = dict


def _scene_scale(points) -> float:
    xs = [p[1] for p in points]
    ys = [p[2] for p in points]
    return max(max(xs) - min(xs), max(ys) - min(ys), 1e-6)


def scene_figure(
    shown: frozenset[str], *, doc: str, points, paths, circles=(), arcs=(), ellipses=(), items=()
) -> str:
    """Matplotlib program of a scene, labelling exactly the items whose fact key is shown."""
    P = {p[0]: (p[1], p[2]) for p in points}
    scale = _scene_scale(points)
    cv = GeometryCanvas(doc)
    for names, closed, dashed in paths:
        seq = [*names, names[0]] if closed else list(names)
        for a, b in itertools.pairwise(seq):
            cv.segment(P[a], P[b], dashed=dashed)
    for x, y, r, dashed in circles:
        cv.circle((x, y), r, dashed=dashed)
    for x, y, r, t1, t2, dashed in arcs:
        cv.arc((x, y), 2 * r, 2 * r, t1, t2, dashed=dashed)
    for x, y, w, h, t1, t2, dashed in ellipses:
        cv.arc((x, y), w, h, t1, t2, dashed=dashed)
    for key, kind, payload in items:
        if key is not None and key not in shown:
            continue
        if kind == "side":
            p, q, text, toward, *at = payload
            cv.side_label(P[p], P[q], text, P[toward], scale, at[0] if at else 0.5)
        elif kind == "angle":
            v, a, b, text = payload
            cv.angle_mark(P[v], P[a], P[b], 0.09 * scale, text or None, scale)
        elif kind == "right":
            v, a, b = payload
            cv.right_angle(P[v], P[a], P[b], 0.06 * scale)
        elif kind == "ticks":
            segs, n = payload
            for a, b in segs:
                cv.tick(P[a], P[b], n, 0.025 * scale)
        elif kind == "parallel":
            segs, n = payload
            for a, b in segs:
                cv.arrow_mark(P[a], P[b], n, 0.03 * scale)
        elif kind == "text":
            x, y, text = payload
            cv.label((x, y), text)
        else:
            raise ValueError(f"unknown scene item kind {kind!r}")
    for name, x, y, dx, dy, dot in points:
        if dot:
            cv.dot((x, y))
        if name and not name.startswith("_"):
            cv.label((x + dx * 0.07 * scale, y + dy * 0.07 * scale), name)
    return cv.program()


def _tikz_text(text: str) -> str:
    return text.replace("°", "^\\circ").replace("²", "^2").replace("³", "^3")


def scene_tikz(
    shown: frozenset[str], *, doc: str, points, paths, circles=(), arcs=(), ellipses=(), items=()
) -> str:
    """TikZ source of the same scene (compiled only where a TeX engine exists)."""
    P = {p[0]: (p[1], p[2]) for p in points}
    scale = _scene_scale(points)
    unit = 6.0 / scale  # the figure is about 6 cm wide
    c = lambda p: f"({fmt(p[0] * unit)},{fmt(p[1] * unit)})"
    out = [f"% {doc}", "\\begin{tikzpicture}[line width=0.8pt]"]
    for names, closed, dashed in paths:
        style = "[dashed]" if dashed else ""
        coords = " -- ".join(c(P[n]) for n in names) + (" -- cycle" if closed else "")
        out.append(f"\\draw{style} {coords};")
    for x, y, r, dashed in circles:
        out.append(f"\\draw{'[dashed]' if dashed else ''} {c((x, y))} circle ({fmt(r * unit)});")
    for x, y, r, t1, t2, dashed in arcs:
        start = (x + r * math.cos(math.radians(t1)), y + r * math.sin(math.radians(t1)))
        arc = f"arc ({fmt(t1)}:{fmt(t2)}:{fmt(r * unit)})"
        out.append(f"\\draw{'[dashed]' if dashed else ''} {c(start)} {arc};")
    for x, y, w, h, t1, t2, dashed in ellipses:
        start = (x + w / 2 * math.cos(math.radians(t1)), y + h / 2 * math.sin(math.radians(t1)))
        arc = (
            f"arc[start angle={fmt(t1)}, end angle={fmt(t2)}, x radius={fmt(w / 2 * unit)}, "
            f"y radius={fmt(h / 2 * unit)}]"
        )
        out.append(f"\\draw{'[dashed]' if dashed else ''} {c(start)} {arc};")
    for key, kind, payload in items:
        if key is not None and key not in shown:
            continue
        if kind == "side":
            p, q, text, toward, *at = payload
            f = at[0] if at else 0.5
            mid = (P[p][0] + (P[q][0] - P[p][0]) * f, P[p][1] + (P[q][1] - P[p][1]) * f)
            d = np.array(mid) - np.array(P[toward])
            d = d / max(np.linalg.norm(d), 1e-9) * 0.08 * scale
            out.append(f"\\node at {c(mid + d)} {{${_tikz_text(text)}$}};")
        elif kind == "angle":
            v, a, b, text = payload
            t1 = math.degrees(math.atan2(P[a][1] - P[v][1], P[a][0] - P[v][0]))
            t2 = math.degrees(math.atan2(P[b][1] - P[v][1], P[b][0] - P[v][0]))
            if (t2 - t1) % 360 > 180:
                t1, t2 = t2, t1
            t2 = t1 + (t2 - t1) % 360
            r = 0.09 * scale * unit
            arc = f"arc ({fmt(t1)}:{fmt(t2)}:{fmt(r)})"
            out.append(f"\\draw {c(P[v])} ++({fmt(t1)}:{fmt(r)}) {arc};")
            if text:
                m = math.radians((t1 + t2) / 2)
                pos = (P[v][0] + 0.2 * scale * math.cos(m), P[v][1] + 0.2 * scale * math.sin(m))
                out.append(f"\\node at {c(pos)} {{${_tikz_text(text)}$}};")
        elif kind == "right":
            v, a, b = payload
            va, vb = np.array(P[a]) - P[v], np.array(P[b]) - P[v]
            ua = va / np.linalg.norm(va) * 0.06 * scale
            ub = vb / np.linalg.norm(vb) * 0.06 * scale
            p0 = np.array(P[v])
            out.append(f"\\draw {c(p0 + ua)} -- {c(p0 + ua + ub)} -- {c(p0 + ub)};")
        elif kind in ("ticks", "parallel"):
            segs, n = payload
            mark = "|" * n if kind == "ticks" else ">" * n
            for a, b in segs:
                mid = ((P[a][0] + P[b][0]) / 2, (P[a][1] + P[b][1]) / 2)
                out.append(f"\\node[font=\\tiny] at {c(mid)} {{{mark}}};")
        elif kind == "text":
            x, y, text = payload
            out.append(f"\\node at {c((x, y))} {{${_tikz_text(text)}$}};")
    for name, x, y, dx, dy, dot in points:
        if dot:
            out.append(f"\\fill {c((x, y))} circle (1.5pt);")
        if name and not name.startswith("_"):
            pos = (x + dx * 0.07 * scale, y + dy * 0.07 * scale)
            out.append(f"\\node at {c(pos)} {{${name}$}};")
    out.append("\\end{tikzpicture}")
    return "\n".join(out) + "\n"


def label_dirs(
    named: Sequence[tuple[str, float, float]], center: Point, dot: bool = False
) -> tuple[tuple[str, float, float, float, float, bool], ...]:
    """Scene points whose names sit outside the figure, away from ``center``."""
    out = []
    for name, x, y in named:
        d = np.array([x - center[0], y - center[1]])
        n = float(np.linalg.norm(d))
        d = d / n if n > 1e-9 else np.array([0.0, 1.0])
        out.append((name, float(x), float(y), float(d[0]), float(d[1]), dot))
    return tuple(out)
