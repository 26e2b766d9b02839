"""Shared machinery of the functions family: the plot program, the solver that analyses a
formula from the facts, question texts and problem assembly."""

from __future__ import annotations

import re

import numpy as np
import sympy
from sympy.printing.numpy import NumPyPrinter

from mathjax_vl.datagen.families.common import (
    build,
    num,
    numeric,
)
from mathjax_vl.datagen.families.graph import GraphCanvas, nice_ticks_window
from mathjax_vl.datagen.spec import AnswerSpec, AnswerType, need

NAME = "functions"
SUBJECT = "functions"
X = sympy.Symbol("x", real=True)
Y = sympy.Symbol("y", real=True)
R = sympy.Rational
pi = sympy.pi
oo = sympy.oo


def np_code(expr: sympy.Basic) -> str:
    return NumPyPrinter().doprint(expr).replace("numpy.", "np.")


def np_eval(code: str, xs: np.ndarray) -> np.ndarray:
    with np.errstate(all="ignore"):
        return np.asarray(eval(code, {"np": np, "x": xs}), dtype=float) * np.ones_like(xs)


def formula_text(expr: sympy.Basic) -> str:
    return "y = " + sympy.sstr(expr)


def point_text(px: sympy.Basic, py: sympy.Basic) -> str:
    return f"({num(px)}, {num(py)})"


def value_spec(v: sympy.Basic) -> AnswerSpec:
    v = sympy.sympify(v)
    if v.is_Integer:
        return AnswerSpec(AnswerType.INTEGER)
    return AnswerSpec(AnswerType.EXPRESSION)


# ---------------------------------------------------------------- figure program


def graph_figure(
    shown: frozenset[str],
    *,
    doc: str,
    curves,
    xlim,
    ylim,
    titles,
    points,
    hlines=(),
    vlines=(),
    xticks=None,
) -> str:
    """Program drawing the curves and marks; fact-keyed parts appear only when shown.

    curves: ((x_lo, x_hi, numpy_code, color), ...); titles: ((fact_key, text), ...) joined into
    the title; points: ((fact_key | None, x, y, name, full_label[, (side_x, side_y)]), ...): the
    dot is always drawn, labelled ``full_label`` when its fact is shown, else ``name`` (may be
    empty), on the preferred side; hlines/vlines: ((fact_key | None, value), ...) dashed guides.
    """
    cv = GraphCanvas(doc, xlim, ylim)
    title = "   ".join(_tidy_signs(text) for key, text in titles if key in shown)
    cv.title = title or None
    cv.xticks = xticks
    for key, v in hlines:
        if key is None or key in shown:
            cv.hline(v)
    for key, v in vlines:
        if key is None or key in shown:
            cv.vline(v)
    for lo, hi, code, color in curves:
        cv.curve(lo, hi, code, color)
    for key, px, py, name, label, *side in points:
        text = label if key is None or key in shown else name or None
        cv.point((px, py), text, side=tuple(side[0]) if side else (1, 1))
    return cv.program()


def y_window(xs: tuple[float, float], key_ys: list[float], code: str, clip: float = 10.0):
    """y window holding the key points and the curve's values (clipped to +-clip)."""
    grid = np.linspace(xs[0], xs[1], 801)
    ys = np_eval(code, grid)
    ys = ys[np.isfinite(ys) & (np.abs(ys) <= clip)]
    lo = min([*key_ys, *(ys.tolist() or [0.0]), 0.0])
    hi = max([*key_ys, *(ys.tolist() or [0.0]), 0.0])
    return nice_ticks_window(lo, hi, pad=0.1)


# ---------------------------------------------------------------- solver


def _atom(f: sympy.Basic, cls) -> sympy.Basic:
    atoms = [a for a in f.atoms(*(cls if isinstance(cls, tuple) else (cls,))) if a.has(X)]
    if len(atoms) != 1:
        raise ValueError(f"expected one {cls} term in {f}, found {atoms}")
    return atoms[0]


def real_zeros(f: sympy.Basic) -> sympy.FiniteSet:
    """Real zeros of the family's function forms, by closed forms (solveset is ~50x slower).

    Polynomials up to degree 2 by formula; cubics by numpy candidates verified exactly (sympy's
    roots as fallback); a*|u| + k and A*log(u) + K by isolating the single transcendental term;
    anything else by solveset.
    """
    f = sympy.sympify(f)
    if f.is_polynomial(X):
        coeffs = sympy.Poly(f, X).all_coeffs()
        deg = len(coeffs) - 1
        if deg == 0:
            return sympy.FiniteSet() if coeffs[0] != 0 else sympy.S.Reals
        if deg == 1:
            return sympy.FiniteSet(-coeffs[1] / coeffs[0])
        if deg == 2:
            a, b, c = coeffs
            disc = b * b - 4 * a * c
            if disc < 0:
                return sympy.FiniteSet()
            sq = sympy.sqrt(disc)
            return sympy.FiniteSet((-b - sq) / (2 * a), (-b + sq) / (2 * a))
        approx_roots = np.roots([float(c) for c in coeffs])
        cands = {
            sympy.Rational(round(float(z.real) * 12), 12)
            for z in approx_roots
            if abs(z.imag) < 1e-9
        }
        exact = [z for z in cands if f.subs(X, z) == 0]
        if len(exact) == len(cands):
            return sympy.FiniteSet(*exact)
        return sympy.FiniteSet(*[r for r in sympy.roots(sympy.Poly(f, X)) if r.is_real])
    for cls in (sympy.Abs, sympy.log):
        terms = [t for t in f.atoms(cls) if t.has(X)]
        if len(terms) != 1:
            continue
        t = terms[0]
        A, K = f.coeff(t), f.subs(t, 0)
        if A.free_symbols or K.free_symbols:
            continue
        target = -K / A
        inner = t.args[0]
        if cls is sympy.Abs:
            if target < 0:
                return sympy.FiniteSet()
            return sympy.FiniteSet(_linear_solve(inner, target), _linear_solve(inner, -target))
        return sympy.FiniteSet(_linear_solve(inner, sympy.exp(target)))
    return real_zeros(f)


