"""Agreement of our rule-based verdicts with the official judges' on real model responses.

    python benchmarks/eval_agreement.py [--dev /work/shared/evaldev] [--show 5] [--kind KIND]

For every development file (MathVista runs with the official `true_false`, MATH-V runs with the
official `correct`; see the dev folder's README), scores each response with
`mathjax_vl.eval.scoring.score_item` (no images, no GPT) and prints one Markdown row per file:
items, verdict agreement, official accuracy, our accuracy, and the disagreements by kind:

- declined: the response commits to no answer (a refusal, "none of the options"); MathVista's
  official pipeline still picks an option (the one nearest GPT's extraction, which is "N/A" or
  an echo of the refusal, run by run), so its verdict there is arbitrary;
- official_quirk: the official normalisation of the official extraction does not give the
  option the extraction names (letter-like option texts "(b)", "30√3m" vs "30√{3}m"), or MATH-V's
  judge rejects a right value because the option is written in LaTeX degrees ("$108^{\\circ}$");
- extraction: we read a different answer than the official extractor;
- judge: we read the same answer and judge it differently.

`--show N` prints N examples of each kind (or of `--kind`).
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import sys
import time
from collections import Counter
from dataclasses import dataclass, field

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))


@dataclass
class FileResult:
    name: str
    items: int = 0
    agree: int = 0
    official_correct: int = 0
    ours_correct: int = 0
    declined: int = 0  # items where the response commits to no answer
    declined_agree: int = 0
    kinds: Counter = field(default_factory=Counter)
    examples: dict = field(default_factory=dict)
    seconds: float = 0.0


def _mathvista_kind(row: dict, problem, item) -> str:
    from mathjax_vl.eval.matching import mathvista_normalize

    if item.extracted is None:
        return "declined"
    ours_of_official = mathvista_normalize(
        row.get("extraction"),
        question_type=row["question_type"],
        answer_type=problem.answer_type,
        choices=problem.choices,
        precision=problem.precision,
    )
    if (ours_of_official == problem.answer) != bool(row["true_false"]):
        return "official_quirk"
    return "extraction"


def score_mathvista(path: str) -> FileResult:
    from mathjax_vl.eval.benchmarks import load_benchmark
    from mathjax_vl.eval.scoring import score_item

    rows = json.load(open(path, encoding="utf-8"))
    result = FileResult(os.path.relpath(path, os.path.dirname(os.path.dirname(path))))
    start = time.perf_counter()
    for problem in load_benchmark("mathvista", path, images=False):
        row = rows[problem.problem_id]
        item = score_item(problem, row["response"], "mathvista")
        _count(result, item.correct, bool(row["true_false"]))
        if item.extracted is None:
            result.declined += 1
            result.declined_agree += item.correct == bool(row["true_false"])
        if item.correct != bool(row["true_false"]):
            _note(result, _mathvista_kind(row, problem, item), problem.problem_id, row, item)
    result.seconds = time.perf_counter() - start
    return result


def score_mathv(path: str, test_path: str) -> FileResult:
    from mathjax_vl.eval.mathv import load_mathv
    from mathjax_vl.eval.scoring import score_item

    problems = {p.problem_id: p for p in load_mathv(test_path, images=False)}
    result = FileResult(os.path.relpath(path, os.path.dirname(os.path.dirname(path))))
    start = time.perf_counter()
    with open(path, encoding="utf-8") as f:
        for line in f:
            row = json.loads(line)
            item = score_item(problems[str(row["id"])], row["response"], "mathv")
            _count(result, item.correct, bool(row["correct"]))
            if item.correct != bool(row["correct"]):
                same = item.extracted == row.get("model_answer")
                kind = "official_quirk" if same and "circ" in str(item.metadata) else None
                if kind is None:
                    choices = problems[str(row["id"])].choices or ()
                    kind = "official_quirk" if same and any("circ" in c for c in choices) else None
                kind = kind or ("judge" if same else "extraction")
                _note(result, kind, row["id"], row, item)
    result.seconds = time.perf_counter() - start
    return result


def _count(result: FileResult, ours: bool, official: bool) -> None:
    result.items += 1
    result.agree += ours == official
    result.official_correct += official
    result.ours_correct += ours


def _note(result: FileResult, kind: str, item_id, row: dict, item) -> None:
    result.kinds[kind] += 1
    official_answer = row.get("extraction", row.get("model_answer"))
    result.examples.setdefault(kind, []).append(
        (item_id, item.answer, official_answer, item.extracted, item.correct, row["response"])
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--dev", default="/work/shared/evaldev")
    parser.add_argument("--show", type=int, default=0, help="examples per disagreement kind")
    parser.add_argument("--kind", default=None, help="only show this kind")
    args = parser.parse_args()
    results = [score_mathvista(p) for p in sorted(glob.glob(f"{args.dev}/mathvista/*.json"))]
    test_path = os.path.join(args.dev, "mathv", "test.jsonl")
    for path in sorted(glob.glob(f"{args.dev}/mathv/*.jsonl")):
        if os.path.basename(path) not in ("test.jsonl", "testmini.jsonl"):
            results.append(score_mathv(path, test_path))
    print(
        "| file | items | agreement % | agreement % on answered (n) | official acc % | our acc % "
        "| disagreements by kind | s |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | --- | ---: |")
    for r in results:
        kinds = ", ".join(f"{k} {v}" for k, v in sorted(r.kinds.items())) or "-"
        kept = r.items - r.declined
        print(
            f"| {r.name} | {r.items} | {100 * r.agree / r.items:.1f} | "
            f"{100 * (r.agree - r.declined_agree) / kept:.1f} ({kept}) | "
            f"{100 * r.official_correct / r.items:.1f} | {100 * r.ours_correct / r.items:.1f} | "
            f"{kinds} | {r.seconds:.1f} |"
        )
    for r in results:
        for kind, examples in sorted(r.examples.items()):
            if args.kind not in (None, kind):
                continue
            for item_id, gold, official, ours, correct, response in examples[: args.show]:
                print(
                    f"\n--- {r.name} #{item_id} [{kind}] gold={gold!r} official={official!r} "
                    f"ours={ours!r} ours_correct={correct}"
                )
                print(response[-600:])


if __name__ == "__main__":
    main()
