"""Load benchmark problems from the official files (local paths) or our generated datasets.

- mathverse: MathVerse testmini JSON + image folder (converter in mathjax_vl.data.importers);
- mathvista: MathVista testmini JSON (`pid, question, image, choices, unit, precision, answer,
  question_type, answer_type, query`) + image folder;
- wemath: We-Math testmini JSON (`ID, key, question, option, answer, image_path, ...`) + images;
- generic: a dataset of EvalProblem records written by `mathjax-vl datagen --recipe
  mathverse_eval` (or any TFDS dir of eval_problem records).
"""

from __future__ import annotations

import itertools
import os
import re
from collections.abc import Mapping
from typing import Any

from mathjax_vl.data import records as R
from mathjax_vl.data.importers import ImageLoader, import_rows, mathverse_row, read_rows
from mathjax_vl.data.records import RecordError

_OPTION_RE = re.compile(r"(?:^|;\s*|\n\s*)([A-H])[.:)]\s*")


def _where_field(row: Mapping[str, Any], key: str, where) -> Any:
    if key not in row or row[key] is None:
        raise RecordError(*where, "missing_field", f"missing required field {key!r}")
    return row[key]


_MATHVISTA_HINTS = {
    "multi_choice": "Please answer the question and provide the correct option letter, e.g., A, B, "
    "C, D, at the end.",
    "integer": "Please answer the question requiring an integer answer and provide the final "
    "value, e.g., 1, 2, 3, at the end.",
    "float1": "Please answer the question requiring a floating-point number with one decimal "
    "place and provide the final value, e.g., 1.2, 1.3, 1.4, at the end.",
    "float2": "Please answer the question requiring a floating-point number with two decimal "
    "places and provide the final value, e.g., 1.23, 1.34, 1.45, at the end.",
    "list": "Please answer the question requiring a Python list as an answer and provide the "
    "final list, e.g., [1, 2, 3], [1.2, 1.3, 1.4], at the end.",
}


def mathvista_query(row: Mapping[str, Any], where=("<row>", 0)) -> str:
    """The zero-shot prompt MathVista's tools build when a row has no `query` (the GitHub
    testmini.json): "Hint: ...", "Question: ... (Unit: u)", "Choices:" with "(A) text" lines."""
    question_type = _where_field(row, "question_type", where)
    answer_type = _where_field(row, "answer_type", where)
    if question_type == "multi_choice":
        key = "multi_choice"
    elif answer_type == "float":
        key = f"float{row.get('precision')}"
    else:
        key = answer_type
    if key not in _MATHVISTA_HINTS:
        raise RecordError(
            *where,
            "bad_value",
            f"no MathVista hint for question_type {question_type!r}, answer_type "
            f"{answer_type!r}, precision {row.get('precision')!r}",
        )
    question = f"Question: {_where_field(row, 'question', where)}"
    if row.get("unit"):
        question += f" (Unit: {row['unit']})"
    lines = [f"Hint: {_MATHVISTA_HINTS[key]}", question]
    if row.get("choices"):
        lines.append("Choices:")
        lines += [f"({chr(ord('A') + i)}) {c}" for i, c in enumerate(row["choices"])]
    return "\n".join(lines)


def mathvista_row(row: Mapping[str, Any], where, load_image: ImageLoader) -> R.EvalProblem:
    question_type = _where_field(row, "question_type", where)
    answer_type = _where_field(row, "answer_type", where)
    choices = row.get("choices") or None
    if question_type == "multi_choice" and not choices:
        raise RecordError(*where, "missing_field", "multi_choice problem without 'choices'")
    image = row.get("image")
    return R._build(
        R.EvalProblem,
        where,
        problem_id=str(_where_field(row, "pid", where)),
        version="",
        question=row.get("query") or mathvista_query(row, where),
        answer=str(_where_field(row, "answer", where)),
        answer_type={"text": "free_form"}.get(answer_type, answer_type),
        images=(load_image(image, "image", where),) if image and load_image else (),
        choices=tuple(str(c) for c in choices) if choices else None,
        precision=int(row["precision"]) if row.get("precision") is not None else None,
        metadata={
            "question_type": question_type,
            "answer_type": answer_type,
            "unit": row.get("unit"),
            **{k: v for k, v in dict(row.get("metadata") or {}).items() if v is not None},
        },
    )


def parse_wemath_options(option: str) -> tuple[str, ...]:
    """'A. 5cm; B. 6cm; C. 7cm' -> ('A. 5cm', 'B. 6cm', 'C. 7cm')."""
    starts = [m.start(1) for m in _OPTION_RE.finditer(option)]
    if not starts:
        return ()
    bounds = [*starts, len(option)]
    return tuple(option[a:b].strip().rstrip(";").strip() for a, b in itertools.pairwise(bounds))


def wemath_row(row: Mapping[str, Any], where, load_image: ImageLoader) -> R.EvalProblem:
    option = str(_where_field(row, "option", where))
    choices = parse_wemath_options(option)
    if not choices:
        raise RecordError(*where, "bad_value", f"cannot parse options from {option!r}")
    image = row.get("image_path")
    question = str(_where_field(row, "question", where))
    return R._build(
        R.EvalProblem,
        where,
        problem_id=f"{_where_field(row, 'key', where)}/{_where_field(row, 'ID', where)}",
        version=str(row["key"]),
        question=f"{question}\nOptions: {option}",
        answer=str(_where_field(row, "answer", where)).strip(),
        answer_type="multi_choice",
        images=(load_image(image, "image_path", where),) if image and load_image else (),
        choices=choices,
        metadata={
            "ID": str(row["ID"]),
            "key": str(row["key"]),
            "knowledge concept": row.get("knowledge concept"),
        },
    )


def load_benchmark(
    benchmark: str,
    path: str,
    image_root: str | None = None,
    split: str = "test",
    *,
    images: bool = True,
) -> list[R.EvalProblem]:
    """All problems of a benchmark file or dataset directory, in file order.

    `images=False` loads no image at all (scoring precomputed responses needs none)."""
    if benchmark == "mathverse":
        if images:
            return list(import_rows("mathverse", path, image_root))
        problems = []
        for index, row in read_rows(path):
            if isinstance(row, RecordError):
                raise row
            problems.append(mathverse_row(row, (path, index), None))
        return problems
    if benchmark in ("mathvista", "wemath"):
        convert = mathvista_row if benchmark == "mathvista" else wemath_row
        loader = (
            ImageLoader(image_root or os.path.dirname(os.path.abspath(path))) if images else None
        )
        problems = []
        for index, row in read_rows(path):
            if isinstance(row, RecordError):
                raise row
            problems.append(convert(row, (path, index), loader))  # {pid: row} is read as rows
        return problems
    if benchmark == "mathv":
        from mathjax_vl.eval.mathv import load_mathv

        return load_mathv(path, image_root, images=images)
    if benchmark == "generic":
        from mathjax_vl.data.storage import open_source

        source = open_source(path, split)
        problems = [source[i] for i in range(len(source))]
        for index, problem in enumerate(problems):
            if not isinstance(problem, R.EvalProblem):
                raise RecordError(
                    path,
                    index,
                    "bad_value",
                    f"expected eval_problem records, found {type(problem).__name__}",
                )
        return problems
    raise ValueError(
        f"unknown benchmark {benchmark!r}; expected mathverse|mathvista|wemath|mathv|generic"
    )
