"""Planted faults for the Beam pipeline tests, imported by sandbox workers by module name.

tests/datagen is put on PYTHONPATH before the pipeline starts its sandbox pool, so the workers
can import this module as `_beam_faults` (BeamConfig.item_target = "_beam_faults:build_item").
"""

from mathjax_vl.datagen import engine as E

BROKEN_PROGRAM = "raise RuntimeError('planted figure failure')"
RENDER_FAILS = 1  # every figure of this item is a program that raises
JOB_FAILS = 2  # the item job itself raises
DUPLICATE_OF = {4: 0}  # item 4 regenerates item 0's problem: a spec duplicate of a lower index


def build_item(payload, run_program):
    index = payload["index"]
    if index == RENDER_FAILS:
        return E.build_item(
            payload, lambda source, trust="untrusted": run_program(BROKEN_PROGRAM, trust)
        )
    if index == JOB_FAILS:
        raise RuntimeError("planted job failure")
    if index in DUPLICATE_OF:
        return E.build_item({**payload, "index": DUPLICATE_OF[index]}, run_program)
    return E.build_item(payload, run_program)
