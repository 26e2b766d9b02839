"""Functions family, continued: trigonometric, absolute value, rational and intersections."""

from __future__ import annotations

import math

import numpy as np
import sympy

from mathjax_vl.datagen.families.common import choice, descriptive, num, numeric, rint
from mathjax_vl.datagen.families.functions_core import (
    R,
    X,
    Y,
    formula_fact,
    formula_text,
    graph_desc,
    make_graph_problem,
    make_problem,
    np_code,
    oo,
    pi,
    pi_label,
    real_zeros,
    value_ask,
    y_window,
)
from mathjax_vl.datagen.families.graph import nice_ticks_window

# ---------------------------------------------------------------- trigonometric


def trigonometric(rng: np.random.Generator, seed: int):
    fn = choice(rng, [sympy.sin, sympy.cos])
    A = choice(rng, [R(1), R(2), R(3), R(-2), R(1, 2)])
    B = choice(rng, [R(1), R(2), R(1, 2), R(3)])
    C = choice(rng, [0, pi / 4, -pi / 4, pi / 2, pi / 3])
    D = sympy.Integer(rint(rng, -2, 2))
    f = A * fn(B * X + C) + D
    ask = choice(rng, ["period", "max", "min", "value"])
    period = 2 * pi / B
    xmax = float(min(max(2 * period, 2 * pi), 4 * pi))
    xlim = (-0.15 * xmax, xmax)
    ffact, _ = formula_fact(f)
    facts = [descriptive("graph", graph_desc("trigonometric")), ffact]
    pts: list = []
    key_ys = [float(D + abs(A)), float(D - abs(A))]
    ticks = tuple((float(i * pi / 2), pi_label(i)) for i in range(0, int(xmax / (math.pi / 2)) + 1))
    if len(ticks) > 9:
        ticks = tuple(t for i, t in enumerate(ticks) if i % 2 == 0)
    caption = (
        f"The figure shows the graph of y = {sympy.sstr(f)}, oscillating between "
        f"{num(D - abs(A))} and {num(D + abs(A))} about the midline y = {num(D)}, with period "
        f"{sympy.sstr(period)}."
    )
    if ask == "period":
        steps = [
            f"The period of {fn.__name__}(Bx + C) is 2π/|B| with B = {num(B)}.",
            f"Period = 2π / {num(B)} = {sympy.sstr(period)}.",
        ]
        mistakes = [("used π/B", pi / B), ("used 2πB", 2 * pi * B), ("ignored B", 2 * pi)]
    elif ask in ("max", "min"):
        val = D + abs(A) if ask == "max" else D - abs(A)
        steps = [
            f"{fn.__name__} ranges over [-1, 1], so y ranges over [{num(D)} - {num(abs(A))}, "
            f"{num(D)} + {num(abs(A))}].",
            f"The {'maximum' if ask == 'max' else 'minimum'} value is {num(val)}.",
        ]
        other = D - abs(A) if ask == "max" else D + abs(A)
        mistakes = [
            ("gave the other extreme", other),
            ("ignored the shift D", abs(A) if ask == "max" else -abs(A)),
            ("ignored the amplitude", D + (1 if ask == "max" else -1)),
        ]
    else:
        x0 = choice(rng, [pi / 6, pi / 4, pi / 3, pi / 2, 2 * pi / 3, pi])
        facts.append(
            numeric(
                "x0", f"The x-coordinate of Q is {sympy.sstr(x0)}.", x0, f"x = {sympy.sstr(x0)}"
            )
        )
        y0 = f.subs(X, x0)
        pts.append(("x0", float(x0), float(y0), "Q", f"Q (x = {sympy.sstr(x0)})"))
        steps = [
            f"Substitute x = {sympy.sstr(x0)}: the argument is {sympy.sstr(B * x0 + C)}.",
            f"y = {num(A)} × {sympy.sstr(fn(B * x0 + C))} + {num(D)} = {sympy.sstr(y0)}.",
        ]
        other = sympy.cos if fn is sympy.sin else sympy.sin
        mistakes = [
            ("used the other function", A * other(B * x0 + C) + D),
            ("ignored the phase", A * fn(B * x0) + D),
            ("dropped the amplitude", fn(B * x0 + C) + D),
        ]
    return make_graph_problem(
        seed,
        "trigonometric",
        ask,
        f,
        facts,
        pts,
        key_ys,
        xlim,
        steps,
        mistakes,
        caption,
        "Graph of a trigonometric function.",
        xticks=ticks,
    )


# ---------------------------------------------------------------- absolute value