def _linear_solve(u: sympy.Basic, value: sympy.Basic) -> sympy.Basic:
    """x with u(x) = value for u linear in x."""
    return sympy.nsimplify((value - u.subs(X, 0)) / u.diff(X))


def _linear_root(arg: sympy.Basic) -> sympy.Basic:
    a = arg.diff(X)
    return sympy.nsimplify(-arg.subs(X, 0) / a)


def solve_function(values, kind: str, ask: str) -> sympy.Basic:
    if ask == "line_equation":
        (x1, y1), (x2, y2) = need(values, "A"), need(values, "B")
        k = (y2 - y1) / (x2 - x1)
        return sympy.Eq(Y, sympy.expand(k * (X - x1) + y1))
    if ask == "quad_a":
        (h, k), (x1, y1) = need(values, "V"), need(values, "P")
        return (y1 - k) / (x1 - h) ** 2
    if ask == "exp_base":
        c = need(values, "asymptote")
        (_, y0), (_, y1) = need(values, "A"), need(values, "B")
        return (y1 - c) / (y0 - c)
    if ask == "intersections":
        f1, f2 = need(values, "formula"), need(values, "formula_2")
        return real_zeros(sympy.expand(f1 - f2))
    f = need(values, "formula")
    if ask == "value":
        return sympy.nsimplify(f.subs(X, need(values, "x0")))
    if ask == "y_intercept":
        return f.subs(X, 0)
    if ask == "zeros":
        return real_zeros(f)
    if ask in ("vertex", "extremum", "increasing", "decreasing"):
        if kind == "absolute":
            h = _linear_root(_atom(f, sympy.Abs).args[0])
            a = f.subs(X, h + 1) - f.subs(X, h)
        else:
            c2, c1, _ = sympy.Poly(f, X).all_coeffs()
            h, a = -c1 / (2 * c2), c2
        k = f.subs(X, h)
        if ask == "vertex":
            return sympy.Tuple(h, k)
        if ask == "extremum":
            return k
        rising_right = (a > 0) == (ask == "increasing")
        return sympy.Interval(h, oo) if rising_right else sympy.Interval(-oo, h)
    if ask == "local_max":
        crit = list(real_zeros(f.diff(X)))
        best = [r for r in crit if f.diff(X, 2).subs(X, r) < 0]
        return sympy.nsimplify(f.subs(X, best[0])) if best else sympy.nan
    if ask == "h_asymptote":
        if kind == "rational":
            return sympy.Eq(Y, f.subs(_atom(f, sympy.Pow), 0))
        f0, f1, f2 = (f.subs(X, t) for t in (0, 1, 2))  # a*b**x + c at 0, 1, 2
        b = (f2 - f1) / (f1 - f0)
        a = (f1 - f0) / (b - 1)
        return sympy.Eq(Y, sympy.nsimplify(f0 - a))
    if ask == "v_asymptote":
        arg = _atom(f, sympy.log).args[0] if kind == "logarithmic" else _atom(f, sympy.Pow).base
        return sympy.Eq(X, _linear_root(arg))
    if ask in ("period", "max", "min"):
        s = _atom(f, (sympy.sin, sympy.cos))
        if ask == "period":
            return 2 * pi / abs(s.args[0].diff(X))
        amp, mid = abs(f.coeff(s)), f.subs(s, 0)
        return mid + amp if ask == "max" else mid - amp
    raise ValueError(f"unknown ask {ask!r}")


# ---------------------------------------------------------------- problem assembly


QUESTIONS = {
    "value": "Find the y-coordinate of point Q on the graph.",
    "y_intercept": "Find the y-intercept of the graph.",
    "zeros": "Find all zeros of the function.",
    "vertex": "Find the coordinates of the vertex of the graph.",
    "extremum": "Find the extreme value (the maximum or minimum) of the function.",
    "increasing": "On which interval is the function increasing?",
    "decreasing": "On which interval is the function decreasing?",
    "local_max": "Find the local maximum value of the function.",
    "h_asymptote": "Find the equation of the horizontal asymptote of the graph.",
    "v_asymptote": "Find the equation of the vertical asymptote of the graph.",
    "period": "Find the smallest positive period of the function.",
    "max": "Find the maximum value of the function.",
    "min": "Find the minimum value of the function.",
    "line_equation": "Find the equation of the line in the form y = kx + b.",
    "quad_a": "The graph is the parabola y = a(x - h)² + k with vertex V. Find a.",
    "exp_base": "The graph is y = a·bˣ + c. Find the base b.",
    "intersections": "Find the x-coordinates of all intersection points of the two graphs.",
}


