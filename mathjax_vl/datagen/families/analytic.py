"""Analytic geometry on a grid: points, lines, circles, ellipses, parabolas.

Asked: distances (two points, point to line), midpoints, the equation of a circle from its centre
and a point, centre/radius from a general equation, ellipse axes/foci/eccentricity, parabola
focus/directrix, chord length of a line cutting a circle. Plots use equal aspect so circles look
round. Solvers read equations (sympy ``Eq`` in x, y) and labelled points from the facts only.
"""

from __future__ import annotations

import math

import numpy as np
import sympy

from mathjax_vl.datagen.families.common import (
    build,
    choice,
    descriptive,
    num,
    numeric,
    rint,
    structural,
)
from mathjax_vl.datagen.families.drawing import fmt
from mathjax_vl.datagen.families.graph import GraphCanvas, nice_ticks_window
from mathjax_vl.datagen.spec import AnswerSpec, AnswerType, Family, need

NAME = "analytic_geometry"
SUBJECT = "analytic geometry"
X = sympy.Symbol("x", real=True)
Y = sympy.Symbol("y", real=True)
R = sympy.Rational


def eq_text(eq: sympy.Equality) -> str:
    return f"{sympy.sstr(eq.lhs)} = {sympy.sstr(eq.rhs)}"


def pt_text(name: str, p) -> str:
    return f"{name}({num(p[0])}, {num(p[1])})"


def exact_spec(v: sympy.Basic) -> AnswerSpec:
    return AnswerSpec(AnswerType.INTEGER if sympy.sympify(v).is_Integer else AnswerType.EXPRESSION)


# ---------------------------------------------------------------- figure program


def plane_figure(
    shown: frozenset[str],
    *,
    doc: str,
    xlim,
    ylim,
    conics,
    lines,
    titles,
    points,
    segments=(),
) -> str:
    """Equal-aspect grid plot. conics: ((fact_key | None, t_lo, t_hi, x_code, y_code, color),..)
    parametric in t; lines: ((fact_key | None, a, b, c, color), ...) for a·x + b·y + c = 0;
    titles: ((fact_key, text), ...); points: ((fact_key | None, x, y, name, label, side), ...) the
    dot always, ``label`` when shown else ``name``; segments: ((x1, y1, x2, y2), ...) dashed."""
    cv = GraphCanvas(doc, xlim, ylim, equal_aspect=True)
    cv.title = "   ".join(text for key, text in titles if key in shown) or None
    for _key, t0, t1, xc, yc, color in conics:  # curves are descriptive: always drawn
        cv.param_curve(t0, t1, xc, yc, color)
    x0, x1 = cv.xlim
    for _key, a, b, c, color in lines:
        if abs(b) > 1e-12:
            ya, yb = (-c - a * x0) / b, (-c - a * x1) / b
            cv.segment((x0, ya), (x1, yb), color=color)
        else:
            cv.vline(-c / a, dashed=False, color=color)
    for xa, ya, xb, yb in segments:
        cv.segment((xa, ya), (xb, yb), color="gray", dashed=True)
    for key, px, py, name, label, side in points:
        text = label if key is None or key in shown else name or None
        cv.point((px, py), text, side=side)
    return cv.program()


def _square_window(xs, ys, pad: float = 1.0):
    lo_x, hi_x = nice_ticks_window(min(xs) - pad, max(xs) + pad, 0.05)
    lo_y, hi_y = nice_ticks_window(min(ys) - pad, max(ys) + pad, 0.05)
    return (lo_x, hi_x), (lo_y, hi_y)


def _circle_code(h, k, r):
    return (f"{fmt(h)} + {fmt(r)} * np.cos(t)", f"{fmt(k)} + {fmt(r)} * np.sin(t)")


# ---------------------------------------------------------------- solver


def _line_coeffs(eq: sympy.Equality):
    expr = sympy.expand(eq.lhs - eq.rhs)
    return expr.coeff(X), expr.coeff(Y), expr.subs({X: 0, Y: 0})