def absolute(rng: np.random.Generator, seed: int):
    a = choice(rng, [R(1), R(-1), R(2), R(-2), R(1, 2)])
    h = sympy.Integer(rint(rng, -3, 3))
    ask = choice(rng, ["vertex", "zeros", "increasing", "decreasing", "extremum", "value"])
    if ask == "zeros":
        m = sympy.Integer(rint(rng, 1, 4)) * (2 if a.q == 2 else 1)
        k = -a * m
    else:
        k = sympy.Integer(rint(rng, -4, 4))
    f = a * sympy.Abs(X - h) + k
    ffact, _ = formula_fact(f)
    facts = [descriptive("graph", graph_desc("absolute value")), ffact]
    xlim = (float(h) - 6.0, float(h) + 6.0)
    pts: list = []
    key_ys = [float(k)]
    zeros = real_zeros(f)
    zeros_txt = ", ".join(num(z) for z in sorted(zeros, key=float)) if zeros else "none"
    caption = (
        f"The figure shows the V-shaped graph of y = {sympy.sstr(f)} with vertex "
        f"({num(h)}, {num(k)}), opening {'upward' if a > 0 else 'downward'}; zeros: {zeros_txt}."
    )
    vsteps = [
        f"|{sympy.sstr(X - h)}| is smallest (zero) at x = {num(h)}, where y = {num(k)}.",
        f"The vertex is ({num(h)}, {num(k)}).",
    ]
    if ask == "vertex":
        steps = vsteps
        mistakes = [
            ("sign error", sympy.Tuple(-h, k)),
            ("swapped coordinates", sympy.Tuple(k, h)),
            ("gave the y-intercept", sympy.Tuple(0, f.subs(X, 0))),
        ]
    elif ask == "zeros":
        steps = [
            f"Set y = 0: |{sympy.sstr(X - h)}| = {num(-k / a)}.",
            f"x = {num(h)} ± {num(-k / a)}: x = {num(h + k / a)} or x = {num(h - k / a)}.",
        ]
        mistakes = [
            ("kept only one branch", sympy.FiniteSet(h - k / a)),
            ("sign error in h", sympy.FiniteSet(-h + k / a, -h - k / a)),
            ("forgot to divide by a", sympy.FiniteSet(h + k, h - k)),
        ]
    elif ask in ("increasing", "decreasing"):
        right = (a > 0) == (ask == "increasing")
        steps = [
            *vsteps,
            f"With a = {num(a)}, the graph "
            f"{'falls then rises' if a > 0 else 'rises then falls'} around x = {num(h)}.",
        ]
        mistakes = [
            ("chose the wrong side", sympy.Interval(-oo, h) if right else sympy.Interval(h, oo)),
            ("sign error in h", sympy.Interval(-h, oo) if right else sympy.Interval(-oo, -h)),
            ("used k", sympy.Interval(k, oo) if right else sympy.Interval(-oo, k)),
        ]
    elif ask == "extremum":
        steps = [*vsteps, f"The {'minimum' if a > 0 else 'maximum'} value is {num(k)}."]
        mistakes = [
            ("gave the x of the vertex", h),
            ("sign error", -k),
            ("gave the y-intercept", f.subs(X, 0)),
        ]
    else:
        x0 = h + choice(rng, [-3, -2, -1, 1, 2, 3])
        steps, mistakes = value_ask(
            f, x0, facts, pts, key_ys, [("dropped the absolute value", a * (x0 - h) + k)]
        )
    return make_graph_problem(
        seed,
        "absolute",
        ask,
        f,
        facts,
        pts,
        key_ys,
        xlim,
        steps,
        mistakes,
        caption,
        "Graph of an absolute value function.",
    )


# ---------------------------------------------------------------- rational (hyperbola)


