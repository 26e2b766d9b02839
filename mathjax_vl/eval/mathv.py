"""MATH-Vision (MATH-V): loader, the official rule-based judge mirrored, and its report.

MATH-V's official judge (mathllm/MATH-V `evaluation/`) is rule-based, so unlike MathVista and
MathVerse there is no GPT step to replace: we reimplement its rules (written from reading the
official code, not copied) so our verdicts equal the published ones.

- answer finding: a trailing option letter (" C." / "(C)\\n" at the start), the number after the
  last "is ", the text after the last "the answer is"-style phrase (first line, first sentence),
  the last `\\boxed{}`; then MATH-style normalisation (units, degrees, `\\frac`, `\\sqrt`, the
  value after "=" or "\\approx"), all lower-cased;
- judging: equal strings, equal tuples after evaluating each element, or equal numeric values
  rounded to 2 decimals; a multiple-choice gold is accepted as its letter or as its option text.

The official code evaluates `latex2sympy` output with Python's `eval`; we evaluate the sympy
expression itself (no `eval` of model text) and bound its time per item.
"""

from __future__ import annotations

import functools
import os
import re
from collections import defaultdict
from collections.abc import Mapping, Sequence
from typing import Any

from mathjax_vl.data import records as R
from mathjax_vl.data.importers import ImageLoader, read_rows
from mathjax_vl.data.records import RecordError
from mathjax_vl.eval.safety import bounded_call, safe_float

MATHV_LETTERS = "ABCDE"
_ANSWER_FLAGS = (
    "the final answer is",
    "the answer is",
    "the correct answer is",
    "the answer should be",
)


# --- loading -------------------------------------------------------------------------------------


def mathv_row(
    row: Mapping[str, Any], where: tuple[str, Any], load_image: ImageLoader | None
) -> R.EvalProblem:
    """One MATH-V test/testmini row (`id, question, options, answer, level, subject, image`)."""
    for key in ("id", "question", "answer", "subject", "level"):
        if row.get(key) is None:
            raise RecordError(*where, "missing_field", f"missing required field {key!r}")
    options = row.get("options") or []
    if not isinstance(options, list):
        raise RecordError(
            *where, "bad_value", f"field 'options': expected a list, found {options!r:.60}"
        )
    answer = str(row["answer"]).strip()
    if options and (len(answer) != 1 or not "A" <= answer <= chr(ord("A") + len(options) - 1)):
        raise RecordError(
            *where, "bad_value", f"field 'answer': expected an option letter, found {answer!r}"
        )
    question = str(row["question"])
    if options:
        letters = "\n".join(f"({chr(ord('A') + i)}) {o}" for i, o in enumerate(options))
        question = f"{question}\nChoices:\n{letters}"
    image = row.get("image")
    return R._build(
        R.EvalProblem,
        where,
        problem_id=str(row["id"]),
        version="",
        question=question,
        answer=answer,
        answer_type="multi_choice" if options else "free_form",
        images=(load_image(image, "image", where),) if image and load_image else (),
        choices=tuple(str(o) for o in options) or None,
        metadata={"subject": str(row["subject"]), "level": int(row["level"])},
    )


def load_mathv(
    path: str, image_root: str | None = None, *, images: bool = True
) -> list[R.EvalProblem]:
    """MATH-V `test.jsonl` or `testmini.jsonl` (either split; rows are the same layout)."""
    loader = ImageLoader(image_root or os.path.dirname(os.path.abspath(path))) if images else None
    problems = []
    for index, row in read_rows(path):
        if isinstance(row, RecordError):
            raise row
        if not isinstance(row, Mapping):
            raise RecordError(
                path, index, "bad_format", f"expected a JSON object, found {row!r:.60}"
            )
        problems.append(mathv_row(row, (path, index), loader))
    return problems


# --- answer finding (official rules) -------------------------------------------------------------


def _trailing_letter(text: str) -> str:
    for letter in MATHV_LETTERS:
        endings = (f" {letter}.", f" ({letter}).")
        starts = (f"{letter}\n", f"({letter})\n", f"({letter}) {letter}\n")
        if text.endswith(endings) or text.startswith(starts):
            text = letter
    return text


def _after_flags(text: str) -> str:
    for flag in _ANSWER_FLAGS:
        for spelled in (flag, flag.replace("the", "The")):
            if spelled in text:
                text = text.split(spelled)[-1].strip().split("\n")[0].split(". ")[0]
            else:
                text = text.strip()
    return text


