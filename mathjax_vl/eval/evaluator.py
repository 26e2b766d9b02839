"""Evaluation end to end: problems -> responses (a model, or a file of precomputed ones) -> scores
-> report files. Returns the benchmark summary (the dict written to summary.json).

Responses are always written next to the report (responses.jsonl: problem_id, version,
response), so a run can be rescored later with `mathjax-vl eval --responses` and no model.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from mathjax_vl.data.records import EvalProblem
from mathjax_vl.eval.benchmarks import load_benchmark
from mathjax_vl.eval.report import write_report
from mathjax_vl.eval.scoring import BENCHMARKS, score_all, summarize

RESPONSES_FILE = "responses.jsonl"


def load_problems(
    benchmark: str,
    path: str,
    image_root: str | None = None,
    split: str = "test",
    limit: int | None = None,
    *,
    images: bool = True,
) -> list[EvalProblem]:
    """Problems of a benchmark, the first `limit` of them when given.

    A MathVerse/MathVista/We-Math benchmark whose `path` is a dataset DIRECTORY (our generated
    EvalProblem records, e.g. `datagen --recipe mathverse_eval`) is read as records and scored
    with that benchmark's metrics, so a generated MathVerse-style set gets MathVerse's numbers.
    """
    if benchmark not in BENCHMARKS:
        raise ValueError(f"unknown benchmark {benchmark!r}; expected one of {'|'.join(BENCHMARKS)}")
    if not os.path.exists(path):
        raise FileNotFoundError(f"--data {path}: no such file or directory")
    if images and image_root is not None and not os.path.isdir(image_root):
        raise FileNotFoundError(f"--image-root {image_root}: not a directory")
    source = "generic" if os.path.isdir(path) else benchmark
    problems = load_benchmark(source, path, image_root, split, images=images)
    if limit is not None:
        if limit < 1:
            raise ValueError(f"--limit must be >= 1, got {limit}")
        problems = problems[:limit]
    if not problems:
        raise ValueError(f"{path}: no problems to evaluate")
    return problems


def read_responses(path: str, problems: Sequence[EvalProblem]) -> list[str]:
    """Responses for `problems` (in their order) from a JSONL file of
    {problem_id, version, response} rows; every problem must have exactly one."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"--responses {path}: no such file")
    table: dict[tuple[str, str], str] = {}
    with open(path) as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}:{line_no}: not valid JSON ({err})") from err
            if not isinstance(row, dict):
                raise ValueError(f"{path}:{line_no}: expected a JSON object, found {row!r:.60}")
            for key in ("problem_id", "response"):
                if key not in row:
                    raise ValueError(f"{path}:{line_no}: missing field {key!r}")
            if not isinstance(row["response"], str):
                raise ValueError(
                    f"{path}:{line_no}: field 'response' must be a string, found "
                    f"{type(row['response']).__name__}"
                )
            key = (str(row["problem_id"]), str(row.get("version") or ""))
            if key in table:
                raise ValueError(
                    f"{path}:{line_no}: second response for problem_id {key[0]!r} version "
                    f"{key[1]!r}"
                )
            table[key] = row["response"]
    responses = []
    for index, problem in enumerate(problems):
        key = (problem.problem_id, problem.version or "")
        if key not in table:
            raise KeyError(
                f"{path}: no response for problem {index} (problem_id {key[0]!r}, version "
                f"{key[1]!r})"
            )
        responses.append(table[key])
    return responses


def write_responses(
    problems: Sequence[EvalProblem], responses: Sequence[str], path: str | Path
) -> None:
    with open(path, "w") as f:
        for problem, response in zip(problems, responses):
            row = {"problem_id": problem.problem_id, "version": problem.version}
            f.write(json.dumps({**row, "response": response}) + "\n")


def evaluate(
    problems: Sequence[EvalProblem],
    benchmark: str,
    out_dir: str | Path,
    *,
    responses: Sequence[str] | None = None,
    engine: Any = None,
    extractor: Any = None,
    progress: bool = False,
    processes: Any = None,
) -> dict[str, Any] | None:
    """Scores `responses` (or those `engine` generates) and writes the report.

    With an engine, generation is resumable and shared between processes
    (mathjax_vl.eval.shards): responses are appended to `<out>/parts/` as batches finish, a rerun
    generates only the problems not answered yet, and `processes` (a shards.Processes; default
    from jax.distributed) each take a share. Only process 0 scores and writes the report; the
    others return None.
    `extractor` (a `mathverse.ModelExtractor`) makes step 1 of MathVerse's protocol with a local
    model; its extractions are judged by rules."""
    if (responses is None) == (engine is None):
        raise ValueError("pass exactly one of responses or engine")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if responses is None:
        responses = generate_responses(problems, engine, out, progress, processes)
        if responses is None:
            return None
    write_responses(problems, responses, out / RESPONSES_FILE)
    extractions = extractor.extract(responses, progress=progress) if extractor else None
    items = score_all(problems, responses, benchmark, extractions)
    summary = summarize(items, benchmark)
    if engine is not None:
        summary["generation"] = generation_settings(engine)
    if extractor is not None:
        summary["extractor"] = {"model": extractor.engine.handle.source}
    summary["files"] = write_report(items, summary, out)
    summary["files"]["responses"] = str(out / RESPONSES_FILE)
    (out / "summary.json").write_text(
        json.dumps(_json_ready(summary), indent=2, sort_keys=True)
    )  # again, now listing the files
    return summary


def generation_settings(engine: Any) -> dict[str, Any]:
    """The model and every set generation knob (summary.json's "generation"; a resumed run must
    match them)."""
    return {
        "model": engine.handle.source,
        **{k: v for k, v in vars(engine.config).items() if v is not None},
    }


def problem_key(problem: EvalProblem) -> str:
    """The identity of a problem in a resumable run's part files."""
    return json.dumps([problem.problem_id, problem.version or ""])


def generate_responses(
    problems: Sequence[EvalProblem],
    engine: Any,
    out_dir: str | Path,
    progress: bool = False,
    processes: Any = None,
) -> list[str] | None:
    """Responses to `problems` (in their order) on process 0, None on the others; problems
    already answered in `<out_dir>/parts/` are not generated again."""
    from mathjax_vl.eval.generation import problem_request
    from mathjax_vl.eval.shards import Processes, run_items

    keys = [problem_key(p) for p in problems]

    def work(indices: list[int], append) -> None:
        def save(rows: list[int], generations: list[Any]) -> None:
            append(
                [
                    {"index": indices[r], "key": keys[indices[r]], "response": g.text}
                    for r, g in zip(rows, generations)
                ]
            )

        requests = [problem_request(problems[i]) for i in indices]
        engine.generate(requests, progress=progress, on_batch=save)

    settings = generation_settings(engine)
    processes = processes or Processes.from_jax()
    rows = run_items(keys, out_dir, "responses", work, processes, settings)
    return None if rows is None else [row["response"] for row in rows]


def _json_ready(value: Any) -> Any:
    import math

    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    return value