def _circle_center_radius(eq: sympy.Equality):
    expr = sympy.expand(eq.lhs - eq.rhs)
    lead = expr.coeff(X, 2)
    expr = sympy.expand(expr / lead)
    D, E = expr.coeff(X, 1).subs(Y, 0), expr.coeff(Y, 1).subs(X, 0)
    F = expr.subs({X: 0, Y: 0})
    h, k = -D / 2, -E / 2
    return h, k, sympy.sqrt(h**2 + k**2 - F)


def solve_analytic(values, ask: str) -> sympy.Basic:
    if ask in ("distance", "midpoint"):
        (x1, y1), (x2, y2) = need(values, "A"), need(values, "B")
        if ask == "distance":
            return sympy.sqrt((x2 - x1) ** 2 + (y2 - y1) ** 2)
        return sympy.Tuple((x1 + x2) / 2, (y1 + y2) / 2)
    if ask == "point_line":
        a, b, c = _line_coeffs(need(values, "line"))
        x0, y0 = need(values, "P")
        return sympy.Abs(a * x0 + b * y0 + c) / sympy.sqrt(a**2 + b**2)
    if ask == "circle_equation":
        (h, k), (px, py) = need(values, "C"), need(values, "P")
        need(values, "center_is_C")
        r2 = (px - h) ** 2 + (py - k) ** 2
        return sympy.Eq((X - h) ** 2 + (Y - k) ** 2, r2)
    if ask in ("circle_center", "circle_radius"):
        h, k, r = _circle_center_radius(need(values, "circle"))
        return sympy.Tuple(h, k) if ask == "circle_center" else r
    if ask in ("major_axis", "focal_distance", "eccentricity"):
        expr = sympy.expand(need(values, "ellipse").lhs)  # x**2/A + y**2/B (= 1)
        A, B = 1 / expr.coeff(X, 2), 1 / expr.coeff(Y, 2)
        a2, b2 = max(A, B), min(A, B)
        c = sympy.sqrt(a2 - b2)
        return {
            "major_axis": 2 * sympy.sqrt(a2),
            "focal_distance": 2 * c,
            "eccentricity": c / sympy.sqrt(a2),
        }[ask]
    if ask in ("focus", "directrix"):
        eq = need(values, "parabola")  # y**2 = 4 p x or x**2 = 4 p y
        if eq.lhs == Y**2:
            p = eq.rhs.coeff(X) / 4
            return sympy.Tuple(p, 0) if ask == "focus" else sympy.Eq(X, -p)
        p = eq.rhs.coeff(Y) / 4
        return sympy.Tuple(0, p) if ask == "focus" else sympy.Eq(Y, -p)
    if ask == "chord":
        h, k, r = _circle_center_radius(need(values, "circle"))
        a, b, c = _line_coeffs(need(values, "line"))
        d = sympy.Abs(a * h + b * k + c) / sympy.sqrt(a**2 + b**2)
        return sympy.nsimplify(2 * sympy.sqrt(r**2 - d**2))
    raise ValueError(f"unknown ask {ask!r}")


QUESTIONS = {
    "distance": "Find the distance between A and B.",
    "midpoint": "Find the coordinates of the midpoint of AB.",
    "point_line": "Find the distance from point P to the line.",
    "circle_equation": "Find the equation of the circle.",
    "circle_center": "Find the coordinates of the centre of the circle.",
    "circle_radius": "Find the radius of the circle.",
    "major_axis": "Find the length of the major axis of the ellipse.",
    "focal_distance": "Find the distance between the two foci of the ellipse.",
    "eccentricity": "Find the eccentricity of the ellipse.",
    "focus": "Find the coordinates of the focus of the parabola.",
    "directrix": "Find the equation of the directrix of the parabola.",
    "chord": "Find the length of the chord that the line cuts from the circle.",
}


