"""Plane geometry: angles (exterior angle of a triangle, parallel lines cut by a transversal,
regular polygons). Registered as subtypes of ``plane_geometry`` (see :mod:`plane`)."""

from __future__ import annotations

import math
import string

import numpy as np
import sympy

from mathjax_vl.datagen.families.common import (
    DEG,
    angle_fact,
    build,
    choice,
    descriptive,
    figure_args,
    num,
    rint,
    structural,
)
from mathjax_vl.datagen.families.drawing import label_dirs, scene_figure, scene_tikz
from mathjax_vl.datagen.spec import AnswerSpec, AnswerType, need

NAME = "plane_geometry"
SUBJECT = "plane geometry"


def triangle_from_sides(a: float, b: float, c: float) -> dict[str, tuple[float, float]]:
    """Coordinates with B at the origin, C on the positive x axis, A above (a = BC, b = CA)."""
    x = (c * c + a * a - b * b) / (2 * a)
    y = math.sqrt(max(c * c - x * x, 0.0))
    return {"A": (x, y), "B": (0.0, 0.0), "C": (a, 0.0)}


def triangle_points(P: dict[str, tuple[float, float]], names: str = "ABC") -> tuple:
    cx = sum(P[n][0] for n in names) / len(names)
    cy = sum(P[n][1] for n in names) / len(names)
    return label_dirs([(n, *P[n]) for n in names], (cx, cy))


def _problem(rng_seed: int, subtype: str, **kw):
    return build(family=NAME, subtype=subtype, seed=rng_seed, subject=SUBJECT, **kw)


# ---------------------------------------------------------------- angles


def solve_exterior(values) -> sympy.Basic:
    need(values, "triangle")
    return need(values, "angle_A") + need(values, "angle_B")


def exterior_angle(rng: np.random.Generator, seed: int):
    A = rint(rng, 30, 90)
    B = rint(rng, 25, min(140 - A, 80))
    C = 180 - A - B
    sides = [math.sin(math.radians(x)) / math.sin(math.radians(A)) * 6 for x in (A, B, C)]
    P = triangle_from_sides(*sides)
    P["D"] = (P["C"][0] + 0.45 * sides[0], 0.0)
    facts = [
        descriptive("triangle", "ABC is a triangle and D lies on the extension of BC beyond C."),
        angle_fact("angle_A", "BAC", A),
        angle_fact("angle_B", "ABC", B),
    ]
    items = [
        ("angle_A", "angle", ("A", "B", "C", f"{A}{DEG}")),
        ("angle_B", "angle", ("B", "C", "A", f"{B}{DEG}")),
        (None, "angle", ("C", "D", "A", "")),
    ]
    cx = sum(P[n][0] for n in "ABC") / 3
    cy = sum(P[n][1] for n in "ABC") / 3
    pts = (*label_dirs([(n, *P[n]) for n in "ABC"], (cx, cy)), ("D", *P["D"], 0.0, -1.0, False))
    steps = [
        "An exterior angle of a triangle equals the sum of the two remote interior angles.",
        f"∠ACD = ∠A + ∠B = {A}{DEG} + {B}{DEG} = {A + B}{DEG}.",
    ]
    mistakes = [
        ("gave the interior angle at C", C),
        ("subtracted the angles", abs(A - B)),
        ("used 180° minus the sum twice", 180 - C - A),
        ("took half the sum", (A + B) / 2),
    ]
    return _problem(
        seed,
        "exterior_angle",
        facts=facts,
        question="Find the measure of ∠ACD in degrees.",
        solver=solve_exterior,
        spec=AnswerSpec(AnswerType.INTEGER, unit=DEG),
        rationale=steps,
        caption=(
            f"The figure shows triangle ABC with side BC extended beyond C to D; ∠A = {A}{DEG}, "
            f"∠B = {B}{DEG}, and the exterior angle ACD is marked."
        ),
        mistakes=mistakes,
        figure=scene_figure,
        figure_args=figure_args(
            "Triangle ABC with exterior angle ACD.",
            pts,
            ((("A", "B", "C"), True, False), (("C", "D"), False, False)),
            items,
        ),
        tikz=scene_tikz,
    )


PARALLEL_RELATIONS = {
    # asked angle: (vertex, ray1, ray2, relation name, value as a function of theta)
    "alternate": (("Q", "C", "P"), "alternate interior angles are equal", lambda t: t),
    "co_interior": (("Q", "D", "P"), "co-interior angles are supplementary", lambda t: 180 - t),
    "corresponding": (("Q", "D", "F"), "corresponding angles are equal", lambda t: t),
}


