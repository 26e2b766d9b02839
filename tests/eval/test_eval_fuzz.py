"""No crash on any string: every extraction and matching function returns a verdict.

12,000 deterministic generated strings (number edge cases such as -infinity, inf, nan, 1e400,
empty text, unicode math, LaTeX fragments, unbalanced braces) go through the rule-based
functions; a smaller share goes through the symbolic paths (math-verify, sympy), whose per-item
time bound is checked separately, and a megabyte response is scored within a time bound.
"""

import random
import time

import pytest

from mathjax_vl.eval import matching
from mathjax_vl.eval.extraction import extract_answer, numbers_in
from mathjax_vl.eval.matching import answers_match, as_plain_number, mathvista_normalize
from mathjax_vl.eval.mathv import mathv_equal, mathv_extract, mathv_judge
from mathjax_vl.eval.safety import bounded_call

ATOMS = [
    "-infinity", "infinity", "inf", "-inf", "nan", "NaN", "1e400", "-1e400", "1e-400", "0",
    "-0", "00", ".5", "5.", "1,000", "1,00,0", "12,345.678", "3/0", "0/0", "1/3", "−7", "+3",
    "", " ", "\n", "\t", "\\boxed{", "\\boxed{}", "}", "{", "{{", "}}", "$", "$$", "\\frac{1}{0}",
    "\\frac", "\\sqrt", "√", "√{3}", "²", "³", "°", "^\\circ", "%", "\\%", "π", "∞", "×", "÷",
    "The answer is", "the answer is", "Answer:", "answer:", "**", "(B)", "(b)", "B.", "option C",
    "Yes", "No", "not", "答案是", "选项", "。", "\\text{ cm}", "\\left(", "\\right)", "(1, 2)",
    "[1, 2]", "x^2+1", "sqrt(3)/2", "=", "\\approx", "If", "is", "are", "There are 2", "units",
    "\u200b", "\ufeff", "🙂", "ß", "İ", "\x00", "\\", "\\\\", "'", '"', "`", "#", "...", "e",
    "E", "I", "oo", "zoo", "1e5", "9" * 400, "-" * 50, "(" * 30, ")" * 30, "{" * 40,
]  # fmt: skip
CHOICES = [None, ("Yes", "No"), ("3", "4.5", "(b)", "√{3}"), ("A: 30°", "B: 40°", "C: 50°")]
TYPES = ["integer", "float", "list", "text", "multi_choice", "free_form", "expression"]


def _strings(count: int, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    out = list(ATOMS)
    while len(out) < count:
        pieces = rng.choices(ATOMS, k=rng.randint(1, 8))
        sep = rng.choice(["", " ", "\n", ", ", ". "])
        out.append(sep.join(pieces))
    return out


STRINGS = _strings(12_000)


def test_fuzz_extraction_and_rule_matching_never_raise():
    assert len(STRINGS) >= 10_000 and "-infinity" in STRINGS
    for index, text in enumerate(STRINGS):
        choices = CHOICES[index % len(CHOICES)]
        answer_type = TYPES[index % len(TYPES)]
        extracted = extract_answer(text, choices, answer_type)
        assert extracted.text is None or isinstance(extracted.text, str)
        question_type = "multi_choice" if choices else "free_form"
        normalised = mathvista_normalize(
            extracted.text if index % 2 else text,
            question_type=question_type,
            answer_type="text" if choices else ("integer", "float", "list")[index % 3],
            choices=choices,
            precision=index % 4,
        )
        assert normalised is None or isinstance(normalised, str)
        assert isinstance(numbers_in(text), list)
        value = as_plain_number(text)
        assert value is None or isinstance(value, float)
        assert isinstance(mathv_extract(text), str)
        gold = STRINGS[(index * 7919) % len(STRINGS)]
        assert isinstance(answers_match(text, "B", "multi_choice", choices=choices), bool)
        assert isinstance(answers_match(text, "C\nD", "multi_choice", choices=None), bool)
        if index % 400 == 0 and as_plain_number(gold) is not None:  # may reach math-verify
            assert isinstance(answers_match(text, gold, "integer"), bool)


@pytest.mark.parametrize("text", ["-infinity", "inf", "nan", "1e400", "-1e400", "", "√"])
def test_number_edge_cases_have_verdicts(text):
    # The reported crash: OverflowError converting float infinity to integer.
    for answer_type in ("integer", "float", "list"):
        assert (
            mathvista_normalize(
                text, question_type="free_form", answer_type=answer_type, precision=2
            )
            is None
        )
    assert answers_match(text, "3", "integer") is False
    assert answers_match(text, "3", "float", precision=1) is False
    assert mathv_judge(mathv_extract(text), "3", None) is False


def test_fuzz_symbolic_paths_never_raise():
    for index, text in enumerate(STRINGS[:: len(STRINGS) // 40]):
        gold = ATOMS[index % len(ATOMS)]
        assert isinstance(answers_match(text, gold or "1", "expression"), bool)
        assert isinstance(mathv_equal(gold or "1", text), bool)


def test_time_bound_stops_a_slow_comparison():
    start = time.perf_counter()
    assert bounded_call(lambda: time.sleep(5) or True, default=False, seconds=0.2) is False
    assert time.perf_counter() - start < 2.0
    assert bounded_call(lambda: 1 / 0, default="fallback", seconds=1.0) == "fallback"


def test_math_verify_has_a_per_item_time_bound(monkeypatch):
    monkeypatch.setattr(matching, "MATH_VERIFY_SECONDS", 0.2)
    import math_verify

    matching._warm_up()  # the real grammars, before verify is replaced by a slow one
    monkeypatch.setattr(math_verify, "verify", lambda *a, **k: time.sleep(5) or True)
    start = time.perf_counter()
    assert answers_match("x^2+1", "(x+1)^2", "expression") is False
    assert time.perf_counter() - start < 2.0


def test_megabyte_response_is_scored_quickly():
    rng = random.Random(1)
    body = "".join(rng.choice("0123456789 ,.=+-\n{}$\\()abc") for _ in range(1_000_000))
    response = "The answer is (B) 4.5 because " + body + " so the answer is \\boxed{4.5}"
    start = time.perf_counter()
    extracted = extract_answer(response, ("3", "4.5"), "text")
    free = extract_answer(response, None, "float")
    assert answers_match(free.text, "4.5", "float", precision=1)
    assert isinstance(mathv_extract(response), str)
    assert extracted.text == "B"
    assert time.perf_counter() - start < 10.0