def _make(seed, subtype, ask, facts, steps, caption, mistakes, fig):
    values = {f.key: f.value for f in facts}
    ans = solve_analytic(values, ask)
    if isinstance(ans, sympy.Tuple):
        spec = AnswerSpec(AnswerType.POINT)
    elif isinstance(ans, sympy.Equality):
        spec = AnswerSpec(AnswerType.EXPRESSION)
    else:
        spec = exact_spec(ans)
    return build(
        family=NAME,
        subtype=subtype,
        seed=seed,
        subject=SUBJECT,
        facts=facts,
        question=QUESTIONS[ask],
        solver=solve_analytic,
        solver_args={"ask": ask},
        spec=spec,
        rationale=steps,
        caption=caption,
        mistakes=mistakes,
        figure=plane_figure,
        figure_args=fig,
    )


def _fig(doc, xlim, ylim, conics=(), lines=(), titles=(), points=(), segments=()):
    return dict(
        doc=doc,
        xlim=tuple(xlim),
        ylim=tuple(ylim),
        conics=tuple(conics),
        lines=tuple(lines),
        titles=tuple(titles),
        points=tuple(points),
        segments=tuple(segments),
    )


def _point_fact(name, p, what="is a point in the plane"):
    return numeric(name, f"{pt_text(name, p)} {what}.", sympy.Tuple(*p), pt_text(name, p))


# ---------------------------------------------------------------- subtypes


def two_points(rng: np.random.Generator, seed: int):
    ask = choice(rng, ["distance", "midpoint"])
    pA = (sympy.Integer(rint(rng, -6, 3)), sympy.Integer(rint(rng, -5, 3)))
    while True:
        pB = (sympy.Integer(rint(rng, -3, 6)), sympy.Integer(rint(rng, -3, 5)))
        if pB != pA and abs(pB[0] - pA[0]) + abs(pB[1] - pA[1]) >= 3:
            break
    dx, dy = pB[0] - pA[0], pB[1] - pA[1]
    dist = sympy.sqrt(dx**2 + dy**2)
    mid = ((pA[0] + pB[0]) / 2, (pA[1] + pB[1]) / 2)
    facts = [
        descriptive("setup", "Points A and B are marked on the coordinate grid."),
        _point_fact("A", pA, "is marked"),
        _point_fact("B", pB, "is marked"),
    ]
    if ask == "distance":
        steps = [
            f"Δx = {num(pB[0])} - ({num(pA[0])}) = {num(dx)}, Δy = {num(pB[1])} - ({num(pA[1])}) "
            f"= {num(dy)}.",
            f"AB = √(Δx² + Δy²) = √({num(dx**2)} + {num(dy**2)}) = {num(dist)}.",
        ]
        mistakes = [
            ("added the differences", abs(dx) + abs(dy)),
            ("forgot the square root", dx**2 + dy**2),
            ("added the coordinates", sympy.sqrt((pA[0] + pB[0]) ** 2 + (pA[1] + pB[1]) ** 2)),
        ]
    else:
        steps = [
            f"Midpoint = ((x_A + x_B)/2, (y_A + y_B)/2) = (({num(pA[0])} + {num(pB[0])})/2, "
            f"({num(pA[1])} + {num(pB[1])})/2) = ({num(mid[0])}, {num(mid[1])})."
        ]
        mistakes = [
            ("took half the difference", sympy.Tuple(dx / 2, dy / 2)),
            ("forgot to halve", sympy.Tuple(pA[0] + pB[0], pA[1] + pB[1])),
            ("swapped coordinates", sympy.Tuple(mid[1], mid[0])),
        ]
    xlim, ylim = _square_window([pA[0], pB[0], 0], [pA[1], pB[1], 0], 1.5)
    side = (1, -1) if dy * dx > 0 else (1, 1)
    pts = [
        ("A", float(pA[0]), float(pA[1]), "A", pt_text("A", pA), side),
        ("B", float(pB[0]), float(pB[1]), "B", pt_text("B", pB), (-side[0], -side[1])),
    ]
    segs = [(float(pA[0]), float(pA[1]), float(pB[0]), float(pB[1]))]
    caption = (
        f"The figure shows points {pt_text('A', pA)} and {pt_text('B', pB)} on a grid, "
        f"joined by a dashed segment of length {num(dist)} with midpoint "
        f"({num(mid[0])}, {num(mid[1])})."
    )
    fig = _fig("Two points on a grid.", xlim, ylim, points=pts, segments=segs)
    return _make(seed, "two_points", ask, facts, steps, caption, mistakes, fig)


