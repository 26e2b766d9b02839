"""Solid geometry answers against an independent route: build the solid as 3-D points from the
facts, take volumes and surface areas from scipy's convex hull (Qhull) of the vertices (round
solids: polygonal rims refined by Richardson extrapolation), lengths from coordinates, and the
sphere by numeric integration. No volume or area formula of the generator is used."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy.integrate import quad
from scipy.spatial import ConvexHull

from mathjax_vl.datagen.families import FAMILIES, generate

SUBTYPES = sorted(FAMILIES["solid_geometry"].subtypes)
SEEDS = range(30)
N_RIM = 128  # polygonal rim; Richardson extrapolation over N and 2N leaves ~1e-8 relative


def rim(r: float, z: float, n: int = N_RIM) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([r * np.cos(t), r * np.sin(t), np.full(n, z)], axis=1)


def polygon_area(r: float, n: int = N_RIM) -> float:
    return 0.5 * n * r * r * math.sin(2 * math.pi / n)


def extrapolated(measure) -> float:
    """Richardson extrapolation of a polygonal approximation whose error is O(1/N²)."""
    coarse, fine = measure(N_RIM), measure(2 * N_RIM)
    return (4 * fine - coarse) / 3


def independent(p) -> float:
    v = {k: (None if val is None else float(val)) for k, val in p.fact_values.items()}
    q = p.question
    st = p.subtype
    if st in ("cube", "cuboid"):
        w, d, h = (v["edge"],) * 3 if st == "cube" else (v["AB"], v["BC"], v["AE"])
        pts = np.array([[x, y, z] for x in (0, w) for y in (0, d) for z in (0, h)], float)
        hull = ConvexHull(pts)
        if "volume" in q:
            return hull.volume
        if "surface" in q:
            return hull.area
        return max(np.linalg.norm(a - b) for a in pts for b in pts)  # the space diagonal
    if st == "prism":
        a, b, L = v["AB"], v["AC"], v["AD"]
        base = [(0, 0), (a, 0), (0, b)]
        pts = np.array([[x, y, z] for x, y in base for z in (0, L)], float)
        hull = ConvexHull(pts)
        return hull.volume if "volume" in q else hull.area
    if st == "pyramid":
        a, h = v["AB"], v["PO"]
        base = np.array([[0, 0, 0], [a, 0, 0], [a, a, 0], [0, a, 0]], float)
        apex = np.array([a / 2, a / 2, h])
        if "volume" in q:
            return ConvexHull(np.vstack([base, apex])).volume
        if "PM" in q:
            return float(np.linalg.norm(apex - (base[1] + base[2]) / 2))
        return float(np.linalg.norm(apex - base[0]))
    if st == "cylinder":
        r, h = v["radius"], v["height"]

        def measure(n):
            hull = ConvexHull(np.vstack([rim(r, 0, n), rim(r, h, n)]))
            if "volume" in q:
                return hull.volume
            return hull.area - (2 * polygon_area(r, n) if "lateral" in q else 0.0)

        return extrapolated(measure)
    if st == "cone":
        r, h = v["radius"], v["height"]
        apex = np.array([[0.0, 0.0, h]])
        if "slant" in q:
            return float(np.linalg.norm(apex[0] - rim(r, 0)[0]))

        def measure(n):
            hull = ConvexHull(np.vstack([rim(r, 0, n), apex]))
            return hull.volume if "volume" in q else hull.area - polygon_area(r, n)

        return extrapolated(measure)
    if st == "sphere":
        r = v["radius"]
        if "volume" in q:  # stack of discs
            return quad(lambda z: math.pi * (r * r - z * z), -r, r)[0]
        # surface of revolution of the meridian (r sin φ, r cos φ), φ in [0, π]
        return quad(lambda phi: 2 * math.pi * r * math.sin(phi) * r, 0, math.pi)[0]
    raise AssertionError(f"no independent route for {st}")


@pytest.fixture(scope="module")
def problems():
    return [generate("solid_geometry", s, st) for st in SUBTYPES for s in SEEDS]


def test_solid_answers_agree_with_hulls_and_integrals(problems):
    assert len(problems) >= 200
    for p in problems:
        got, want = independent(p), float(p.answer)
        where = (p.subtype, p.seed, p.question, got, want)
        assert abs(got - want) <= 2e-6 * max(1.0, abs(want)), where


def test_solid_mistakes_disagree(problems):
    for p in problems[::4]:
        got = independent(p)
        for m in p.mistakes:
            assert abs(float(m.value) - got) > 1e-4 * max(1.0, abs(got)), (p.subtype, p.seed, m)


def test_hidden_edges_are_dashed():
    """The hidden vertex of a box (back-bottom-left, D) has all three of its edges dashed."""
    p = generate("solid_geometry", 0, "cuboid")
    paths = p.figure_fn.keywords["paths"]
    dashed = {frozenset(pair) for names, _, d in paths if d for pair in itertools.pairwise(names)}
    assert {frozenset("CD"), frozenset("DA"), frozenset("DH")} <= dashed
    solid = {
        frozenset(pair) for names, closed, d in paths if not d for pair in itertools.pairwise(names)
    }
    assert frozenset("AB") in solid and frozenset("FG") in solid
    program = p.figure_program(p.fact_keys)
    # Straight edges go out as one LineCollection per style; the dashed one holds the hidden ones.
    hidden = program.split("    hidden_edges = [\n", 1)[1].split("\n    ]\n", 1)[0].splitlines()
    assert len(hidden) == len(dashed) >= 3
    assert 'LineCollection(hidden_edges, colors="black", linewidths=1.6, linestyles="--")' in (
        program
    )
