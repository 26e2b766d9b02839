"""Parallel, deterministic generation of datasets from problem families.

Flow for one work item (all inside a warm sandbox worker, `build_item`): seed from the item index
and the split's salted stream -> problem (retrying seeds whose content belongs to another split) ->
answer re-check -> versions for the recipe (content rules checked) -> each distinct figure program
rendered under the sandbox guard -> image gates (blank, clipped) and a perceptual hash -> records.
The parent only de-duplicates (spec hash, image hash) and writes, IN ITEM-INDEX ORDER, so the
output depends on the seed alone: not on the number of workers nor on completion order.

Exactly `n` items are accepted: the first `n` by index (items are processed in chunks, sized by
the rejection rate so far). Records stream to storage; memory stays bounded at any `n`.

Recipes and their records (mathjax_vl.data.records). A training recipe is named by the objective
it feeds (mathjax_vl.train.tasks: the same name is `task.name` and the pipeline's objective);
the older names stay as aliases (RECIPE_ALIASES):
- puma_kl (was puma_pairs): PumaPair (two of Math-PUMA's four versions; the one with more image
  content is the vision-rich side; one shared chain-of-thought solution);
- mathverse_eval: six EvalProblem records per problem (MathVerse's five scored versions plus its
  separately reported Text Only), multiple-choice with distractors from typical mistakes or
  free-form;
- contrastive (was captions): ImageCaption (fully labelled figure, MAVIS-style caption) for
  CLIP-Math;
- multimodal_sft (was instruct): MultimodalConversation (figure + question -> chain-of-thought
  solution);
- image_to_code (was image_code): ImageCode (figure + the Python program that drew it) for
  MathCoder-VL.

`_preference` builds PreferencePair records (chosen = the verified solution, rejected = a full
solution on a typical mistake the verifier rejects); it becomes the `preference` recipe when the
DPO objective module registers that name (docs/notes/dpo.md).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from mathjax_vl.datagen import quality as Q
from mathjax_vl.datagen import versions as V
from mathjax_vl.datagen.sandbox import FigureExecutor, SandboxConfig

RECIPES = (
    "puma_kl",
    "mathverse_eval",
    "contrastive",
    "multimodal_sft",
    "image_to_code",
)
RECIPE_ALIASES = {
    "puma_pairs": "puma_kl",
    "captions": "contrastive",
    "instruct": "multimodal_sft",
    "image_code": "image_to_code",
}
DEFAULT_SPLIT = {
    "puma_kl": "train",
    "mathverse_eval": "test",
    "contrastive": "train",
    "multimodal_sft": "train",
    "image_to_code": "train",
}
MAX_EXAMPLES_PER_REASON = 3
MATHVERSE_NAMES = {
    "text_only": "Text Only",
    "text_dominant": "Text Dominant",
    "text_lite": "Text Lite",
    "vision_intensive": "Vision Intensive",
    "vision_dominant": "Vision Dominant",
    "vision_only": "Vision Only",
}


@dataclasses.dataclass(frozen=True)
class DatagenConfig:
    recipe: str
    n: int
    seed: int = 0
    workers: int = 1
    split: str | None = None  # None: DEFAULT_SPLIT[recipe]
    # None: every registered family, in turn; an entry may be "family/subtype" (that subtype only)
    families: tuple[str, ...] | None = None
    multiple_choice_fraction: float = 0.5  # mathverse_eval / instruct: share asked as choices
    max_split_attempts: int = 128  # seeds per item to find content of this split (5%: 0.14% fail)
    max_items_factor: float = 20.0  # give up after n * this + 100 items (a broken family)
    chunk_items: int = 512  # items in flight per chunk: bounds memory (records stream out)
    max_previews: int = 256  # previews kept (index order) for the contact sheet
    quality: Q.QualityConfig = dataclasses.field(default_factory=Q.QualityConfig)
    sandbox: SandboxConfig = dataclasses.field(default_factory=SandboxConfig)
    progress: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "recipe", RECIPE_ALIASES.get(self.recipe, self.recipe))
        if self.recipe not in RECIPES:
            raise ValueError(
                f"unknown recipe {self.recipe!r}; expected one of {RECIPES} (or an older name "
                f"{sorted(RECIPE_ALIASES)})"
            )
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if self.families is not None:
            from mathjax_vl.datagen.families import resolve

            if not self.families:
                raise ValueError("families must name at least one family (or be None for all)")
            for entry in self.families:
                resolve(entry)  # an unknown family or subtype fails here, not in a worker
        if self.split is not None and self.split not in Q.SPLIT_BUCKETS:
            raise ValueError(
                f"unknown split {self.split!r}; expected one of {list(Q.SPLIT_BUCKETS)}"
            )

    @property
    def resolved_split(self) -> str:
        return self.split or DEFAULT_SPLIT[self.recipe]


@dataclasses.dataclass
class DatagenResult:
    """Statistics of a run (and its records when collected by `generate`)."""

    records: list[Any] = dataclasses.field(default_factory=list)
    previews: list[dict[str, Any]] = dataclasses.field(default_factory=list)  # png, version, ...
    rejections: Q.RejectionCounter = dataclasses.field(default_factory=Q.RejectionCounter)
    items_tried: int = 0
    accepted: int = 0
    split_retries: int = 0
    records_written: int = 0
    # First few rejected items per reason: {"index", "family", "subtype", "seed", "detail"}.
    examples: dict[str, list[dict[str, Any]]] = dataclasses.field(default_factory=dict)

    def report(self) -> str:
        lines = [self.rejections.report(self.accepted)]
        for reason, examples in sorted(self.examples.items()):
            for ex in examples:
                lines.append(
                    f"  e.g. {reason}: item {ex['index']} {ex.get('family')}/{ex.get('subtype')} "
                    f"seed {ex.get('seed')}: {' '.join(str(ex.get('detail', '')).split())[:160]}"
                )
        lines.append(
            f"  seeds skipped because their content belongs to another split: {self.split_retries}"
        )
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------
# Worker side: one item, from seed to records.
# --------------------------------------------------------------------------------------------


class _Reject(Exception):
    def __init__(self, reason: str, detail: str = ""):
        super().__init__(reason, detail)
        self.reason, self.detail = reason, detail


def _render(run_program, program: str, config: Q.QualityConfig, cache: dict) -> dict:
    """Render (once per distinct program) and gate one figure; raises _Reject on failure."""
    if program in cache:
        return cache[program]
    result = run_program(program, trust="family")  # generated by our families: trusted path
    if result["error_kind"] is not None:
        raise _Reject(f"render_failed:{result['error_kind']}", result["error"] or "")
    gray = Q.decode_gray(result["png"])
    reasons = Q.image_problems(gray, result["clipped_labels"], config)
    if reasons:
        raise _Reject(reasons[0], ", ".join(result["clipped_labels"]))
    cache[program] = {"png": result["png"], "dhash": Q.dhash(gray, config.dhash_size)}
    return cache[program]


def build_item(payload: Mapping[str, Any], run_program) -> dict[str, Any]:
    """One work item -> {"records", "fingerprint", "dhash", "previews"} or {"rejected": reason}.

    Runs in a sandbox worker (`FigureExecutor.map_calls`); `run_program` renders under the guard.
    """
    from mathjax_vl.datagen.families import FAMILIES, resolve

    config: DatagenConfig = payload["config"]
    index: int = payload["index"]
    split = config.resolved_split
    names = list(config.families or sorted(FAMILIES))
    family, subtype = resolve(names[index % len(names)])
    retries = 0
    for attempt in range(config.max_split_attempts):
        seed = Q.split_seed(config.seed, split, index, attempt)
        try:
            problem = family.generate(seed, subtype)
        except Exception as exc:
            return {
                "rejected": "generation_failed",
                "detail": f"{type(exc).__name__}: {exc}",
                "split_retries": retries,
                "family": family.name,
                "seed": seed,
            }
        if Q.split_of(problem.fingerprint()) == split:
            break
        retries += 1
    else:
        return {
            "rejected": "other_split",
            "detail": f"{config.max_split_attempts} seeds tried",
            "split_retries": retries,
            "family": family.name,
        }
    base = {
        "split_retries": retries,
        "family": problem.family,
        "subtype": problem.subtype,
        "seed": seed,
        "fingerprint": problem.fingerprint(),
    }
    try:
        answer_issues = Q.answer_problems(problem)
        if answer_issues:
            raise _Reject(answer_issues[0], f"seed {seed}")
        rng = np.random.default_rng([seed, V.RECIPE_TAGS[config.recipe]])
        records, previews, primary, text_key = _RECIPE_BUILDERS[config.recipe](
            problem, rng, config, run_program, f"{split}-{config.seed}-{index}"
        )
    except _Reject as reject:
        return {**base, "rejected": reject.reason, "detail": reject.detail}
    return {
        **base,
        "records": records,
        "previews": previews,
        "dhash": primary,
        "text_key": text_key,
    }


def _checked(problem, versions: Sequence[V.Version]) -> None:
    for version in versions:
        issues = V.check_version(problem, version)
        if issues:
            raise _Reject("version_content", "; ".join(issues))


def _preview(png: bytes, version: str, question: str, answer: str, problem) -> dict[str, Any]:
    return {
        "png": png,
        "version": version,
        "question": question,
        "answer": answer,
        "family": problem.family,
        "subtype": problem.subtype,
    }


def _puma_pairs(problem, rng, config, run_program, item_id):
    from mathjax_vl.data import records as R

    text_rich, vision_rich = V.pick_pair(V.puma_versions(problem, rng), rng)
    _checked(problem, (text_rich, vision_rich))
    cache: dict = {}
    sides, previews, hashes = {}, [], []
    for role, version in (("text_rich", text_rich), ("vision_rich", vision_rich)):
        text = V.instruction(problem, version.text(problem))
        images: tuple[bytes, ...] = ()
        if version.has_image:
            image = _render(run_program, version.figure_program(problem), config.quality, cache)
            images = (image["png"],)
            hashes.append(image["dhash"])
            previews.append(
                _preview(
                    image["png"], f"puma/{version.name}", text, V.answer_with_unit(problem), problem
                )
            )
        sides[role] = R.PumaSide(R.with_leading_placeholders(text, len(images)), images)
    pair = R.PumaPair(solution=V.solution_text(problem), id=item_id, **sides)
    text_key = pair.text_rich.instruction + "\n" + pair.vision_rich.instruction
    return [pair], previews, hashes[-1] if hashes else None, text_key


def _mathverse_eval(problem, rng, config, run_program, item_id):
    from mathjax_vl.data import records as R

    # MathVerse reports Text Only apart from its five scored versions; it is emitted too (first).
    text_only = V.Version("mathverse", "text_only", frozenset(problem.fact_keys), None)
    versions = {"text_only": text_only, **V.mathverse_versions(problem)}
    _checked(problem, versions.values())
    choices = None
    if rng.random() < config.multiple_choice_fraction:
        choices = V.multiple_choice(problem, rng)
    answer_type, precision = V.eval_answer_type(problem)
    cache: dict = {}
    records, previews, primary = [], [], None
    for name, version in versions.items():
        images: tuple[bytes, ...] = ()
        if version.has_image:
            image = _render(run_program, version.figure_program(problem), config.quality, cache)
            images = (image["png"],)
            primary = image["dhash"]  # the most labelled figure comes last
        text = version.text(problem)
        metadata = {
            "subject": problem.subject,
            "subfield": f"{problem.family}/{problem.subtype}",
            "question_type": "multi-choice" if choices else "free-form",
            "answer_value": V.answer_with_unit(problem),
            "seed": str(problem.seed),
            "fingerprint": problem.fingerprint(),
        }
        if choices:
            options, gold = choices
            question = V.instruction(problem, text, options)
            record = R.EvalProblem(
                problem_id=item_id,
                version=MATHVERSE_NAMES[name],
                question=question,
                answer=V.CHOICE_LETTERS[gold],
                answer_type="multi_choice",
                images=images,
                choices=options,
                metadata=metadata,
            )
        else:
            question = V.instruction(problem, text)
            record = R.EvalProblem(
                problem_id=item_id,
                version=MATHVERSE_NAMES[name],
                question=question,
                answer=problem.answer_text(),
                answer_type=answer_type,
                images=images,
                precision=precision,
                metadata=metadata,
            )
        records.append(record)
        if images:
            previews.append(
                _preview(images[0], f"mathverse/{name}", question, record.answer, problem)
            )
    return records, previews, primary, ""  # the most labelled figure carries every number


def _fully_labelled(problem) -> V.Version:
    drawable = frozenset(f.key for f in problem.facts if f.drawable)
    return V.Version("puma", "fully_labelled", frozenset(problem.fact_keys) - drawable, drawable)


def _captions(problem, rng, config, run_program, item_id):
    from mathjax_vl.data import records as R

    version = _fully_labelled(problem)
    image = _render(run_program, version.figure_program(problem), config.quality, {})
    record = R.ImageCaption(image=image["png"], caption=problem.caption, id=item_id)
    preview = _preview(image["png"], "caption", problem.caption, "", problem)
    return [record], [preview], image["dhash"], ""  # same picture, two captions: a false negative


def _instruct(problem, rng, config, run_program, item_id):
    from mathjax_vl.data import records as R

    versions = V.puma_versions(problem, rng)
    names = [n for n in ("text_dominant", "vision_dominant", "vision_only") if n in versions]
    version = versions[names[int(rng.integers(len(names)))]]
    _checked(problem, (version,))
    image = _render(run_program, version.figure_program(problem), config.quality, {})
    choices = None
    if rng.random() < config.multiple_choice_fraction:
        choices = V.multiple_choice(problem, rng)
    if choices:
        options, gold = choices
        user = V.instruction(problem, version.text(problem), options)
        answer = f"{V.CHOICE_LETTERS[gold]}: {options[gold]}"
        solution = V.solution_text(problem) + f"\nThe correct option is {V.CHOICE_LETTERS[gold]}."
    else:
        user = V.instruction(problem, version.text(problem))
        answer, solution = V.answer_with_unit(problem), V.solution_text(problem)
    record = R.MultimodalConversation(
        turns=(
            R.Turn("user", R.with_leading_placeholders(user, 1)),
            R.Turn("assistant", solution),
        ),
        images=(image["png"],),
        id=item_id,
    )
    preview = _preview(image["png"], f"instruct/{version.name}", user, answer, problem)
    return [record], [preview], image["dhash"], user


def _image_code(problem, rng, config, run_program, item_id):
    from mathjax_vl.data import records as R

    versions = [v for v in V.puma_versions(problem, rng).values() if v.has_image]
    versions.append(_fully_labelled(problem))
    version = versions[int(rng.integers(len(versions)))]
    program = version.figure_program(problem)
    image = _render(run_program, program, config.quality, {})
    record = R.ImageCode(image=image["png"], code=program, language="python", id=item_id)
    preview = _preview(image["png"], f"image_code/{version.name}", "(python source)", "", problem)
    return [record], [preview], image["dhash"], ""  # one image must not map to two programs


def _preference(problem, rng, config, run_program, item_id):
    from mathjax_vl.data import records as R
    from mathjax_vl.datagen.preference import preference_responses

    try:
        chosen, rejected, mistake = preference_responses(problem, rng)
    except ValueError as exc:
        raise _Reject("no_wrong_mistake", str(exc)) from None
    versions = V.puma_versions(problem, rng)
    names = [n for n in ("text_dominant", "vision_dominant", "vision_only") if n in versions]
    version = versions[names[int(rng.integers(len(names)))]]
    _checked(problem, (version,))
    image = _render(run_program, version.figure_program(problem), config.quality, {})
    user = V.instruction(problem, version.text(problem))
    record = R.PreferencePair(
        prompt=R.with_leading_placeholders(user, 1),
        chosen=chosen,
        rejected=rejected,
        images=(image["png"],),
        id=item_id,
    )
    wrong = V.answer_with_unit(problem, mistake.value)
    preview = _preview(image["png"], f"preference/{version.name}", user, wrong, problem)
    return [record], [preview], image["dhash"], user


_RECIPE_BUILDERS = {
    "puma_kl": _puma_pairs,
    "mathverse_eval": _mathverse_eval,
    "contrastive": _captions,
    "multimodal_sft": _instruct,
    "image_to_code": _image_code,
}


# --------------------------------------------------------------------------------------------
# Parent side.
# --------------------------------------------------------------------------------------------


def iter_records(
    config: DatagenConfig, executor: FigureExecutor, stats: DatagenResult
) -> Iterator[Any]:
    """Yield the records of the first `config.n` accepted items, in item-index order.

    Items are processed in chunks of `chunk_items`; within a chunk results are re-ordered by
    index before the (order-dependent) de-duplication, so the output is a function of the seed
    alone. Records stream out, so a 120K-pair run never holds the dataset in memory. Statistics
    accumulate in `stats`.
    """
    dedup = Q.Deduplicator(config.quality)
    max_items = int(config.n * config.max_items_factor) + 100
    bar = _progress(config.n, config.progress, f"datagen {config.recipe}")
    try:
        while stats.accepted < config.n:
            if stats.items_tried >= max_items:
                raise RuntimeError(
                    f"only {stats.accepted} of {config.n} items accepted after {max_items} items:"
                    f"\n{stats.report()}"
                )
            first = stats.items_tried
            deficit = config.n - stats.accepted
            rate = stats.accepted / first if first else 0.9
            size = max(deficit, math.ceil(deficit / max(rate, 0.05) * 1.05) + 1)
            size = min(size, config.chunk_items, max_items - first)
            payloads = [{"config": config, "index": i} for i in range(first, first + size)]
            stats.items_tried += size
            waiting: dict[int, Any] = {}
            expected = 0
            # Drain every result of the chunk (the workers must be idle when we return), but
            # only handle items in index order and only until n are accepted.
            for result in executor.map_calls("mathjax_vl.datagen.engine:build_item", payloads):
                waiting[result.index] = result
                while expected in waiting:
                    job = waiting.pop(expected)
                    expected += 1
                    if stats.accepted < config.n:
                        records = accept_item(first + job.index, job, dedup, stats, config)
                        if records:
                            bar.update(1)
                            stats.records_written += len(records)
                            yield from records
    finally:
        bar.close()


def accept_item(index: int, job, dedup: Q.Deduplicator, stats: DatagenResult, config) -> list:
    """Gate one finished item; its records if accepted (stats updated either way)."""

    def reject(reason: str, example: dict[str, Any]) -> list:
        stats.rejections[reason] += 1
        kept = stats.examples.setdefault(reason, [])
        if len(kept) < MAX_EXAMPLES_PER_REASON:
            kept.append(example)
        return []

    if job.error_kind is not None:
        return reject(f"job_failed:{job.error_kind}", {"index": index, "detail": job.error})
    item = job.value
    stats.split_retries += item["split_retries"]
    summary = {k: item.get(k) for k in ("family", "subtype", "seed", "detail")}
    if "rejected" in item:
        return reject(item["rejected"], {"index": index, **summary})
    duplicate = dedup.check(item["fingerprint"], item["dhash"], item["text_key"])
    if duplicate:
        return reject(duplicate, {"index": index, **summary})
    stats.accepted += 1
    room = config.max_previews - len(stats.previews)
    stats.previews.extend(item["previews"][: max(room, 0)])
    return item["records"]


def _run(config: DatagenConfig, executor: FigureExecutor | None, consume) -> DatagenResult:
    stats = DatagenResult()
    own = executor is None
    if executor is None:
        executor = FigureExecutor(dataclasses.replace(config.sandbox, workers=config.workers))
    try:
        consume(iter_records(config, executor, stats))
    finally:
        if own:
            executor.close()
    return stats


def generate(config: DatagenConfig, executor: FigureExecutor | None = None) -> DatagenResult:
    """All records in memory (tests, previews, small runs); same content as `generate_dataset`."""
    records: list[Any] = []
    stats = _run(config, executor, records.extend)
    stats.records = records
    return stats


def generate_dataset(
    config: DatagenConfig, out_dir: str, executor: FigureExecutor | None = None
) -> tuple[str, DatagenResult]:
    """Stream the records into a TFDS ArrayRecord dataset; returns (dataset dir, statistics)."""
    from mathjax_vl.data.storage import write_dataset

    written: list[str] = []

    def consume(records: Iterator[Any]) -> None:
        written.append(
            write_dataset(records, out_dir, name=config.recipe, split=config.resolved_split)
        )

    stats = _run(config, executor, consume)
    _write_report(stats, config, written[0])
    return written[0], stats


class _NoBar:
    def update(self, n: int) -> None:
        pass

    def close(self) -> None:
        pass


def _progress(total: int, enabled: bool, desc: str):
    if not enabled:
        return _NoBar()
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="item")


def _write_report(result: DatagenResult, config: DatagenConfig, dataset_dir: str) -> None:
    report = {
        "recipe": config.recipe,
        "n": config.n,
        "seed": config.seed,
        "workers": config.workers,
        "split": config.resolved_split,
        "records": result.records_written,
        "accepted_items": result.accepted,
        "items_tried": result.items_tried,
        "rejections": dict(sorted(result.rejections.items())),
        "split_retries": result.split_retries,
        "rejection_examples": result.examples,
    }
    with open(os.path.join(dataset_dir, "datagen_report.json"), "w") as f:
        json.dump(report, f, indent=2)
