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
from mathjax_vl.data.importers import ImageLoader, import_rows, read_rows
from mathjax_vl.data.records import RecordError

_OPTION_RE = re.compile(r"(?:^|;\s*|\n\s*)([A-H])[.:)]\s*")


def _where_field(row: Mapping[str, Any], key: str, where) -> Any:
    if key not in row or row[key] is None:
        raise RecordError(*where, "missing_field", f"missing required field {key!r}")
    return row[key]


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
        question=row.get("query") or _where_field(row, "question", where),
        answer=str(_where_field(row, "answer", where)),
        answer_type={"text": "free_form"}.get(answer_type, answer_type),
        images=(load_image(image, "image", where),) if image and load_image else (),
        choices=tuple(str(c) for c in choices) if choices else None,
        precision=int(row["precision"]) if row.get("precision") is not None else None,
        metadata={"question_type": question_type, "unit": row.get("unit")},
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
        metadata={"ID": str(row["ID"]), "key": str(row["key"])},
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
        return list(import_rows("mathverse", path, image_root))
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