def point_line(rng: np.random.Generator, seed: int):
    a, b = choice(rng, [(3, 4), (4, 3), (1, 1), (1, -1), (1, 2), (2, -1), (5, 12), (0, 1), (1, 0)])
    c = rint(rng, -8, 8)
    P = (sympy.Integer(rint(rng, -4, 4)), sympy.Integer(rint(rng, -4, 4)))
    norm_f = math.hypot(a, b)
    while abs(a * P[0] + b * P[1] + c) < norm_f:  # keep P at least one unit off the line
        c += math.ceil(norm_f)
    line = sympy.Eq(a * X + b * Y + c, 0)
    val = a * P[0] + b * P[1] + c
    norm = sympy.sqrt(a * a + b * b)
    d = sympy.Abs(val) / norm
    facts = [
        descriptive("setup", "The figure shows a line and a point P."),
        numeric("line", f"The line is {eq_text(line)}.", line, eq_text(line)),
        _point_fact("P", P, "is marked"),
    ]
    steps = [
        f"Distance = |a·x₀ + b·y₀ + c| / √(a² + b²) with a = {a}, b = {b}, c = {c}, "
        f"P{tuple(int(v) for v in P)}.".replace(",)", ")"),
        f"|{a}×({num(P[0])}) + {b}×({num(P[1])}) + {c}| = {num(abs(val))}; √({a * a} + {b * b}) "
        f"= {num(norm)}.",
        f"Distance = {num(abs(val))} / {num(norm)} = {num(d)}.",
    ]
    mistakes = [
        ("forgot the denominator", sympy.Abs(val)),
        ("used a² + b² without the root", sympy.Abs(val) / (a * a + b * b)),
        ("dropped c", sympy.Abs(a * P[0] + b * P[1]) / norm),
    ]
    # foot of the perpendicular, for the dashed segment and the window
    t = -val / (a * a + b * b)
    foot = (P[0] + a * t, P[1] + b * t)
    xlim, ylim = _square_window([P[0], foot[0], 0], [P[1], foot[1], 0], 2.5)
    pts = [("P", float(P[0]), float(P[1]), "P", pt_text("P", P), (1, 1))]
    segs = [(float(P[0]), float(P[1]), float(foot[0]), float(foot[1]))]
    caption = (
        f"The figure shows the line {eq_text(line)} and the point {pt_text('P', P)}, with the "
        f"dashed perpendicular from P to the line of length {num(d)}."
    )
    fig = _fig(
        "A line and a point.",
        xlim,
        ylim,
        lines=[("line", a, b, c, "tab:red")],
        titles=[("line", eq_text(line))],
        points=pts,
        segments=segs,
    )
    return _make(seed, "point_line", "point_line", facts, steps, caption, mistakes, fig)


