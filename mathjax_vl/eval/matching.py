"""Answer equivalence: option letters exactly, numbers to a precision, the rest by math-verify.

Hand-written equivalence rules for expressions, fractions and intervals are where rule-based
judges usually go wrong; math-verify (symbolic comparison over sympy, gold first) did best in a
side-by-side test against GPT judges (REFERENCE.md section 4), so it decides everything that is
not a letter or a plain number. Its known false positives (factorial-sized numbers, some sign
cases) are avoided by comparing plain numbers ourselves. Every function here returns a verdict
for any string (inf, nan, 1e400, unicode, megabytes); math-verify runs under a time bound.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Sequence

from mathjax_vl.eval.extraction import find_choice_letter, numbers_in
from mathjax_vl.eval.safety import bounded_call, safe_float, safe_int_str, safe_round_str

ANSWER_TYPES = (
    "multi_choice",
    "integer",
    "float",
    "fraction",
    "expression",
    "interval",
    "list",
    "free_form",
)
MATH_VERIFY_SECONDS = 2.0  # time bound per math-verify comparison
MATH_VERIFY_MAX_CHARS = 400  # longer spans are not answers; math-verify is not run on them
_PLAIN_NUMBER = re.compile(r"^\s*-?\d+(?:\.\d+)?(?:e[+-]?\d+)?\s*$", re.IGNORECASE)
_FRACTION = re.compile(r"^\s*(-?\d+(?:\.\d+)?)\s*/\s*(\d+(?:\.\d+)?)\s*$")
_UNITS = re.compile(
    r"\s*(?:cm|mm|m|km|kg|g|units?|degrees?|°|\^\\circ|\\circ|\^\{\\circ\}|%|\\%|percent|"
    r"square units|sq\.? units|years?|dollars?|inches|feet|ft|meters?)\s*(?:\^?2|²|³)?\s*$",
    re.IGNORECASE,
)
# Unicode math -> the ASCII/LaTeX that math-verify parses (√3/2 -> sqrt(3)/2, x²+1 -> x^2+1).
_UNICODE = {
    "−": "-", "–": "-", "×": "*", "·": "*", "÷": "/", "π": "pi", "∞": "oo", "≤": "<=",
    "≥": ">=", "≠": "!=", "°": "", "’": "'", "，": ",", "：": ":", "（": "(", "）": ")",
}  # fmt: skip
_SUPERSCRIPTS = str.maketrans("⁰¹²³⁴⁵⁶⁷⁸⁹⁻⁺", "0123456789-+")
_SUPERSCRIPT_RUN = re.compile(r"[⁰¹²³⁴⁵⁶⁷⁸⁹⁻⁺]+")


def normalize_unicode_math(text: str) -> str:
    """√3/2 -> sqrt(3)/2, √{3} -> sqrt(3), x²+1 -> x^(2)+1, '−' -> '-', π -> pi."""
    text = _SUPERSCRIPT_RUN.sub(lambda m: "^(" + m.group(0).translate(_SUPERSCRIPTS) + ")", text)
    text = re.sub(r"√\s*\{([^{}]*)\}", r"sqrt(\1)", text)
    text = re.sub(r"√\s*\(([^()]*)\)", r"sqrt(\1)", text)
    text = re.sub(r"√\s*([\w.]+)", r"sqrt(\1)", text)
    for old, new in _UNICODE.items():
        text = text.replace(old, new)
    return text


def strip_math_delimiters(text: str) -> str:
    """'$x^2$' / '\\(x\\)' / '\\[x\\]' -> 'x' (golds are sometimes written in math mode)."""
    text = text.strip()
    for left, right in (("$$", "$$"), ("$", "$"), ("\\(", "\\)"), ("\\[", "\\]")):
        if text.startswith(left) and text.endswith(right) and len(text) > len(left) + len(right):
            return text[len(left) : -len(right)].strip()
    return text


def as_plain_number(text: str | None) -> float | None:
    """A float for '12', '-3.5', '3/4', '12 cm', '40°', '1,250', '45%'; None for anything
    symbolic. inf/nan come back as floats (1e400 is inf); callers treat them as no number."""
    if text is None or len(text) > 200:
        return None
    stripped = normalize_unicode_math(strip_math_delimiters(text))
    stripped = re.sub(r"\\(?:text|mathrm)\{([^{}]*)\}", r"\1", stripped)
    stripped = re.sub(r"(?<=\d),(?=\d{3}(?!\d))", "", stripped.replace("$", "").replace("\\$", ""))
    for _ in range(2):
        stripped = _UNITS.sub("", stripped).strip()
    stripped = re.sub(r"\\[dt]?frac\{(-?[\d.]+)\}\{([\d.]+)\}", r"\1/\2", stripped)
    if _PLAIN_NUMBER.match(stripped):
        return safe_float(stripped.strip())
    fraction = _FRACTION.match(stripped)
    if fraction:
        numerator, denominator = safe_float(fraction.group(1)), safe_float(fraction.group(2))
        if numerator is not None and denominator:
            return numerator / denominator
    return None


@functools.lru_cache(maxsize=1)
def _warm_up() -> None:
    """The first parse builds math-verify's grammars (seconds on a busy machine); do it once,
    outside the per-item time bound, so the bound measures the comparison itself."""
    from math_verify import parse, verify

    verify(
        parse("$x^2+1$", parsing_timeout=None),
        parse("$1$", parsing_timeout=None),
        timeout_seconds=None,
    )


def _math_verify_equal(gold: str, pred: str) -> bool:
    """Symbolic equality by math-verify; False on any failure or after MATH_VERIFY_SECONDS."""
    if len(gold) > MATH_VERIFY_MAX_CHARS or len(pred) > MATH_VERIFY_MAX_CHARS:
        return False

    import logging

    from math_verify import parse, verify  # imported outside the time bound (slow first import)

    logging.getLogger("math_verify").setLevel(logging.ERROR)  # we bound the time ourselves
    _warm_up()

    def compare() -> bool:
        def _parse(text: str):
            text = normalize_unicode_math(text.strip())
            wrapped = text if "$" in text or "\\boxed" in text else f"${text}$"
            parsed = parse(wrapped, parsing_timeout=None)
            return parsed if parsed else parse(text, parsing_timeout=None)

        gold_parsed, pred_parsed = _parse(gold), _parse(pred)
        if not gold_parsed or not pred_parsed:
            return False
        return bool(verify(gold_parsed, pred_parsed, timeout_seconds=None))

    return bool(bounded_call(compare, default=False, seconds=MATH_VERIFY_SECONDS))


def split_gold_answers(gold: str) -> list[str]:
    """A gold that lists several answers ("C\\nD", "A, C") -> each answer; else [gold]."""
    parts = [p.strip() for p in re.split(r"\s*\n\s*", gold.strip()) if p.strip()]
    if len(parts) > 1:
        return parts
    if re.fullmatch(r"[A-H](?:\s*[,;、]\s*[A-H])+", gold.strip()):
        return re.split(r"\s*[,;、]\s*", gold.strip())
    return [gold.strip()]


def _letters_in(pred: str, num_choices: int) -> set[str]:
    letters = "".join(chr(ord("A") + i) for i in range(min(num_choices, 26)))
    return set(re.findall(rf"(?<![A-Za-z])([{letters}])(?![A-Za-z])", pred.upper()))


def _numbers_equal(gold: float, pred: float, answer_type: str, precision: int | None) -> bool:
    if not (math.isfinite(gold) and math.isfinite(pred)):
        return False
    if answer_type == "integer":
        return pred == round(pred) and round(pred) == round(gold)
    if precision is not None:
        return safe_round_str(pred, precision) == safe_round_str(gold, precision)
    return math.isclose(pred, gold, rel_tol=1e-6, abs_tol=1e-9)


def answers_match(
    pred: str | None,
    gold: str,
    answer_type: str = "free_form",
    *,
    choices: Sequence[str] | None = None,
    precision: int | None = None,
) -> bool:
    """Whether an extracted answer equals the gold answer under the benchmark's answer type.

    A multiple-choice gold naming several letters ("C\\nD") needs every one of them and no other.
    """
    if answer_type not in ANSWER_TYPES:
        raise ValueError(f"answer_type {answer_type!r} is not one of {ANSWER_TYPES}")
    if pred is None or not isinstance(pred, str) or not pred.strip():
        return False
    gold = str(gold)
    if answer_type == "multi_choice":
        num_choices = len(choices) if choices else 26
        golds = split_gold_answers(gold)
        if len(golds) > 1:
            wanted = {(find_choice_letter(g, num_choices) or g.upper()) for g in golds}
            return _letters_in(pred, num_choices) == wanted
        gold_letter = find_choice_letter(gold, num_choices) or gold.strip().upper()
        pred_letter = find_choice_letter(pred, num_choices)
        return pred_letter is not None and pred_letter == gold_letter
    gold = strip_math_delimiters(gold)
    gold_number, pred_number = as_plain_number(gold), as_plain_number(pred)
    if gold_number is not None and pred_number is not None:
        return _numbers_equal(gold_number, pred_number, answer_type, precision)
    if gold_number is not None and pred_number is None:  # "x = 5", "Finally 5", "5 cm²"
        numbers = numbers_in(pred)
        if len(numbers) == 1 and (value := safe_float(numbers[0])) is not None:
            return _numbers_equal(gold_number, value, answer_type, precision)
    if normalize_unicode_math(gold).replace(" ", "") == normalize_unicode_math(pred).replace(
        " ", ""
    ).strip("$"):
        return True
    return _math_verify_equal(gold, pred)


# --- MathVista normalisation -------------------------------------------------------------------


def levenshtein(a: str, b: str) -> int:
    """Edit distance (insert/delete/substitute, unit costs)."""
    a, b = a[:300], b[:300]  # bounded cost; longer texts are never an option's spelling
    previous = list(range(len(b) + 1))
    for i, char_a in enumerate(a, start=1):
        current = [i]
        for j, char_b in enumerate(b, start=1):
            current.append(
                min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (char_a != char_b))
            )
        previous = current
    return previous[-1]


def nearest_choice(text: str, choices: Sequence[str]) -> str:
    """The option with the smallest edit distance to `text` (the first on ties)."""
    distances = [levenshtein(text, choice) for choice in choices]
    return choices[distances.index(min(distances))]


def mathvista_normalize(
    extraction: str | None,
    *,
    question_type: str,
    answer_type: str,
    choices: Sequence[str] | None = None,
    precision: int | None = None,
) -> str | None:
    """MathVista's normalisation of an extracted answer before exact match, made total.

    multi_choice: a letter maps to its option text, an option's own text to itself, anything
    else to the option with the smallest edit distance; integer: str(int(x)); float:
    str(round(x, precision)); list: "[a, b]". None when the extraction has no value (also for
    inf/nan, where the official code raises).
    """
    if extraction is None:
        return None
    extraction = str(extraction).strip()
    if question_type == "multi_choice":
        if not choices:
            raise ValueError("a multi_choice MathVista problem needs its choices")
        if extraction in choices:  # option texts such as "(b)" are answers, not letters
            return extraction
        letter = find_choice_letter(extraction, len(choices))
        if letter is not None and len(extraction) <= 3:
            return choices[ord(letter) - ord("A")]
        return nearest_choice(extraction, choices)
    if answer_type == "list":
        values = numbers_in(extraction)
        return "[" + ", ".join(_list_item(v) for v in values) + "]" if values else None
    value = safe_float(extraction)
    if value is None:
        value = as_plain_number(extraction)
    if answer_type == "integer":
        return safe_int_str(value)
    if answer_type == "float":
        return safe_round_str(value, int(precision or 0))
    return extraction


def _list_item(value: str) -> str:
    number = safe_float(value)
    if number is not None and math.isfinite(number) and number == int(number) and "." not in value:
        return str(int(number))
    return value
