"""The preference recipe: chosen = the verified solution, rejected = a full solution on a typical
mistake whose answer the family's verifier rejects; records round-trip through storage."""

import dataclasses

import numpy as np
import pytest
import sympy

from mathjax_vl.data import records as R
from mathjax_vl.datagen import preference as P
from mathjax_vl.datagen import versions as V
from mathjax_vl.datagen.families import FAMILIES
from mathjax_vl.datagen.spec import Mistake, answers_match


def _final(text):
    last = text.strip().splitlines()[-1]
    assert last.startswith("The answer is ") and last.endswith(".")
    return last[len("The answer is ") : -1]


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_subtype_gives_a_verified_pair(family):
    fam = FAMILIES[family]
    for subtype in sorted(fam.subtypes):
        problem = fam.generate(5, subtype)
        chosen, rejected, mistake = P.preference_responses(problem, np.random.default_rng(0))
        assert chosen == V.solution_text(problem)
        assert _final(chosen) == V.answer_with_unit(problem)
        assert _final(rejected) == V.answer_with_unit(problem, mistake.value)
        gold = problem.solve(problem.fact_values)
        assert not answers_match(mistake.value, gold, problem.answer_spec)
        # a full solution: the shared setup steps, the mistaken step, the answer sentence
        steps = rejected.splitlines()
        assert steps[: len(problem.rationale) - 1] == list(problem.rationale[:-1])
        assert len(steps) == len(problem.rationale) + 1
        assert mistake.description.split()[0].lower() in steps[-2].lower()


def test_mistakes_the_verifier_accepts_are_never_used():
    """A 'mistake' equal to the gold answer in another form (or printing alike) is dropped: the
    verifier, not string inequality, decides."""
    problem = FAMILIES["solid_geometry"].generate(3, "pyramid")
    gold = problem.solve(problem.fact_values)
    disguised = Mistake("rewrote the root", sympy.Float(sympy.N(gold, 40), 40))  # gold, decimal
    assert V.answer_with_unit(problem, disguised.value) != V.answer_with_unit(problem)
    real = problem.mistakes[0]
    fake = dataclasses.replace(problem, mistakes=(disguised, real))
    assert P.verified_wrong(fake) == [real]
    only_fake = dataclasses.replace(problem, mistakes=(disguised,))
    with pytest.raises(ValueError, match="no typical mistake"):
        P.preference_responses(only_fake, np.random.default_rng(0))


def test_float_mistake_that_rounds_to_the_gold_is_dropped():
    for seed in range(40):
        problem = FAMILIES["functions"].generate(seed)
        if problem.answer_spec.precision:
            break
    else:
        pytest.skip("no FLOAT-answer problem in the first seeds")
    p = problem.answer_spec.precision
    close = Mistake("rounded early", problem.answer + sympy.Rational(1, 10 ** (p + 3)))
    fake = dataclasses.replace(problem, mistakes=(close,))
    assert P.verified_wrong(fake) == []


def test_preference_records_round_trip_through_storage(tmp_path):
    from mathjax_vl.data.storage import open_source, write_dataset

    png = R.encode_png(np.zeros((8, 8, 3), np.uint8))
    records = []
    for seed in range(3):
        problem = FAMILIES["plane_geometry"].generate(seed)
        chosen, rejected, _ = P.preference_responses(problem, np.random.default_rng(seed))
        prompt = R.with_leading_placeholders(V.instruction(problem, problem.question), 1)
        records.append(R.PreferencePair(prompt, chosen, rejected, (png,), f"p{seed}"))
    out = write_dataset(records, str(tmp_path), name="preference", split="train")
    back = list(open_source(out, split="train"))
    assert [b.to_dict() for b in back] == [r.to_dict() for r in records]


def test_record_validation_names_the_field():
    png = R.encode_png(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(R.RecordError, match="image_count_mismatch"):
        R.PreferencePair(prompt="no placeholder", chosen="a", rejected="b", images=(png,))
    with pytest.raises(R.RecordError, match="same response"):
        R.PreferencePair(prompt="q", chosen="a", rejected="a")
    d = R.PreferencePair(prompt="<image>\nq", chosen="a", rejected="b", images=(png,)).to_dict()
    assert R.record_from_dict(d).to_dict() == d
    del d["rejected"]
    with pytest.raises(R.RecordError, match="missing field 'rejected'"):
        R.record_from_dict(d, "pairs.jsonl", 7)