def circle(rng: np.random.Generator, seed: int):
    ask = choice(rng, ["circle_equation", "circle_center", "circle_radius"])
    h, k = sympy.Integer(rint(rng, -3, 3)), sympy.Integer(rint(rng, -3, 3))
    dx, dy = choice(rng, [(3, 4), (4, 3), (0, 5), (5, 0), (0, 3), (3, 0), (1, 2), (2, 2), (0, 4)])
    sx, sy = choice(rng, [(1, 1), (1, -1), (-1, 1), (-1, -1)])
    P = (h + sx * dx, k + sy * dy)
    r2 = sympy.Integer(dx * dx + dy * dy)
    r = sympy.sqrt(r2)
    std = sympy.Eq((X - h) ** 2 + (Y - k) ** 2, r2)
    general = sympy.Eq(sympy.expand(std.lhs - std.rhs), 0)
    xc, yc = _circle_code(float(h), float(k), float(r))
    conics = [(None, 0.0, 2 * math.pi, xc, yc, "tab:blue")]
    xlim, ylim = _square_window(
        [float(h - r), float(h + r), 0], [float(k - r), float(k + r), 0], 1.0
    )
    caption = (
        f"The figure shows the circle {eq_text(std)} with centre ({num(h)}, {num(k)}) and "
        f"radius {num(r)}"
        + (f", passing through {pt_text('P', P)}." if ask == "circle_equation" else ".")
    )
    if ask == "circle_equation":
        facts = [
            descriptive("setup", "The figure shows a circle with centre C passing through P."),
            structural("center_is_C", "C is the centre of the circle.", "C marked at the centre"),
            _point_fact("C", (h, k), "is the centre"),
            _point_fact("P", P, "lies on the circle"),
        ]
        steps = [
            f"r² = CP² = ({num(P[0])} - ({num(h)}))² + ({num(P[1])} - ({num(k)}))² = {num(r2)}.",
            f"The circle is {eq_text(std)}.",
        ]
        mistakes = [
            ("used r instead of r²", sympy.Eq(std.lhs, r)),
            ("sign error in the centre", sympy.Eq((X + h) ** 2 + (Y + k) ** 2, r2)),
            ("swapped x and y", sympy.Eq((X - k) ** 2 + (Y - h) ** 2, r2)),
        ]
        pts = [
            ("C", float(h), float(k), "C", pt_text("C", (h, k)), (1, -1)),
            ("P", float(P[0]), float(P[1]), "P", pt_text("P", P), (sx, sy)),
        ]
        fig = _fig(
            "Circle with centre C through P.",
            xlim,
            ylim,
            conics=conics,
            points=pts,
            segments=[(float(h), float(k), float(P[0]), float(P[1]))],
        )
        return _make(seed, "circle", ask, facts, steps, caption, mistakes, fig)
    facts = [
        descriptive("setup", "The figure shows a circle."),
        numeric("circle", f"The circle is {eq_text(general)}.", general, eq_text(general)),
    ]
    D, E = -2 * h, -2 * k
    F = h * h + k * k - r2
    steps = [
        f"Complete the squares in {eq_text(general)}: (x - ({num(h)}))² + (y - ({num(k)}))² "
        f"= {num(h * h)} + {num(k * k)} - ({num(F)}) = {num(r2)}.",
        f"Centre ({num(h)}, {num(k)}), radius √{num(r2)} = {num(r)}.",
    ]
    if ask == "circle_center":
        mistakes = [
            ("sign error", sympy.Tuple(-h, -k)),
            ("did not halve D and E", sympy.Tuple(-D, -E)),
            ("swapped coordinates", sympy.Tuple(k, h)),
        ]
    else:
        mistakes = [
            ("gave r² instead of r", r2),
            ("used -F as r²", sympy.sqrt(sympy.Abs(F))),
            ("forgot the centre terms", sympy.sqrt(sympy.Abs(-F) + 1)),
        ]
    pts = [(None, float(h), float(k), "", "", (1, 1))]
    fig = _fig(
        "Circle from its general equation.",
        xlim,
        ylim,
        conics=conics,
        titles=[("circle", eq_text(general))],
        points=pts,
    )
    return _make(seed, "circle", ask, facts, steps, caption, mistakes, fig)