def rational(rng: np.random.Generator, seed: int):
    a = choice(rng, [R(1), R(-1), R(2), R(-2), R(3), R(4)])
    h, k = sympy.Integer(rint(rng, -3, 3)), sympy.Integer(rint(rng, -3, 3))
    f = a / (X - h) + k
    ask = choice(rng, ["v_asymptote", "h_asymptote", "value"])
    ffact, _ = formula_fact(f)
    facts = [descriptive("graph", graph_desc("rational")), ffact]
    xlim = (float(h) - 6.0, float(h) + 6.0)
    ylim = nice_ticks_window(min(float(k) - 6.0, 0.0), max(float(k) + 6.0, 0.0), 0.02)
    code = np_code(f)
    delta = abs(float(a)) / 7.0
    curves = (
        (xlim[0], float(h) - delta, code, "tab:blue"),
        (float(h) + delta, xlim[1], code, "tab:blue"),
    )
    pts: list = []
    key_ys: list = []
    caption = (
        f"The figure shows the hyperbola y = {sympy.sstr(f)} with vertical asymptote "
        f"x = {num(h)} and horizontal asymptote y = {num(k)} (both dashed)."
    )
    if ask == "v_asymptote":
        steps = [
            f"The denominator {sympy.sstr(X - h)} vanishes at x = {num(h)}, where |y| → ∞.",
            f"The vertical asymptote is x = {num(h)}.",
        ]
        mistakes = [
            ("sign error", sympy.Eq(X, -h)),
            ("gave the horizontal one", sympy.Eq(X, k)),
            ("used the numerator", sympy.Eq(X, a)),
        ]
    elif ask == "h_asymptote":
        steps = [
            f"As x → ±∞, {num(a)}/({sympy.sstr(X - h)}) → 0, so y → {num(k)}.",
            f"The horizontal asymptote is y = {num(k)}.",
        ]
        mistakes = [
            ("used the numerator", sympy.Eq(Y, a)),
            ("gave the vertical one", sympy.Eq(Y, h)),
            ("sign error", sympy.Eq(Y, -k)),
        ]
    else:
        x0 = h + choice(rng, [-2, -1, 1, 2])
        steps, mistakes = value_ask(
            f, x0, facts, pts, key_ys, [("inverted the fraction", (x0 - h) / a + k)]
        )
    return make_graph_problem(
        seed,
        "rational",
        ask,
        f,
        facts,
        pts,
        key_ys,
        xlim,
        steps,
        mistakes,
        caption,
        "Graph of a rational function.",
        ylim=ylim,
        curves=curves,
        code=code,
        vlines=[(None, float(h))],
        hlines=[(None, float(k))],
    )


# ---------------------------------------------------------------- intersection


def intersection(rng: np.random.Generator, seed: int):
    x1 = rint(rng, -4, 1)
    x2 = x1 + rint(rng, 1, 4)
    m, n = rint(rng, -2, 2), rint(rng, -3, 3)
    p, q = m - (x1 + x2), n + x1 * x2
    f1 = X**2 + p * X + q
    f2 = m * X + n
    facts = [
        descriptive("graph", "The figure shows the graphs of a parabola and a line."),
        numeric("formula", f"The parabola is {formula_text(f1)}.", f1, formula_text(f1)),
        numeric("formula_2", f"The line is {formula_text(f2)}.", f2, formula_text(f2)),
    ]
    xlim = (x1 - 2.5, x2 + 2.5)
    ys = [float(f2.subs(X, x1)), float(f2.subs(X, x2)), float(f1.subs(X, -sympy.Rational(p, 2)))]
    ylim = y_window(xlim, ys, np_code(f2), clip=1e9)
    ylim = (ylim[0], max(ylim[1], ys[0] + 3, ys[1] + 3))
    curves = (
        (xlim[0], xlim[1], np_code(f1), "tab:blue"),
        (xlim[0], xlim[1], np_code(f2), "tab:red"),
    )
    steps = [
        f"Set {sympy.sstr(f1)} = {sympy.sstr(f2)}: x² + ({p - m})x + ({q - n}) = 0.",
        f"Factor: (x - {x1})(x - {x2}) = 0, so x = {x1} or x = {x2}.".replace("- -", "+ "),
    ]
    mistakes = [
        ("sign error", sympy.FiniteSet(-x1, -x2)),
        ("solved the parabola's zeros instead", real_zeros(f1)),
        ("gave one point", sympy.FiniteSet(x2)),
    ]
    caption = (
        f"The figure shows the parabola {formula_text(f1)} (blue) and the line {formula_text(f2)} "
        f"(red), which intersect at ({x1}, {m * x1 + n}) and ({x2}, {m * x2 + n})."
    )
    fig = dict(
        doc="Parabola and line.",
        curves=curves,
        xlim=xlim,
        ylim=ylim,
        titles=(("formula", formula_text(f1)), ("formula_2", formula_text(f2))),
        points=(),
        hlines=(),
        vlines=(),
        xticks=None,
    )
    return make_problem(
        seed,
        "intersection",
        "intersections",
        facts=facts,
        steps=steps,
        caption=caption,
        mistakes=mistakes,
        fig=fig,
    )


SUBTYPES = {
    "trigonometric": trigonometric,
    "absolute": absolute,
    "rational": rational,
    "intersection": intersection,
}