def mathv_extract(response: str) -> str:
    """The answer string MATH-V's judge reads from `response` (lower-case, normalised)."""
    text = _trailing_letter(str(response).strip())
    tail = text.split("is ")[-1].rstrip(".")
    if safe_float(tail) is not None:
        text = tail
    if "oxed{" not in text:
        text = _after_flags(text)
    elif text.count("oxed{") > 1:
        text = "\\boxed{" + text.split("oxed{")[-1]
    text = find_math_answer(text)
    for letter in "abcde":
        text = text.replace(f"({letter})", letter).replace("{" + letter + "}", letter)
    return text.rstrip(".").lstrip(":").strip()


def find_math_answer(text: str) -> str:
    """Boxed content (greedy to the last brace) or the whole text, then MATH normalisation."""
    s = text.lower().replace("{}", "")
    boxed = re.findall(r"oxed\{(.*)\}", s, flags=re.S)
    ans = boxed[-1] if boxed else s
    close, open_ = ans.find("}"), ans.find("{")
    if close != -1 and (open_ == -1 or close < open_):
        ans = ans.split("}")[0]
    ans = ans.split("=")[-1].split("\\approx")[-1]
    for old, new in (
        (" ", ""), ("\\,", ""), ("∞", "\\infty"), ("+\\infty", "\\infty"), ("\\\\", "\\"),
        ("\n", ""), ("\\text", ""), ("\\mbox", ""), ("bmatrix", "pmatrix"), ("\\left", ""),
        ("\\right", ""), ("^{\\circ}", ""), ("^\\circ", ""), ("{m}^3", ""), ("m^3", ""),
        ("{units}", ""), ("units", ""), ("{km}", ""), ("km", ""),
    ):  # fmt: skip
        ans = ans.replace(old, new)
    return strip_math_string(ans)


def _fix_sqrt(s: str) -> str:
    parts = s.split("\\sqrt")
    out = parts[0]
    for part in parts[1:]:
        out += "\\sqrt{" + part[0] + "}" + part[1:] if part and part[0] != "{" else "\\sqrt" + part
    return out


def _fix_fracs(s: str) -> str:
    parts = s.split("\\frac")
    out = parts[0]
    for part in parts[1:]:
        out += "\\frac"
        if part[:1] == "{":
            out += part
            continue
        if len(part) < 2:
            return s
        a, b, rest = part[0], part[1], part[2:]
        out += "{" + a + "}{" + b + "}" + rest if b != "{" else "{" + a + "}" + b + rest
    return out


def _fix_a_slash_b(s: str) -> str:
    pieces = s.split("/")
    if len(pieces) != 2:
        return s
    a, b = pieces
    if re.fullmatch(r"-?\d+", a) and re.fullmatch(r"-?\d+", b) and s == f"{int(a)}/{int(b)}":
        return "\\frac{" + a + "}{" + b + "}"
    return s


def strip_math_string(s: str) -> str:
    """MATH-style normalisation as MATH-V applies it (order matters; mirrors the official)."""
    for old, new in (
        ("\n", ""), ("\\!", ""), ("\\\\", "\\"), ("tfrac", "frac"), ("dfrac", "frac"),
        ("\\left", ""), ("\\right", ""), ("^{\\circ}", ""), ("^\\circ", ""), ("\\$", ""), ("$", ""),
    ):  # fmt: skip
        s = s.replace(old, new)
    s = s.split("\\text{ ")[0]
    s = s.replace("\\%", "").replace(" .", " 0.").replace("{.", "{0.")
    if not s:
        return s
    if s[0] == ".":
        s = "0" + s
    if len(s.split("=")) == 2:
        s = s.split("=")[-1]
    if len(s.split("\\approx")) == 2:
        s = s.split("\\approx")[-1]
    if "sqrt" in s:
        s = _fix_sqrt(s)
    s = s.replace(" ", "")
    if "sqrt" in s:
        s = _fix_fracs(s)
    if s == "0.5":
        s = "\\frac{1}{2}"
    return _fix_a_slash_b(s)


# --- judging (official rules) --------------------------------------------------------------------


@functools.lru_cache(maxsize=1)
def _warm_up() -> None:
    """The first conversion builds the LaTeX parser; once, outside the per-item time bound."""
    from latex2sympy2_extended import latex2sympy

    latex2sympy("\\frac{1}{2}")