def solve_parallel(values, relation: str) -> sympy.Basic:
    need(values, "parallel")
    return sympy.sympify(PARALLEL_RELATIONS[relation][2](need(values, "angle_BPQ")))


def parallel_lines(rng: np.random.Generator, seed: int):
    theta = int(choice(rng, [a for a in range(35, 146, 5) if a != 90]))
    relation = choice(rng, sorted(PARALLEL_RELATIONS))
    (v, r1, r2), reason, fn = PARALLEL_RELATIONS[relation]
    t = math.radians(theta)
    P0, Q0 = np.array([0.0, 3.0]), np.array([3.0 / math.tan(t), 0.0])
    d = (Q0 - P0) / np.linalg.norm(Q0 - P0)
    P = {
        "A": (P0[0] - 3, 3.0),
        "B": (P0[0] + 5, 3.0),
        "P": tuple(P0),
        "C": (Q0[0] - 5, 0.0),
        "D": (Q0[0] + 3, 0.0),
        "Q": tuple(Q0),
        "E": tuple(P0 - 1.6 * d),
        "F": tuple(Q0 + 1.6 * d),
    }
    names_dirs = {
        "A": (-1, 0.5),
        "B": (1, 0.5),
        "C": (-1, -0.5),
        "D": (1, -0.5),
        "E": tuple(-d),
        "F": tuple(d),
        "P": (-0.6, 0.8),
        "Q": (0.6, -0.8),
    }
    pts = tuple((n, *P[n], *names_dirs[n], n in "PQ") for n in "ABCDEFPQ")
    ans = fn(theta)
    facts = [
        descriptive("lines", "Line EF crosses line AB at P and line CD at Q."),
        structural("parallel", "AB ∥ CD.", "parallel arrows on AB and CD"),
        angle_fact("angle_BPQ", "BPQ", theta),
    ]
    items = [
        ("parallel", "parallel", ((("A", "B"), ("C", "D")), 1)),
        ("angle_BPQ", "angle", ("P", "B", "Q", f"{theta}{DEG}")),
        (None, "angle", (v, r1, r2, "")),
    ]
    asked = f"{r1}{v}{r2}"
    steps = [
        f"AB ∥ CD and EF is a transversal; ∠{asked} and ∠BPQ are "
        + {
            "alternate": "alternate interior angles",
            "co_interior": "co-interior angles",
            "corresponding": "corresponding angles",
        }[relation]
        + ".",
        f"Since {reason}, ∠{asked} = "
        + (
            f"180{DEG} - {theta}{DEG} = {ans}{DEG}."
            if relation == "co_interior"
            else f"{theta}{DEG}."
        ),
    ]
    mistakes = [
        ("confused equal and supplementary angles", 180 - ans),
        ("used the complement", abs(90 - theta)),
        ("doubled the angle", 2 * theta if 2 * theta < 180 else 360 - 2 * theta),
    ]
    return _problem(
        seed,
        "parallel_lines",
        facts=facts,
        question=f"Find the measure of ∠{asked} in degrees.",
        solver=solve_parallel,
        solver_args={"relation": relation},
        spec=AnswerSpec(AnswerType.INTEGER, unit=DEG),
        rationale=steps,
        caption=(
            f"The figure shows parallel lines AB and CD cut by transversal EF at P and Q; "
            f"∠BPQ is marked {theta}{DEG} and ∠{asked} is marked."
        ),
        mistakes=mistakes,
        figure=scene_figure,
        figure_args=figure_args(
            "Two parallel lines cut by a transversal.",
            pts,
            ((("A", "B"), False, False), (("C", "D"), False, False), (("E", "F"), False, False)),
            items,
        ),
        tikz=scene_tikz,
    )


POLYGON_NAMES = {
    5: "pentagon",
    6: "hexagon",
    7: "heptagon",
    8: "octagon",
    9: "nonagon",
    10: "decagon",
    12: "dodecagon",
}


def solve_polygon(values, ask: str) -> sympy.Basic:
    need(values, "regular")
    n = need(values, "sides")
    if ask == "interior":
        return sympy.Rational(180) * (n - 2) / n
    if ask == "sum":
        return sympy.Integer(180) * (n - 2)
    return sympy.Rational(360) / n