def ellipse(rng: np.random.Generator, seed: int):
    a, b = choice(rng, [(5, 4), (5, 3), (4, 3), (3, 2), (6, 4), (4, 2), (13, 12), (5, 1), (6, 3)])
    horizontal = rng.random() < 0.6
    A, B = (a * a, b * b) if horizontal else (b * b, a * a)
    eq = sympy.Eq(X**2 / A + Y**2 / B, 1)
    ask = choice(rng, ["major_axis", "focal_distance", "eccentricity"])
    c = sympy.sqrt(a * a - b * b)
    facts = [
        descriptive("setup", "The figure shows an ellipse centred at the origin."),
        numeric("ellipse", f"The ellipse is {eq_text(eq)}.", eq, eq_text(eq)),
    ]
    steps = [
        f"The larger denominator is a² = {a * a} and the smaller b² = {b * b}, so a = {a}, "
        f"b = {b}; the major axis is along the {'x' if horizontal else 'y'}-axis."
    ]
    if ask == "major_axis":
        steps.append(f"Major axis length = 2a = {2 * a}.")
        mistakes = [
            ("gave a instead of 2a", sympy.Integer(a)),
            ("used b", sympy.Integer(2 * b)),
            ("used a²", sympy.Integer(2 * a * a)),
        ]
    elif ask == "focal_distance":
        steps.append(
            f"c = √(a² - b²) = √({a * a - b * b}) = {num(c)}; the foci are 2c = {num(2 * c)} apart."
        )
        mistakes = [
            ("gave c instead of 2c", c),
            ("added a² and b²", 2 * sympy.sqrt(a * a + b * b)),
            ("used a - b", sympy.Integer(2 * (a - b))),
        ]
    else:
        steps.append(f"c = √(a² - b²) = {num(c)}; e = c/a = {num(c / a)}.")
        mistakes = [("used b/a", R(b, a)), ("used c/b", c / b), ("used a/c", a / c)]
    rx, ry = (a, b) if horizontal else (b, a)
    conics = [
        (None, 0.0, 2 * math.pi, f"{fmt(rx)} * np.cos(t)", f"{fmt(ry)} * np.sin(t)", "tab:blue")
    ]
    xlim, ylim = _square_window([-rx, rx], [-ry, ry], 1.0)
    foci = [
        (float(c), 0.0) if horizontal else (0.0, float(c)),
        (-float(c), 0.0) if horizontal else (0.0, -float(c)),
    ]
    pts = [(None, fx, fy, "", "", (1, 1)) for fx, fy in foci]
    caption = (
        f"The figure shows the ellipse {eq_text(eq)} centred at the origin with semi-axes "
        f"{rx} (along x) and {ry} (along y); its foci are marked at "
        + " and ".join(
            f"({num(f[0])}, {num(f[1])})"
            for f in ([(c, 0), (-c, 0)] if horizontal else [(0, c), (0, -c)])
        )
        + "."
    )
    fig = _fig("Ellipse.", xlim, ylim, conics=conics, titles=[("ellipse", eq_text(eq))], points=pts)
    return _make(seed, "ellipse", ask, facts, steps, caption, mistakes, fig)


def parabola(rng: np.random.Generator, seed: int):
    p = choice(rng, [R(1, 2), R(1), R(3, 2), R(2), R(-1), R(-2), R(1, 4), R(3)])
    opens_x = rng.random() < 0.5
    eq = sympy.Eq(Y**2, 4 * p * X) if opens_x else sympy.Eq(X**2, 4 * p * Y)
    ask = choice(rng, ["focus", "directrix"])
    facts = [
        descriptive("setup", "The figure shows a parabola with its vertex at the origin."),
        numeric("parabola", f"The parabola is {eq_text(eq)}.", eq, eq_text(eq)),
    ]
    var, other = ("x", "y") if opens_x else ("y", "x")
    steps = [f"Compare with {other}² = 4p{var}: 4p = {num(4 * p)}, so p = {num(p)}."]
    focus = sympy.Tuple(p, 0) if opens_x else sympy.Tuple(0, p)
    if ask == "focus":
        steps.append(f"The focus is at ({num(focus[0])}, {num(focus[1])}).")
        mistakes = [
            (
                "used 4p as the distance",
                sympy.Tuple(4 * p, 0) if opens_x else sympy.Tuple(0, 4 * p),
            ),
            ("sign error", sympy.Tuple(-p, 0) if opens_x else sympy.Tuple(0, -p)),
            (
                "put the focus on the wrong axis",
                sympy.Tuple(0, p) if opens_x else sympy.Tuple(p, 0),
            ),
        ]
    else:
        S = X if opens_x else Y
        steps.append(f"The directrix is {var} = -p = {num(-p)}.")
        mistakes = [
            ("sign error", sympy.Eq(S, p)),
            ("used 4p", sympy.Eq(S, -4 * p)),
            ("wrong variable", sympy.Eq(Y if opens_x else X, -p)),
        ]
    span = float(max(4 * abs(p), 2)) * 1.6
    tmax = math.sqrt(4 * abs(float(p)) * span)
    if opens_x:
        conics = [(None, -tmax, tmax, f"t ** 2 / {fmt(4 * float(p))}", "t", "tab:blue")]
        xlim, ylim = _square_window([0, span * np.sign(float(p))], [-tmax, tmax], 0.8)
    else:
        conics = [(None, -tmax, tmax, "t", f"t ** 2 / {fmt(4 * float(p))}", "tab:blue")]
        xlim, ylim = _square_window([-tmax, tmax], [0, span * np.sign(float(p))], 0.8)
    pts = [(None, float(focus[0]), float(focus[1]), "F", "F", (1, 1))]
    caption = (
        f"The figure shows the parabola {eq_text(eq)} with vertex at the origin, opening "
        f"{('right' if p > 0 else 'left') if opens_x else ('up' if p > 0 else 'down')}, with "
        f"focus F({num(focus[0])}, {num(focus[1])}) and directrix {var} = {num(-p)}."
    )
    fig = _fig(
        "Parabola.", xlim, ylim, conics=conics, titles=[("parabola", eq_text(eq))], points=pts
    )
    return _make(seed, "parabola", ask, facts, steps, caption, mistakes, fig)


