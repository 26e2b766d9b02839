"""Problem families: name -> Family (subtypes and their seeded generators).

Each family module defines ``FAMILY: spec.Family``. Family names are stable identifiers used in
recipes and seed partitions: "plane_geometry", "solid_geometry", "functions", "analytic_geometry".
A recipe may also name one subtype as "family/subtype" ("plane_geometry/regular_polygon"), which
narrows generation to it (the seed still picks everything else).
"""

from __future__ import annotations

from mathjax_vl.datagen.families import analytic, functions, plane, solid
from mathjax_vl.datagen.spec import Family, Problem

FAMILIES: dict[str, Family] = {m.FAMILY.name: m.FAMILY for m in (plane, solid, functions, analytic)}


def generate(family: str, seed: int, subtype: str | None = None) -> Problem:
    """One problem of ``family`` (random subtype unless given) for ``seed``."""
    if family not in FAMILIES:
        raise KeyError(f"unknown family {family!r}; have {sorted(FAMILIES)}")
    return FAMILIES[family].generate(seed, subtype)


def resolve(entry: str) -> tuple[Family, str | None]:
    """'family' or 'family/subtype' -> (Family, subtype or None); unknown names raise KeyError."""
    name, _, subtype = entry.partition("/")
    if name not in FAMILIES:
        raise KeyError(f"unknown family {name!r} in {entry!r}; have {sorted(FAMILIES)}")
    family = FAMILIES[name]
    if subtype and subtype not in family.subtypes:
        raise KeyError(
            f"family {name!r} has no subtype {subtype!r}; have {sorted(family.subtypes)}"
        )
    return family, subtype or None