def _spec_for(ask: str, ans: sympy.Basic) -> AnswerSpec:
    if ask in ("zeros", "intersections"):
        return AnswerSpec(AnswerType.SET)
    if ask == "vertex":
        return AnswerSpec(AnswerType.POINT)
    if ask in ("increasing", "decreasing"):
        return AnswerSpec(AnswerType.INTERVAL)
    if ask == "local_max":
        return AnswerSpec(AnswerType.FLOAT, precision=2)
    return value_spec(ans)


def make_problem(
    seed: int,
    kind: str,
    ask: str,
    *,
    facts,
    steps,
    caption,
    mistakes,
    fig,
    subtype: str | None = None,
):
    values = {f.key: f.value for f in facts}
    ans = solve_function(values, kind, ask)
    return build(
        family=NAME,
        subtype=subtype or kind,
        seed=seed,
        subject=SUBJECT,
        facts=facts,
        question=QUESTIONS[ask],
        solver=solve_function,
        solver_args={"kind": kind, "ask": ask},
        spec=_spec_for(ask, ans),
        rationale=steps,
        caption=caption,
        mistakes=mistakes,
        figure=graph_figure,
        figure_args=fig,
    )


def formula_fact(f: sympy.Basic, key: str = "formula") -> tuple:
    text = formula_text(f)
    return numeric(key, f"The function is {text}.", f, text), (key, text)


def x0_fact(x0: sympy.Basic):
    return numeric("x0", f"The x-coordinate of Q is {num(x0)}.", x0, f"x = {num(x0)}")


def _tidy_signs(text: str) -> str:
    """'y = 2*x + -3' -> 'y = 2*x - 3' and '- -3' -> '+ 3' in a drawn formula (the facts' own
    text is untouched; only the figure's title is tidied)."""
    return text.replace("+ -", "- ").replace("- -", "+ ")


def graph_args(doc, f_code, xlim, ylim, titles, points, **kw):
    return dict(
        doc=doc,
        curves=tuple(kw.pop("curves", ((xlim[0], xlim[1], f_code, "tab:blue"),))),
        xlim=tuple(xlim),
        ylim=tuple(ylim),
        titles=tuple(titles),
        points=tuple(points),
        hlines=tuple(kw.pop("hlines", ())),
        vlines=tuple(kw.pop("vlines", ())),
        xticks=kw.pop("xticks", None),
    )


def value_parts(f, x0, code, xlim, ylim_keys):
    y0 = sympy.nsimplify(f.subs(X, x0))
    plugged = re.sub(r"\bx\b", f"({num(x0)})", sympy.sstr(f))
    steps = [f"Substitute x = {num(x0)}: y = {plugged} = {num(y0)}."]
    return y0, steps


def graph_desc(kind: str) -> str:
    article = "an" if kind[0] in "aeiou" else "a"
    return f"The figure shows the graph of {article} {kind} function."


def value_ask(f, x0, facts, pts, key_ys, wrong_fs=()):
    """Shared 'value at Q' ask: fact, marked point, rationale, mistakes."""
    facts.append(x0_fact(x0))
    y0, steps = value_parts(f, x0, None, None, None)
    key_ys.append(float(y0))
    pts.append(("x0", float(x0), float(y0), "Q", f"Q (x = {num(x0)})"))
    mistakes = [("substituted -x", sympy.nsimplify(f.subs(X, -x0)))]
    mistakes += [(d, sympy.nsimplify(v)) for d, v in wrong_fs]
    mistakes += [("sign error in the result", -y0), ("evaluated at x + 1", f.subs(X, x0 + 1))]
    return steps, mistakes


def make_graph_problem(
    seed, kind, ask, f, facts, pts, key_ys, xlim, steps, mistakes, caption, doc, **kw
):
    code = kw.pop("code", None) or np_code(f)
    ylim = kw.pop("ylim", None) or y_window(xlim, key_ys, code, kw.pop("clip", 10.0))
    title = ("formula", facts[1].figure_label)
    fig = graph_args(doc, code, xlim, ylim, (title,), pts, **kw)
    return make_problem(
        seed, kind, ask, facts=facts, steps=steps, caption=caption, mistakes=mistakes, fig=fig
    )


def approx2(v) -> str:
    return f"{float(v):.2f}"


def pi_label(i: int) -> str:
    """Tick label for i·π/2."""
    if i == 0:
        return "0"
    q = sympy.Rational(i, 2)
    if q == 1:
        return "π"
    if q.q == 1:
        return f"{q.p}π"
    return "π/2" if q.p == 1 else f"{q.p}π/2"