def regular_polygon(rng: np.random.Generator, seed: int):
    n = int(choice(rng, sorted(POLYGON_NAMES)))
    ask = choice(rng, ["interior", "sum", "exterior"])
    # Vertex names (n letters in alphabetical order) and the polygon's turn vary per seed: with
    # only n and the question fixing the answer, 21 problems in all would exist, too few to split
    # into train/test or to deduplicate against.
    letters = "".join(sorted(rng.choice(list(string.ascii_uppercase), size=n, replace=False)))
    rot = math.pi / 2 + (math.pi / n if n % 2 == 0 else 0.0)
    rot += float(rng.uniform(-1.0, 1.0)) * math.pi / n  # the whole orbit: n-fold symmetric
    P = {
        letters[i]: (
            3 * math.cos(rot + 2 * math.pi * i / n),
            3 * math.sin(rot + 2 * math.pi * i / n),
        )
        for i in range(n)
    }
    pts = label_dirs([(k, *v) for k, v in P.items()], (0.0, 0.0))
    facts = [
        descriptive("sides", f"{letters} is a polygon with {n} sides.", n),
        structural(
            "regular",
            "The polygon is regular (all sides and angles are equal).",
            "equal-length ticks on every side",
        ),
    ]
    segs = tuple((letters[i], letters[(i + 1) % n]) for i in range(n))
    items = [("regular", "ticks", (segs, 1))]
    if ask == "exterior":
        first, second = letters[0], letters[1]
        items.append((None, "angle", (first, "_X", letters[-1], "")))
        ext = np.array(P[first]) + (np.array(P[first]) - np.array(P[second]))
        pts = (*pts, ("_X", *ext, 0.0, 0.0, False))
    ans = solve_polygon({"regular": None, "sides": sympy.Integer(n)}, ask)
    total = 180 * (n - 2)
    steps = [
        f"The sum of the interior angles of a polygon with {n} sides is (n - 2) × 180{DEG} = "
        f"{n - 2} × 180{DEG} = {total}{DEG}."
    ]
    if ask == "interior":
        steps.append(
            f"The polygon is regular, so each interior angle is {total}{DEG} / {n} = "
            f"{num(ans)}{DEG}."
        )
        question = "Find the measure of one interior angle of the polygon in degrees."
        mistakes = [
            ("used n instead of n - 2", sympy.Rational(180 * n, n)),
            ("gave the exterior angle", sympy.Rational(360, n)),
            ("used n - 1", sympy.Rational(180 * (n - 1), n)),
        ]
        spec = (
            AnswerSpec(AnswerType.INTEGER, unit=DEG)
            if ans.is_Integer
            else AnswerSpec(AnswerType.FLOAT, precision=2, unit=DEG)
        )
    elif ask == "sum":
        question = "Find the sum of the interior angles of the polygon in degrees."
        mistakes = [
            ("used n instead of n - 2", 180 * n),
            ("used n - 1", 180 * (n - 1)),
            ("used 360° per vertex", 360 * (n - 2)),
        ]
        spec = AnswerSpec(AnswerType.INTEGER, unit=DEG)
    else:
        steps = [
            f"The exterior angles of any convex polygon add up to 360{DEG}.",
            f"The polygon is regular with {n} sides, so each exterior angle is 360{DEG} / {n} = "
            f"{num(ans)}{DEG}.",
        ]
        question = "Find the measure of the marked exterior angle in degrees."
        mistakes = [
            ("gave the interior angle", sympy.Rational(180 * (n - 2), n)),
            ("divided 180° by n", sympy.Rational(180, n)),
            ("divided by n - 2", sympy.Rational(360, n - 2)),
        ]
        spec = (
            AnswerSpec(AnswerType.INTEGER, unit=DEG)
            if ans.is_Integer
            else AnswerSpec(AnswerType.FLOAT, precision=2, unit=DEG)
        )
    paths = [((tuple(letters)), True, False)]
    if ask == "exterior":
        paths.append(((letters[0], "_X"), False, True))
    return _problem(
        seed,
        "regular_polygon",
        facts=facts,
        question=question,
        solver=solve_polygon,
        solver_args={"ask": ask},
        spec=spec,
        rationale=steps,
        caption=f"The figure shows a regular {POLYGON_NAMES[n]} {letters} with equal sides marked"
        + (
            f"; side {letters[1]}{letters[0]} is extended past {letters[0]} and the exterior "
            f"angle at {letters[0]} is marked."
            if ask == "exterior"
            else "."
        ),
        mistakes=mistakes,
        figure=scene_figure,
        figure_args=figure_args(f"Regular {POLYGON_NAMES[n]}.", pts, tuple(paths), items),
        tikz=scene_tikz,
    )


SUBTYPES = {
    "exterior_angle": exterior_angle,
    "parallel_lines": parallel_lines,
    "regular_polygon": regular_polygon,
}
