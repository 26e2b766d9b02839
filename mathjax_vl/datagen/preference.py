"""Verified preference pairs from a solved problem: the chosen and the rejected solution.

The chosen response is the problem's verified chain-of-thought solution (`versions.solution_text`,
whose answer the engine has re-solved from the facts). The rejected response is a full solution
built on one of the family's typical mistakes (`Problem.mistakes`: radius for diameter, sine for
cosine, forgetting to halve): the rationale's steps up to the final computation, then the step
that makes the mistake, then the final-answer sentence with the mistaken value. Both end in the
same "The answer is ..." sentence, so an answer extractor reads them alike.

A mistake is used only when the family's verifier says its answer is wrong: it is compared with
the answer re-solved from the facts (`Problem.solve`) by `spec.answers_match` (numeric at 30
digits, expressions at sample points, FLOAT at the shown precision), and its formatted text must
differ from the gold's too (two values that print alike would give a pair that differs only in
the reasoning, whose answer a grader would accept).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from mathjax_vl.datagen import versions as V
from mathjax_vl.datagen.spec import Mistake, Problem, answers_match


def verified_wrong(problem: Problem) -> list[Mistake]:
    """The problem's mistakes whose answer the verifier rejects, in the family's order."""
    gold = problem.solve(problem.fact_values)  # the verifier's answer, not the stored one
    gold_text = V.answer_with_unit(problem, gold)
    out = []
    for mistake in problem.mistakes:
        try:
            if answers_match(mistake.value, gold, problem.answer_spec):
                continue
            text = V.answer_with_unit(problem, mistake.value)
        except (TypeError, ValueError, AttributeError):
            continue  # a mistake value that does not fit the answer type
        if text != gold_text:
            out.append(mistake)
    return out


def _sentence(description: str) -> str:
    text = description.strip().rstrip(".")
    return text[:1].upper() + text[1:]


def rejected_solution(problem: Problem, mistake: Mistake) -> str:
    """A complete solution that makes `mistake`: the shared steps, the mistaken step, the answer.

    The rationale's last step is the final computation (it produces the gold answer); it is
    replaced by the mistaken one. Steps before it are the common setup both responses share.
    """
    wrong = V.answer_with_unit(problem, mistake.value)
    steps: Sequence[str] = problem.rationale[:-1]
    return "\n".join(
        [*steps, f"{_sentence(mistake.description)}: {wrong}.", f"The answer is {wrong}."]
    )


def preference_responses(problem: Problem, rng: np.random.Generator) -> tuple[str, str, Mistake]:
    """(chosen, rejected, the mistake used) or ValueError when no mistake is verifiably wrong."""
    candidates = verified_wrong(problem)
    if not candidates:
        raise ValueError(
            f"{problem.family}/{problem.subtype} seed {problem.seed}: no typical mistake whose "
            "answer the verifier rejects"
        )
    mistake = candidates[int(rng.integers(len(candidates)))]
    return V.solution_text(problem), rejected_solution(problem, mistake), mistake