def chord(rng: np.random.Generator, seed: int):
    r = choice(rng, [5, 5, 10, 13, 4, 3, 6])
    a, b = choice(rng, [(3, 4), (4, 3), (0, 1), (1, 0), (5, 12), (12, 5), (4, -3), (3, -4)])
    d = rint(rng, 0, r - 1)  # distance from the centre (origin) to the line
    c = -d * int(sympy.sqrt(a * a + b * b))
    circ = sympy.Eq(X**2 + Y**2, r * r)
    line = sympy.Eq(a * X + b * Y + c, 0)
    length = 2 * sympy.sqrt(r * r - d * d)
    facts = [
        descriptive("setup", "The figure shows a circle cut by a line."),
        numeric("circle", f"The circle is {eq_text(circ)}.", circ, eq_text(circ)),
        numeric("line", f"The line is {eq_text(line)}.", line, eq_text(line)),
    ]
    steps = [
        f"The circle has centre (0, 0) and radius {r}.",
        f"Distance from the centre to the line: |{c}| / √({a * a} + {b * b}) = {d}.",
        f"Half the chord is √(r² - d²) = √({r * r} - {d * d}) = {num(length / 2)}, so the chord "
        f"is {num(length)}.",
    ]
    mistakes = [
        ("forgot to double", length / 2),
        ("added the squares", 2 * sympy.sqrt(r * r + d * d)),
        ("used r - d", sympy.Integer(2 * (r - d))),
    ]
    xc, yc = _circle_code(0.0, 0.0, float(r))
    lim = float(r) * 1.35
    fig = _fig(
        "Circle and a secant line.",
        (-lim, lim),
        (-lim, lim),
        conics=[(None, 0.0, 2 * math.pi, xc, yc, "tab:blue")],
        lines=[("line", a, b, c, "tab:red")],
        titles=[("circle", eq_text(circ)), ("line", eq_text(line))],
        points=[(None, 0.0, 0.0, "O", "O", (-1, -1))],
    )
    caption = (
        f"The figure shows the circle {eq_text(circ)} (radius {r}) and the line {eq_text(line)}"
        f" at distance {d} from the centre O, cutting a chord of length {num(length)}."
    )
    return _make(seed, "chord", "chord", facts, steps, caption, mistakes, fig)


FAMILY = Family(
    name=NAME,
    subject=SUBJECT,
    subtypes={
        "two_points": two_points,
        "point_line": point_line,
        "circle": circle,
        "ellipse": ellipse,
        "parabola": parabola,
        "chord": chord,
    },
)
