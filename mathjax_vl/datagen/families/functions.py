"""Functions: linear, quadratic, cubic, exponential, logarithmic, trigonometric, absolute value,
rational, and line-parabola intersections, drawn as MAVIS-style plots (grid, axis labels, the
formula as the title when that fact is shown).

Asked: value at a point, zeros, vertex/extrema, monotonic intervals, asymptotes, period,
intersections, and parameters read off the graph (equation of a line through two labelled points,
leading coefficient of a parabola from its vertex and a point, base of an exponential).

The solver works from the facts alone: it analyses the formula (a sympy expression in ``x``) or
the labelled points, never the generator's parameters.
"""

from __future__ import annotations

import numpy as np
import sympy

from mathjax_vl.datagen.families import functions_more
from mathjax_vl.datagen.families.common import choice, descriptive, num, numeric, rint
from mathjax_vl.datagen.families.functions_core import (
    NAME,
    SUBJECT,
    R,
    X,
    Y,
    approx2,
    formula_fact,
    graph_args,
    graph_desc,
    make_graph_problem,
    make_problem,
    np_code,
    oo,
    point_text,
    real_zeros,
    value_ask,
    value_parts,
    x0_fact,
    y_window,
)
from mathjax_vl.datagen.families.graph import nice_ticks_window
from mathjax_vl.datagen.spec import Family

# ---------------------------------------------------------------- linear