def _numeric_value(text: str) -> int | float | None:
    """The value of a LaTeX/plain expression as the official `eval(str(latex2sympy(x)))` gives it:
    an int for integers, a float otherwise; None when symbolic, unparsable, or too slow."""

    import sympy  # imported outside the time bound (slow first import)
    from latex2sympy2_extended import latex2sympy

    _warm_up()

    def convert() -> int | float | None:
        expr = latex2sympy(text)
        if not isinstance(expr, sympy.Expr) or expr.free_symbols or expr.has(sympy.E, sympy.I):
            return None
        if expr.is_Integer:
            return int(expr)
        value = complex(expr.evalf(30))
        return value.real if value.imag == 0 else None

    text = _balanced_prefix(text)
    if not text or len(text) > 400:
        return None
    return bounded_call(convert, default=None, seconds=2.0)


def _balanced_prefix(text: str) -> str:
    """`text` up to its first unmatched "}": the official LaTeX parser stops there and reads the
    prefix (so "\\frac{3}{2}}cm. the answer is" is 3/2); so do we."""
    depth = 0
    for pos, char in enumerate(text):
        depth += (char == "{") - (char == "}")
        if depth < 0:
            return text[:pos]
    return text


def _round2(value: int | float) -> int | float | None:
    try:
        return round(value, 2)
    except (OverflowError, ValueError):
        return None


def _eval_tuple(s: str) -> str:
    parts = s[1:-1].split(",")
    if len(s) < 2 or len(parts) < 2 or (s[0], s[-1]) not in (("(", ")"), ("[", "]")):
        return s
    out = []
    for part in parts:
        if "infty" in part or part in ("a", "-a"):
            out.append(part)
            continue
        value = _numeric_value(part)
        rounded = None if value is None else _round2(value)
        if rounded is None:
            return s
        out.append(str(rounded))
    return s[0] + ",".join(out) + s[-1]


def mathv_equal(gold: str, answer: str) -> bool:
    """The official `is_equal`: string, tuple, then 2-decimal numeric equality."""
    gold, answer = str(gold).lower(), str(answer).lower()
    if not gold.replace(" ", "") or not answer.replace(" ", ""):
        return False
    if gold.strip() == answer.strip():
        return True
    gold, answer = _eval_tuple(gold), _eval_tuple(answer)
    if gold == answer:
        return True
    gold_value, answer_value = _numeric_value(gold), _numeric_value(answer)
    if gold_value is None or answer_value is None:
        return False
    rounded = _round2(gold_value), _round2(answer_value)
    return rounded[0] is not None and rounded[0] == rounded[1]


def mathv_judge(extracted: str, gold: str, choices: Sequence[str] | None) -> bool:
    """Correct when the answer equals the gold letter, or the gold option's text."""
    if mathv_equal(gold, extracted):
        return True
    if choices:
        index = ord(gold.strip()[:1] or "?") - ord("A")
        if 0 <= index < len(choices):
            return mathv_equal(choices[index], extracted)
    return False


# --- report --------------------------------------------------------------------------------------


def mathv_report(rows: Sequence[tuple[str, int, bool]]) -> dict[str, dict[str, float | int]]:
    """MATH-V's breakdown from (subject, level, correct): overall, per level, per subject, per
    subject x level (the keys the official script writes: '-all', '-level1', 'algebra',
    'algebra_level1', '-level1_algebra'); each {accuracy in [0, 1], correct, total}."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for subject, level, correct in rows:
        keys = (
            "-all",
            f"-level{level}",
            subject,
            f"{subject}_level{level}",
            f"-level{level}_{subject}",
        )
        for key in keys:
            counts[key][0] += bool(correct)
            counts[key][1] += 1
    return {
        key: {"accuracy": c / t if t else 0.0, "correct": c, "total": t}
        for key, (c, t) in sorted(counts.items())
    }


def mathv_result_strings(report: Mapping[str, Mapping[str, float | int]]) -> dict[str, str]:
    """The report as the official `*_result.json` writes it: "384/3040=12.63%"."""
    out = {}
    for key, cell in report.items():
        correct, total = int(cell["correct"]), int(cell["total"])
        out[key] = f"{correct}/{total}=" + (f"{round(100 * correct / total, 2)}%" if total else "0")
    return out
