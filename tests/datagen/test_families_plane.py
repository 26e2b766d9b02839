"""Plane geometry answers against an independent route: build the figure from the facts with
coordinates (numpy), find unknown positions by root finding (scipy), then measure lengths, angles
and areas numerically. No formula of the generator (Pythagoras, laws of sines/cosines, sector
formulas) is used."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.optimize import brentq

from mathjax_vl.datagen.families import FAMILIES, generate

SUBTYPES = sorted(FAMILIES["plane_geometry"].subtypes)
SEEDS = range(16)


def dist(p, q) -> float:
    return float(np.hypot(q[0] - p[0], q[1] - p[1]))


def angle_at(v, a, b) -> float:
    """Angle avb in degrees from coordinates."""
    u, w = np.subtract(a, v), np.subtract(b, v)
    c = np.dot(u, w) / (np.linalg.norm(u) * np.linalg.norm(w))
    return math.degrees(math.acos(np.clip(c, -1, 1)))


def ray(origin, deg, length):
    return (
        origin[0] + length * math.cos(math.radians(deg)),
        origin[1] + length * math.sin(math.radians(deg)),
    )


def shoelace(pts) -> float:
    x, y = np.asarray(pts, float).T
    return 0.5 * abs(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))


def polyline_length(pts) -> float:
    pts = np.asarray(pts, float)
    return float(np.sum(np.hypot(*np.diff(pts, axis=0).T)))


def arc_points(c, r, t0, t1, n=20001):
    t = np.radians(np.linspace(t0, t1, n))
    return np.stack([c[0] + r * np.cos(t), c[1] + r * np.sin(t)], axis=1)


def intersect(p, d1, q, d2):
    """Intersection of lines p + s d1 and q + t d2."""
    s, _ = np.linalg.solve(np.array([d1, np.negative(d2)]).T, np.subtract(q, p))
    return np.add(p, s * np.asarray(d1))


def independent(p) -> float:
    v = {k: (None if val is None else float(val)) for k, val in p.fact_values.items()}
    q = p.question
    st = p.subtype
    if st == "right_triangle_pythagoras":
        C, A = (0.0, 0.0), (0.0, v["AC"])
        if "AB" in q:  # legs given: B on the x axis at distance BC from C
            return dist(A, (v["BC"], 0.0))
        bx = brentq(lambda x: dist(A, (x, 0.0)) - v["AB"], 0.0, v["AB"])  # |AB| = given
        return dist(C, (bx, 0.0))
    if st == "right_triangle_trig":
        A = (0.0, 0.0)  # AC along +x, C is the right angle, B above C
        if "AB" in v:
            B = ray(A, v["angle_A"], v["AB"])
            C = (B[0], 0.0)
        else:
            C = (v["AC"], 0.0)
            B = intersect(A, ray((0, 0), v["angle_A"], 1.0), C, (0.0, 1.0))
        return dist(B, C) if "BC" in q else dist(A, C)
    if st == "isosceles_triangle":
        b, s = v["BC"], v["AB"]
        B, C = (-b / 2, 0.0), (b / 2, 0.0)
        y = brentq(lambda t: dist((0.0, t), B) - s, 0.0, s)
        A = (0.0, y)
        assert abs(dist(A, C) - s) < 1e-9
        if "altitude" in q:
            return y  # distance from A to line BC (the x axis)
        return shoelace([A, B, C])
    if st == "law_of_cosines":
        A, B = (0.0, 0.0), (v["AB"], 0.0)
        C = ray(A, v["angle_A"], v["AC"])
        return dist(B, C)
    if st == "law_of_sines":
        B, C = (0.0, 0.0), (v["BC"], 0.0)
        angle_c = 180 - v["angle_A"] - v["angle_B"]
        A = intersect(B, ray((0, 0), v["angle_B"], 1), C, ray((0, 0), 180 - angle_c, 1))
        assert abs(angle_at(A, B, C) - v["angle_A"]) < 1e-6
        return dist(A, C)
    if st == "exterior_angle":
        B, C = (0.0, 0.0), (1.0, 0.0)
        angle_c = 180 - v["angle_A"] - v["angle_B"]
        A = intersect(B, ray((0, 0), v["angle_B"], 1), C, ray((0, 0), 180 - angle_c, 1))
        D = (2.0, 0.0)
        return angle_at(C, A, D)
    if st == "parallel_lines":
        P = (0.0, 0.0)
        Q = ray(P, -v["angle_BPQ"], 3.0)  # angle between ray PB (+x) and PQ is the given angle
        pts = {
            "P": P,
            "Q": Q,
            "B": (1.0, 0.0),
            "C": (Q[0] - 1, Q[1]),
            "D": (Q[0] + 1, Q[1]),
            "F": tuple(np.add(Q, np.subtract(Q, P))),
        }
        name = q.split("∠")[1][:3]
        assert abs(angle_at(P, pts["B"], Q) - v["angle_BPQ"]) < 1e-9
        return angle_at(pts[name[1]], pts[name[0]], pts[name[2]])
    if st == "regular_polygon":
        n = int(p.fact_values["sides"])
        pts = [ray((0, 0), 90 + 360 * i / n, 1.0) for i in range(n)]
        interior = angle_at(pts[0], pts[1], pts[-1])
        if "sum" in q:
            return sum(angle_at(pts[i], pts[i - 1], pts[(i + 1) % n]) for i in range(n))
        if "exterior" in q:
            ext = np.add(pts[0], np.subtract(pts[0], pts[1]))
            return angle_at(pts[0], ext, pts[-1])
        return interior
    if st == "inscribed_angle":
        if "angle_AOB" in v:
            half = v["angle_AOB"] / 2
            A, B = ray((0, 0), 270 - half, 1), ray((0, 0), 270 + half, 1)
            return angle_at(ray((0, 0), 100, 1), A, B)  # C anywhere on the major arc
        # given the inscribed angle: find the central angle whose inscribed angle matches
        C = ray((0, 0), 90, 1)

        def gap(t):
            return (
                angle_at(C, ray((0, 0), 270 - t / 2, 1), ray((0, 0), 270 + t / 2, 1))
                - v["angle_ACB"]
            )

        return brentq(gap, 1e-6, 180 - 1e-6)
    if st == "chord_length":
        r = v["OA"]
        if "AB" in q:  # chord on the line y = -OM
            x = brentq(lambda t: math.hypot(t, v["OM"]) - r, 0.0, r)
            return 2 * x
        # the distance d from O at which a chord has the given length
        return brentq(lambda d: 2 * math.sqrt(max(r * r - d * d, 0.0)) - v["AB"], 0.0, r)
    if st == "tangent_length":
        r, P = v["OT"], (v["OP"], 0.0)
        # T on the circle with OT ⟂ PT
        t = brentq(lambda a: np.dot(ray((0, 0), a, r), np.subtract(P, ray((0, 0), a, r))), 1e-9, 90)
        return dist(ray((0, 0), t, r), P)
    if st == "sector":
        pts = arc_points((0, 0), v["radius"], 0, v["angle_AOB"])
        if "arc" in q:
            return polyline_length(pts)
        return shoelace([(0.0, 0.0), *pts])
    if st == "quadrilateral":
        if "AB" in v and "BC" in v:  # rectangle
            return dist((0, 0), (v["AB"], v["BC"]))
        if "DC" in v:  # trapezoid, any offset of D
            a, b, h = v["AB"], v["DC"], v["DE"]
            return shoelace([(0, 0), (a, 0), (0.7 + b, h), (0.7, h)])
        D = ray((0, 0), v["angle_A"], v["AD"])
        return shoelace([(0, 0), (v["AB"], 0), (v["AB"] + D[0], D[1]), D])
    if st == "composite":
        w, h = v["AB"], v["BC"]
        # boundary: B -> A -> D -> C, then the semicircle bulging into the rectangle back to B
        arc = arc_points((w, h / 2), h / 2, 90, 270)
        boundary = [(w, 0.0), (0.0, 0.0), (0.0, h), (w, h), *arc]
        if "area" in q:
            return shoelace(boundary)
        return polyline_length(boundary)
    raise AssertionError(f"no independent route for {st}")


@pytest.fixture(scope="module")
def problems():
    return [generate("plane_geometry", s, st) for st in SUBTYPES for s in SEEDS]


def test_plane_answers_agree_with_numeric_geometry(problems):
    assert len(problems) >= 200
    for p in problems:
        got = independent(p)
        want = float(p.answer)
        assert abs(got - want) <= 1e-6 * max(1.0, abs(want)), (
            p.subtype,
            p.seed,
            p.question,
            got,
            want,
        )


def test_plane_mistakes_disagree_with_numeric_geometry(problems):
    for p in problems[::3]:
        got = independent(p)
        for m in p.mistakes:
            assert abs(float(m.value) - got) > 1e-6, (p.subtype, p.seed, m)


def test_regular_polygons_vary_beyond_side_count_and_question():
    """Only n and the question fix the answer; vertex names and the turn vary per seed, so a
    polygon-only dataset has enough distinct problems to split and de-duplicate."""
    problems = [generate("plane_geometry", s, "regular_polygon") for s in range(80)]
    assert len({p.fingerprint() for p in problems}) == 80  # 21 (n, question) pairs exist
    for p in problems:
        n = int(p.fact_values["sides"])
        letters = p.fact("sides").text.split()[0]
        assert len(letters) == len(set(letters)) == n and letters == "".join(sorted(letters))
        assert f"with {n} sides" in p.fact("sides").text
        program = p.figure_program(p.fact_keys)
        assert all(f"'{ch}'" in program or f'"{ch}"' in program for ch in letters)