def linear(rng: np.random.Generator, seed: int):
    k = choice(rng, [R(1, 2), R(-1, 2), R(1), R(-1), R(2), R(-2), R(3), R(-3), R(2, 3), R(-3, 2)])
    b = sympy.Integer(rint(rng, -5, 5))
    f = k * X + b
    ask = choice(rng, ["value", "zeros", "line_equation"])
    code = np_code(f)
    xlim = (-6.0, 6.0)
    zero = -b / k
    if ask == "line_equation":
        den = int(k.q)
        x1 = sympy.Integer(rint(rng, -4, 0) // den * den if den > 1 else rint(rng, -4, 0))
        x2 = x1 + den * rint(rng, 2 if den == 1 else 1, 3)
        pA, pB = (x1, f.subs(X, x1)), (x2, f.subs(X, x2))
        ylim = y_window(xlim, [float(pA[1]), float(pB[1])], code)
        facts = [
            descriptive("graph", "The figure shows a straight line through points A and B."),
            numeric(
                "A",
                f"A{point_text(*pA)} lies on the line.",
                sympy.Tuple(*pA),
                f"A{point_text(*pA)}",
            ),
            numeric(
                "B",
                f"B{point_text(*pB)} lies on the line.",
                sympy.Tuple(*pB),
                f"B{point_text(*pB)}",
            ),
        ]
        steps = [
            f"Slope k = (y_B - y_A) / (x_B - x_A) = ({num(pB[1])} - {num(pA[1])}) / ({num(x2)} - "
            f"{num(x1)}) = {num(k)}.",
            f"b = y_A - k·x_A = {num(pA[1])} - {num(k)} × {num(x1)} = {num(b)}.",
            f"The line is y = {sympy.sstr(f)}.",
        ]
        mistakes = [
            ("inverted the slope", sympy.Eq(Y, X / k + b)),
            ("wrong sign of the slope", sympy.Eq(Y, -k * X + b)),
            ("used x_A for the intercept", sympy.Eq(Y, k * X + pA[1] - k)),
        ]
        up = 1 if k > 0 else -1  # labels on opposite sides of the line
        pts = [
            ("A", float(pA[0]), float(pA[1]), "A", f"A{point_text(*pA)}", (1, -up)),
            ("B", float(pB[0]), float(pB[1]), "B", f"B{point_text(*pB)}", (-1, up)),
        ]
        fig = graph_args("Line through two labelled points.", code, xlim, ylim, (), pts)
        caption = (
            f"The figure shows the line y = {sympy.sstr(f)} on a grid, passing through the "
            f"labelled points A{point_text(*pA)} and B{point_text(*pB)}; it crosses the x-axis "
            f"at x = {num(zero)} and the y-axis at y = {num(b)}."
        )
        return make_problem(
            seed,
            "linear",
            ask,
            facts=facts,
            steps=steps,
            caption=caption,
            mistakes=mistakes,
            fig=fig,
        )
    ffact, title = formula_fact(f)
    facts = [descriptive("graph", graph_desc("linear")), ffact]
    pts = []
    key_ys = [float(b)]
    if ask == "value":
        x0 = sympy.Integer(rint(rng, -4, 4))
        facts.append(x0_fact(x0))
        ans, steps = value_parts(f, x0, code, xlim, key_ys)
        key_ys.append(float(ans))
        pts.append(("x0", float(x0), float(ans), "Q", f"Q (x = {num(x0)})"))
        mistakes = [
            ("substituted -x", f.subs(X, -x0)),
            ("forgot the intercept", k * x0),
            ("swapped slope and intercept", b * x0 + k),
        ]
    else:
        ans = sympy.FiniteSet(zero)
        steps = [f"Set y = 0: {sympy.sstr(f)} = 0.", f"x = {num(-b)} / ({num(k)}) = {num(zero)}."]
        mistakes = [
            ("used b/k instead of -b/k", sympy.FiniteSet(b / k)),
            ("used -k/b", sympy.FiniteSet(-k / b) if b != 0 else sympy.FiniteSet(1)),
            ("gave the y-intercept", sympy.FiniteSet(b)),
        ]
    ylim = y_window(xlim, key_ys, code)
    caption = (
        f"The figure shows the graph of y = {sympy.sstr(f)}, a line with slope {num(k)} that "
        f"crosses the x-axis at x = {num(zero)} and the y-axis at y = {num(b)}."
    )
    fig = graph_args("Graph of a linear function.", code, xlim, ylim, (title,), pts)
    return make_problem(
        seed, "linear", ask, facts=facts, steps=steps, caption=caption, mistakes=mistakes, fig=fig
    )


# ---------------------------------------------------------------- quadratic


def quadratic(rng: np.random.Generator, seed: int):
    ask = choice(
        rng, ["vertex", "zeros", "increasing", "decreasing", "extremum", "value", "quad_a"]
    )
    a = choice(rng, [R(1), R(-1), R(2), R(-2), R(1, 2), R(-1, 2)])
    if ask == "zeros":
        r1 = rint(rng, -5, 3)
        r2 = r1 + 2 * rint(rng, 1, 3)
        h = sympy.Integer((r1 + r2) // 2)
        k = -a * (h - r1) ** 2
    else:
        h, k = sympy.Integer(rint(rng, -3, 3)), sympy.Integer(rint(rng, -4, 4))
    f = a * (X - h) ** 2 + k
    fe = sympy.expand(f)
    xlim = (float(h) - 5.0, float(h) + 5.0)
    key_ys = [float(k)]
    pts: list = []
    opens = "upward" if a > 0 else "downward"
    disc_zeros = real_zeros(fe)
    zeros_txt = ", ".join(num(z) for z in sorted(disc_zeros, key=float)) if disc_zeros else "none"
    caption = (
        f"The figure shows the parabola y = {sympy.sstr(fe)}, opening {opens}, with vertex "
        f"({num(h)}, {num(k)}) and axis of symmetry x = {num(h)}; its real zeros: {zeros_txt}; "
        f"it crosses the y-axis at y = {num(fe.subs(X, 0))}."
    )
    if ask == "quad_a":
        x1 = h + choice(rng, [-2, -1, 1, 2])
        y1 = f.subs(X, x1)
        facts = [
            descriptive("graph", "The figure shows a parabola with vertex V passing through P."),
            numeric(
                "V",
                f"The vertex is V{point_text(h, k)}.",
                sympy.Tuple(h, k),
                f"V{point_text(h, k)}",
            ),
            numeric(
                "P",
                f"P{point_text(x1, y1)} lies on the parabola.",
                sympy.Tuple(x1, y1),
                f"P{point_text(x1, y1)}",
            ),
        ]
        pts = [
            ("V", float(h), float(k), "V", f"V{point_text(h, k)}"),
            ("P", float(x1), float(y1), "P", f"P{point_text(x1, y1)}"),
        ]
        steps = [
            f"With vertex V{point_text(h, k)}, y = a({sympy.sstr(X - h)})² + {num(k)}.",
            f"Substitute P{point_text(x1, y1)}: {num(y1)} = a × ({num(x1 - h)})² + {num(k)}, so "
            f"a = ({num(y1)} - {num(k)}) / {num((x1 - h) ** 2)} = {num(a)}.",
        ]
        mistakes = [
            ("forgot to square (x - h)", (y1 - k) / (x1 - h)),
            ("ignored k", y1 / (x1 - h) ** 2),
            ("wrong sign", -a),
        ]
        code = np_code(f)
        ylim = y_window(xlim, [float(k), float(y1)], code)
        fig = graph_args("Parabola with labelled vertex and point.", code, xlim, ylim, (), pts)
        return make_problem(
            seed,
            "quadratic",
            ask,
            facts=facts,
            steps=steps,
            caption=caption,
            mistakes=mistakes,
            fig=fig,
        )
    ffact, _ = formula_fact(fe)
    facts = [descriptive("graph", graph_desc("quadratic")), ffact]
    c2, c1 = a, -2 * a * h
    vertex_steps = [
        f"For y = {sympy.sstr(fe)}, the axis of symmetry is x = -b/(2a) = "
        f"-({num(c1)})/(2 × {num(c2)}) = {num(h)}.",
        f"y({num(h)}) = {num(k)}, so the vertex is ({num(h)}, {num(k)}).",
    ]
    if ask == "vertex":
        steps = vertex_steps
        mistakes = [
            ("sign error in -b/(2a)", sympy.Tuple(-h, fe.subs(X, -h))),
            ("swapped coordinates", sympy.Tuple(k, h)),
            ("used the y-intercept", sympy.Tuple(0, fe.subs(X, 0))),
        ]
    elif ask == "zeros":
        zs = sorted(disc_zeros, key=float)
        steps = [
            f"Solve {sympy.sstr(fe)} = 0: {num(a)}({sympy.sstr(X - h)})² = {num(-k)}, so "
            f"({sympy.sstr(X - h)})² = {num(-k / a)}.",
            f"x = {num(h)} ± {num(sympy.sqrt(-k / a))}, i.e. x = {num(zs[0])} or x = {num(zs[1])}.",
        ]
        mistakes = [
            ("sign error in the roots", sympy.FiniteSet(*[-z for z in zs])),
            ("gave only one root", sympy.FiniteSet(zs[1])),
            ("gave the vertex x", sympy.FiniteSet(h)),
        ]
    elif ask in ("increasing", "decreasing"):
        steps = [
            *vertex_steps,
            f"The parabola opens {opens} (a = {num(a)}), so it is "
            f"{'decreasing then increasing' if a > 0 else 'increasing then decreasing'} "
            f"around x = {num(h)}.",
        ]
        right = (a > 0) == (ask == "increasing")
        wrong = sympy.Interval(-oo, h) if right else sympy.Interval(h, oo)
        mistakes = [
            ("chose the wrong side of the vertex", wrong),
            ("used the vertex's y", sympy.Interval(k, oo) if right else sympy.Interval(-oo, k)),
            (
                "sign error in the axis",
                sympy.Interval(-h, oo) if right else sympy.Interval(-oo, -h),
            ),
        ]
    elif ask == "extremum":
        steps = [
            *vertex_steps,
            f"The parabola opens {opens}, so the {'minimum' if a > 0 else 'maximum'} "
            f"value is {num(k)}.",
        ]
        mistakes = [
            ("gave the x of the vertex", h),
            ("gave the y-intercept", fe.subs(X, 0)),
            ("sign error", -k),
        ]
    else:
        x0 = h + choice(rng, [-2, -1, 1, 2, 3])
        steps, mistakes = value_ask(
            fe,
            x0,
            facts,
            pts,
            key_ys,
            [
                ("forgot to square", a * (x0 - h) + k),
                ("dropped the coefficient", (x0 - h) ** 2 + k),
            ],
        )
    return make_graph_problem(
        seed,
        "quadratic",
        ask,
        fe,
        facts,
        pts,
        key_ys,
        xlim,
        steps,
        mistakes,
        caption,
        "Graph of a quadratic function.",
    )


# ---------------------------------------------------------------- cubic


def cubic(rng: np.random.Generator, seed: int):
    roots = sorted(int(v) for v in rng.choice(np.arange(-4, 5), size=3, replace=False))
    a = choice(rng, [R(1, 2), R(-1, 2), R(1, 4), R(-1, 4)])
    f = sympy.expand(a * (X - roots[0]) * (X - roots[1]) * (X - roots[2]))
    ask = choice(rng, ["zeros", "y_intercept", "local_max", "value"])
    ffact, _ = formula_fact(f)
    facts = [descriptive("graph", graph_desc("polynomial")), ffact]
    xlim = (roots[0] - 1.5, roots[2] + 1.5)
    pts: list = []
    key_ys = [0.0]
    crit = sorted(real_zeros(f.diff(X)), key=float)
    ext = [(c, f.subs(X, c)) for c in crit]
    caption = (
        f"The figure shows the graph of the cubic y = {sympy.sstr(f)}, with zeros at "
        f"x = {', '.join(str(r) for r in roots)}, local extrema at "
        + " and ".join(f"({approx2(c)}, {approx2(v)})" for c, v in ext)
        + f", and y-intercept {num(f.subs(X, 0))}."
    )
    if ask == "zeros":
        steps = [
            f"Factor: y = {num(a)}(x - {roots[0]})(x - {roots[1]})(x - {roots[2]}).".replace(
                "- -", "+ "
            ),
            f"The zeros are x = {roots[0]}, {roots[1]}, {roots[2]}.",
        ]
        mistakes = [
            ("sign error", sympy.FiniteSet(*[-r for r in roots])),
            ("missed a root", sympy.FiniteSet(roots[0], roots[2])),
            ("used the turning points", sympy.FiniteSet(*[sympy.nsimplify(c) for c in crit])),
        ]
    elif ask == "y_intercept":
        y0 = f.subs(X, 0)
        steps = [f"Set x = 0: y = {num(y0)}."]
        mistakes = [
            ("dropped the coefficient", -roots[0] * roots[1] * roots[2]),
            ("sign error", -y0),
            ("gave a zero", sympy.Integer(roots[1])),
        ]
        key_ys.append(float(y0))
    elif ask == "local_max":
        best = next((c, v) for c, v in ext if f.diff(X, 2).subs(X, c) < 0)
        steps = [
            f"y' = {sympy.sstr(f.diff(X))} = 0 at x = "
            + " and ".join(sympy.sstr(c) for c in crit)
            + ".",
            f"y'' < 0 at x = {sympy.sstr(best[0])} ≈ {approx2(best[0])}, a local maximum.",
            f"The local maximum value is y ≈ {approx2(best[1])}.",
        ]
        other = [v for c, v in ext if c != best[0]]
        mistakes = [
            ("gave the local minimum", other[0]),
            ("gave the x-coordinate", best[0]),
            ("sign error", -best[1]),
        ]
        key_ys += [float(v) for _, v in ext]
    else:
        x0 = sympy.Integer(rint(rng, roots[0], roots[2]))
        steps, mistakes = value_ask(
            f, x0, facts, pts, key_ys, [("dropped the coefficient", f.subs(X, x0) / a)]
        )
    key_ys += [float(v) for _, v in ext]
    return make_graph_problem(
        seed,
        "cubic",
        ask,
        f,
        facts,
        pts,
        key_ys,
        xlim,
        steps,
        mistakes,
        caption,
        "Graph of a cubic polynomial.",
        clip=1e9,
    )


# ---------------------------------------------------------------- exponential


def exponential(rng: np.random.Generator, seed: int):
    b = choice(rng, [R(2), R(3), R(1, 2), R(1, 3)])
    a = choice(rng, [R(1), R(-1), R(2), R(-2), R(3)])
    c = sympy.Integer(rint(rng, -3, 3))
    f = a * b**X + c
    ask = choice(rng, ["h_asymptote", "value", "y_intercept", "exp_base"])
    xlim = (-4.0, 4.0)
    code = np_code(f)
    lim = float(c) + (8.0 if a > 0 else -8.0)
    ylim = nice_ticks_window(min(float(c) - 1.5, lim, 0.0), max(float(c) + 1.5, lim, 0.0), 0.05)
    grows = "increasing" if (a > 0) == (b > 1) else "decreasing"
    caption = (
        f"The figure shows the graph of the exponential function y = {sympy.sstr(f)}, which is "
        f"{grows}, with horizontal asymptote y = {num(c)} and y-intercept {num(a + c)}."
    )
    pts: list = []
    hl = [("asymptote" if ask == "exp_base" else None, float(c))] if ask in ("exp_base",) else []
    if ask == "exp_base":
        y0, y1 = a + c, a * b + c
        facts = [
            descriptive(
                "graph", "The figure shows the graph of y = a·bˣ + c passing through A and B."
            ),
            numeric("asymptote", f"The horizontal asymptote is y = {num(c)}.", c, f"y = {num(c)}"),
            numeric(
                "A",
                f"A{point_text(0, y0)} lies on the graph.",
                sympy.Tuple(0, y0),
                f"A{point_text(0, y0)}",
            ),
            numeric(
                "B",
                f"B{point_text(1, y1)} lies on the graph.",
                sympy.Tuple(1, y1),
                f"B{point_text(1, y1)}",
            ),
        ]
        pts = [
            ("A", 0.0, float(y0), "A", f"A{point_text(0, y0)}"),
            ("B", 1.0, float(y1), "B", f"B{point_text(1, y1)}"),
            ("asymptote", -3.2, float(c), "", f"y = {num(c)}"),
        ]
        steps = [
            f"The asymptote gives c = {num(c)}; at x = 0, y = a + c = {num(y0)}, so a = {num(a)}.",
            f"At x = 1, y = a·b + c = {num(y1)}, so b = ({num(y1)} - {num(c)}) / {num(a)} = "
            f"{num(b)}.",
        ]
        mistakes = [
            ("ignored the asymptote", y1 / y0 if y0 != 0 else b + 1),
            ("inverted the ratio", 1 / b),
            ("subtracted instead of dividing", y1 - y0),
        ]
        fig = graph_args(
            "Exponential graph with asymptote and two labelled points.",
            code,
            xlim,
            ylim,
            (),
            pts,
            hlines=hl,
        )
        return make_problem(
            seed,
            "exponential",
            ask,
            facts=facts,
            steps=steps,
            caption=caption,
            mistakes=mistakes,
            fig=fig,
        )
    ffact, _ = formula_fact(f)
    facts = [descriptive("graph", graph_desc("exponential")), ffact]
    key_ys: list = []
    if ask == "h_asymptote":
        steps = [
            f"As x → {'-∞' if b > 1 else '+∞'}, {sympy.sstr(b**X)} → 0, so y → {num(c)}.",
            f"The horizontal asymptote is y = {num(c)}.",
        ]
        mistakes = [
            ("used the coefficient a", sympy.Eq(Y, a)),
            ("gave the y-intercept", sympy.Eq(Y, a + c)),
            ("sign error", sympy.Eq(Y, -c)),
        ]
    elif ask == "y_intercept":
        steps = [f"At x = 0, {sympy.sstr(b**X)} = 1, so y = {num(a)} + {num(c)} = {num(a + c)}."]
        mistakes = [("forgot c", a), ("used b instead of 1", a * b + c), ("gave the asymptote", c)]
    else:
        x0 = sympy.Integer(rint(rng, -2, 2))
        steps, mistakes = value_ask(
            f,
            x0,
            facts,
            pts,
            key_ys,
            [("multiplied b by x", a * b * x0 + c), ("forgot c", a * b**x0)],
        )
    return make_graph_problem(
        seed,
        "exponential",
        ask,
        f,
        facts,
        pts,
        key_ys,
        xlim,
        steps,
        mistakes,
        caption,
        "Graph of an exponential function.",
        ylim=ylim,
        hlines=[(None, float(c))],
    )


# ---------------------------------------------------------------- logarithmic


def logarithmic(rng: np.random.Generator, seed: int):
    b = choice(rng, [2, 3])
    a = choice(rng, [R(1), R(-1), R(2), R(-2)])
    h, k = sympy.Integer(rint(rng, -3, 2)), sympy.Integer(rint(rng, -2, 2))
    f = a * sympy.log(X - h) / sympy.log(b) + k
    ask = choice(rng, ["v_asymptote", "zeros", "value"])
    xlim = (float(h) - 1.5, float(h) + 10.0)
    lo = float(h) + 1e-3
    code = np_code(f)
    zero = h + sympy.Integer(b) ** (-k / a)
    text = f"y = {num(a)}*log({sympy.sstr(X - h)}, {b}) + {num(k)}".replace("- -", "+ ").replace(
        "1*log", "log"
    )
    text = (
        text.replace("-log", "-log") if not text.startswith("y = -1*") else text.replace("-1*", "-")
    )
    ffact = numeric(
        "formula", f"The function is {text}, where log(u, {b}) is the base-{b} logarithm.", f, text
    )
    facts = [descriptive("graph", graph_desc("logarithmic")), ffact]
    pts: list = []
    key_ys = [float(k)]
    caption = (
        f"The figure shows the graph of {text}, defined for x > {num(h)}, with vertical "
        f"asymptote x = {num(h)} and zero at x = {num(zero)}; it passes through "
        f"({num(h + 1)}, {num(k)})."
    )
    if ask == "v_asymptote":
        steps = [
            f"The logarithm needs {sympy.sstr(X - h)} > 0; as x → {num(h)}⁺, "
            f"log({sympy.sstr(X - h)}) → -∞.",
            f"The vertical asymptote is x = {num(h)}.",
        ]
        mistakes = [
            ("sign error", sympy.Eq(X, -h)),
            ("used the zero", sympy.Eq(X, zero)),
            ("shifted by one", sympy.Eq(X, h + 1)),
        ]
        ans_pts = []
    elif ask == "zeros":
        steps = [
            f"Set y = 0: log({sympy.sstr(X - h)}, {b}) = {num(-k / a)}.",
            f"{sympy.sstr(X - h)} = {b}^({num(-k / a)}) = {num(sympy.Integer(b) ** (-k / a))}, so "
            f"x = {num(zero)}.",
        ]
        mistakes = [
            ("sign error in the exponent", sympy.FiniteSet(h + sympy.Integer(b) ** (k / a))),
            ("forgot the shift h", sympy.FiniteSet(sympy.Integer(b) ** (-k / a))),
            ("multiplied instead of exponentiating", sympy.FiniteSet(h + b * (-k / a))),
        ]
        ans_pts = [0.0]
    else:
        m = rint(rng, -1, 2)
        x0 = h + sympy.Integer(b) ** m
        facts.append(x0_fact(x0))
        y0 = sympy.nsimplify(f.subs(X, x0))
        steps = [
            f"{sympy.sstr(X - h)} = {num(x0 - h)} = {b}^{m}, so "
            f"log({sympy.sstr(X - h)}, {b}) = {m}.",
            f"y = {num(a)} × {m} + {num(k)} = {num(y0)}.",
        ]
        pts.append(("x0", float(x0), float(y0), "Q", f"Q (x = {num(x0)})"))
        key_ys.append(float(y0))
        mistakes = [
            ("forgot the shift h", sympy.nsimplify(f.subs(X, x0 + h))),
            ("used log(x0)", a * m + k + (1 if m >= 0 else -1)),
            ("dropped a", m + k),
        ]
        ans_pts = []
    del ans_pts
    ylim = y_window((lo, xlim[1]), key_ys, code, clip=8.0)
    curves = ((lo, xlim[1], code, "tab:blue"),)
    return make_graph_problem(
        seed,
        "logarithmic",
        ask,
        f,
        facts,
        pts,
        key_ys,
        xlim,
        steps,
        mistakes,
        caption,
        "Graph of a logarithmic function.",
        ylim=ylim,
        curves=curves,
        vlines=[(None, float(h))],
        code=code,
    )


FAMILY = Family(
    name=NAME,
    subject=SUBJECT,
    subtypes={
        "linear": linear,
        "quadratic": quadratic,
        "cubic": cubic,
        "exponential": exponential,
        "logarithmic": logarithmic,
        **functions_more.SUBTYPES,
    },
)
