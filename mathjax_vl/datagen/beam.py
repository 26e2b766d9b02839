"""The data engine at scale: the same generators as an Apache Beam pipeline, written by TFDS.

Why Beam through TFDS: a cluster (Dataflow, Flink, Spark) gives the rendering thousands of cores,
and TFDS's Beam writer turns the resulting PCollection into the SAME dataset layout the local
engine writes (ArrayRecord shards + dataset_info.json), so `mathjax_vl.data.storage` and the Grain
pipelines read either output unchanged. No TensorFlow is needed: TFDS's BeamWriter uses the same
TF-free example serializer and ArrayRecord writer as its non-Beam path.

Pipeline (one split; `generate_dataset_beam`):

    index ranges [0, M) --Reshuffle--> BuildItems (DoFn: engine.build_item in a per-DoFn sandbox
    pool: problem, answer re-check, versions, render, image gates, records)
      -> summaries (index, fingerprint, dhash, ...) --GroupByKey(one key)--> SelectItems
      -> records (index, records) ----------------------CoGroupByKey(index)--> PlaceRecords
      -> (output position, example) --> TFDS BeamWriter (ArrayRecord, order kept)

The output equals the local engine's for the same config: items are the same pure function of
(config, index) and selection replays the local engine's de-duplication over ALL items' compact
summaries in index order (one global grouping: the lowest index of a duplicate group is kept,
whatever bundle or worker computed it), keeping the first `n` accepted. Only the summaries (about
200 bytes per item) meet in one place; images stay distributed until the join.

Beam cannot grow its input while running, so M = ceil(n * item_factor) + item_slack items are
computed up front (the local engine adapts chunk sizes instead). Items past the n-th accepted one
are surplus, reported as such; with fewer than n accepted the accepted items are still written
(the rendering is the expensive part of a cluster job) and `ShortDatasetError` is raised after.
Counters (namespace `mathjax_vl.datagen`): `build/*` count every computed item by outcome;
`select/*` count the selection within the cut (equal to the report's rejections).
"""

from __future__ import annotations

import dataclasses
import hashlib
import itertools
import json
import math
import os
import types
from collections.abc import Iterable, Mapping
from typing import Any

from mathjax_vl.datagen import engine as E

NAMESPACE = "mathjax_vl.datagen"
REPORT_FILE = "datagen_report.json"
RECIPE_KINDS = {
    "puma_kl": "puma_pair",
    "mathverse_eval": "eval_problem",
    "contrastive": "image_caption",
    "multimodal_sft": "multimodal_conversation",
    "image_to_code": "image_code",
}


@dataclasses.dataclass(frozen=True)
class BeamConfig:
    """How the pipeline runs; what it generates stays in `engine.DatagenConfig`."""

    runner: str = "DirectRunner"  # any Beam runner name: DataflowRunner, FlinkRunner, ...
    options: tuple[str, ...] = ()  # pipeline args, e.g. ("--project=p", "--region=us-central1")
    # Items computed = ceil(n * item_factor) + item_slack (capped like the local engine at
    # n * max_items_factor + 100): headroom for gate and dedup rejections (~10-20% in our runs).
    item_factor: float = 1.25
    item_slack: int = 32
    # Indices per DoFn element (the unit of distribution and of retry). An element's items are
    # spread over the DoFn's sandbox pool, which idles while the element's last items finish,
    # so an element should hold many items per pool worker. None: 16 x DatagenConfig.workers.
    items_per_task: int | None = None
    item_target: str = "mathjax_vl.datagen.engine:build_item"  # "module:function" run per item

    def __post_init__(self) -> None:
        if self.item_factor < 1.0:
            raise ValueError(f"BeamConfig.item_factor must be >= 1, got {self.item_factor}")
        if self.item_slack < 0 or (self.items_per_task is not None and self.items_per_task < 1):
            raise ValueError(
                f"BeamConfig.item_slack must be >= 0 and items_per_task >= 1, got "
                f"{self.item_slack} and {self.items_per_task}"
            )


class ShortDatasetError(RuntimeError):
    """Fewer than n items were accepted; the dataset holds the accepted ones (see report)."""


def items_to_compute(config: E.DatagenConfig, beam_config: BeamConfig) -> int:
    wanted = math.ceil(config.n * beam_config.item_factor) + beam_config.item_slack
    return min(wanted, int(config.n * config.max_items_factor) + 100)


def index_ranges(total: int, per_task: int) -> list[tuple[int, int]]:
    """[0, total) cut into [lo, hi) ranges of `per_task` indices (the last may be shorter)."""
    return [(lo, min(lo + per_task, total)) for lo in range(0, total, per_task)]


# --------------------------------------------------------------------------------------------
# Item summaries and the global selection (pure functions: unit-tested without Beam).
# --------------------------------------------------------------------------------------------


def summarize(index: int, result) -> dict[str, Any]:
    """What selection needs from one finished item (`sandbox.CallResult`): no images, no text."""
    summary: dict[str, Any] = {"index": index, "error_kind": result.error_kind}
    if result.error_kind is not None:
        summary["error"] = result.error
        return summary
    item = result.value
    for key in ("split_retries", "family", "subtype", "seed", "detail", "rejected"):
        if key in item:
            summary[key] = item[key]
    if "rejected" not in item:
        summary["fingerprint"] = item["fingerprint"]
        summary["dhash"] = item["dhash"]
        # Dedup only compares text keys for equality: a digest keeps the summary small.
        summary["text_key"] = hashlib.sha256(item["text_key"].encode()).hexdigest()
        summary["n_records"] = len(item["records"])
    return summary


def outcome(summary: Mapping[str, Any]) -> str:
    """Counter name of an item's worker-side outcome."""
    if summary["error_kind"] is not None:
        return f"build/rejected:job_failed:{summary['error_kind']}"
    if "rejected" in summary:
        return f"build/rejected:{summary['rejected']}"
    return "build/passed_gates"


def select_items(
    summaries: Iterable[Mapping[str, Any]], config: E.DatagenConfig, total: int
) -> tuple[dict[int, int], dict[str, Any]]:
    """Replay the local engine's acceptance over all items in index order.

    Returns ({accepted index: position of its first record}, report). Input order does not
    matter (sorted here), so which duplicate survives never depends on the runner: the lowest
    index wins, exactly as in `engine.iter_records`. Raises if an item is missing or repeated
    (nothing may vanish silently). Fewer than `n` accepted is NOT raised here: the report's
    `short_by` says so, the accepted items are still written (on a cluster the rendering is the
    expensive part), and `generate_dataset_beam` raises `ShortDatasetError` afterwards.
    """
    ordered = sorted(summaries, key=lambda s: s["index"])
    indices = [s["index"] for s in ordered]
    if indices != list(range(total)):
        missing = sorted(set(range(total)) - set(indices))[:10]
        repeated = sorted({i for i, j in itertools.pairwise(indices) if i == j})[:10]
        raise RuntimeError(
            f"selection expected one summary per item 0..{total - 1}, got {len(indices)}: "
            f"missing {missing}, repeated {repeated}"
        )
    from mathjax_vl.datagen import quality as Q

    dedup = Q.Deduplicator(config.quality)
    stats = E.DatagenResult()
    positions: dict[int, int] = {}
    position = 0
    for summary in ordered:
        if stats.accepted >= config.n:
            break
        stats.items_tried += 1
        item = dict(summary)
        if "n_records" in item:
            item["records"] = [None] * item["n_records"]  # accept_item only counts them
            item["previews"] = []
        job = types.SimpleNamespace(
            error_kind=summary["error_kind"], error=summary.get("error"), value=item
        )
        records = E.accept_item(summary["index"], job, dedup, stats, config)
        if records:
            positions[summary["index"]] = position
            position += len(records)
            stats.records_written += len(records)
    return positions, _report(stats, config, total)


def _report(stats: E.DatagenResult, config: E.DatagenConfig, total: int) -> dict[str, Any]:
    """Same fields as the local engine's datagen_report.json, plus the Beam-only surplus."""
    return {
        "recipe": config.recipe,
        "n": config.n,
        "seed": config.seed,
        "workers": config.workers,
        "split": config.resolved_split,
        "records": stats.records_written,
        "accepted_items": stats.accepted,
        "items_tried": stats.items_tried,  # items up to the n-th accepted one
        "rejections": dict(sorted(stats.rejections.items())),
        "split_retries": stats.split_retries,
        "rejection_examples": stats.examples,
        "runner": "beam",
        "items_computed": total,
        "surplus_items": total - stats.items_tried,  # computed, past the cut, not written
        "short_by": config.n - stats.accepted,  # > 0: too few items computed (item_factor)
    }


# --------------------------------------------------------------------------------------------
# The pipeline.
# --------------------------------------------------------------------------------------------


def _counter(name: str):
    import apache_beam as beam

    return beam.metrics.Metrics.counter(NAMESPACE, name)


def _build_items_fn(config: E.DatagenConfig, target: str):
    import apache_beam as beam

    class BuildItems(beam.DoFn):
        """Runs `target` (engine.build_item) for a range of indices in a warm sandbox pool.

        The pool (zygote + `config.workers` processes) lives as long as the DoFn instance
        (setup/teardown), so a worker VM pays the matplotlib start-up once, not per element.
        Main output: summaries; tagged output "records": (index, records) of gated items.
        """

        def __init__(self) -> None:
            self._executor = None

        def setup(self) -> None:
            from mathjax_vl.datagen.sandbox import FigureExecutor

            sandbox = dataclasses.replace(config.sandbox, workers=config.workers)
            self._executor = FigureExecutor(sandbox)
            self._executor.start()

        def teardown(self) -> None:
            if self._executor is not None:
                self._executor.close()
                self._executor = None

        def process(self, index_range: tuple[int, int]):
            if self._executor is None:  # a runner that skipped setup()
                self.setup()
            lo, hi = index_range
            payloads = [{"config": config, "index": i} for i in range(lo, hi)]
            for result in self._executor.map_calls(target, payloads):
                index = lo + result.index
                summary = summarize(index, result)
                _counter("build/items").inc()
                _counter(outcome(summary)).inc()
                yield summary
                if "n_records" in summary:
                    yield beam.pvalue.TaggedOutput("records", (index, result.value["records"]))

    return BuildItems()


def _select_fn(config: E.DatagenConfig, total: int, report_path: str | None):
    def select(keyed: tuple[Any, Iterable[Mapping[str, Any]]]):
        _, summaries = keyed
        positions, report = select_items(summaries, config, total)
        _counter("select/accepted").inc(report["accepted_items"])
        _counter("select/surplus_items").inc(report["surplus_items"])
        _counter("select/short_by").inc(report["short_by"])
        for reason, count in report["rejections"].items():
            _counter(f"select/rejected:{reason}").inc(count)
        if report_path is not None:  # idempotent: a retried bundle rewrites the same bytes
            from etils import epath

            epath.Path(report_path).write_text(json.dumps(report, indent=2, default=str))
        yield from positions.items()

    return select


def _place_fn(kind: str):
    def place(joined: tuple[int, Mapping[str, Iterable[Any]]]):
        """Accepted item -> (output position, TFDS example) per record; others are dropped
        here (already counted as rejected or surplus by the selection)."""
        from mathjax_vl.data import records as R
        from mathjax_vl.data import storage

        index, groups = joined
        positions, item_records = list(groups["position"]), list(groups["records"])
        if not positions:
            return
        if len(positions) != 1 or len(item_records) != 1:
            raise RuntimeError(
                f"item {index}: expected one position and one record list, got "
                f"{len(positions)} and {len(item_records)}"
            )
        for offset, record in enumerate(item_records[0]):
            if not isinstance(record, R.RECORD_TYPES[kind]):
                raise R.RecordError(
                    f"<beam item {index}>",
                    offset,
                    "bad_value",
                    f"expected {kind} records, found {type(record).__name__}",
                )
            yield positions[0] + offset, storage.to_example(record)

    return place


def generate_examples(
    config: E.DatagenConfig, beam_config: BeamConfig, report_path: str | None = None
):
    """The PTransform (pipeline root -> (position, TFDS example)) for one split."""
    import apache_beam as beam

    total = items_to_compute(config, beam_config)
    per_task = beam_config.items_per_task or 16 * config.workers
    ranges = index_ranges(total, per_task)
    kind = RECIPE_KINDS[config.recipe]

    @beam.ptransform_fn
    def _examples(root):
        built = (
            root
            | "IndexRanges" >> beam.Create(ranges)
            | "Distribute" >> beam.Reshuffle()
            | "BuildItems"
            >> beam.ParDo(_build_items_fn(config, beam_config.item_target)).with_outputs(
                "records", main="summaries"
            )
        )
        positions = (
            built.summaries
            | "OneKey" >> beam.Map(lambda summary: (None, summary))
            | "AllSummaries" >> beam.GroupByKey()
            | "SelectItems" >> beam.FlatMap(_select_fn(config, total, report_path))
        )
        return (
            {"position": positions, "records": built.records}
            | "JoinByIndex" >> beam.CoGroupByKey()
            | "PlaceRecords" >> beam.FlatMap(_place_fn(kind))
        )

    return _examples()  # pylint: disable=no-value-for-parameter


def _builder_class(config: E.DatagenConfig, beam_config: BeamConfig):
    """storage's record builder (same features, info, order), fed by the Beam PTransform."""
    from mathjax_vl.data import storage

    base = storage.builder_class(RECIPE_KINDS[config.recipe], config.recipe)

    class _BeamRecordBuilder(base, skip_registration=True):
        beam_counters: dict[str, int]

        def _split_generators(self, dl_manager):
            # self.data_dir is TFDS's temporary dir while preparing: the report written there by
            # the pipeline moves into the dataset dir with the shards.
            report = os.path.join(self.data_dir, REPORT_FILE)
            split = config.resolved_split
            return {split: self._generate_examples(split, report)}

        def _generate_examples(self, split: str, report_path: str):  # type: ignore[override]
            return generate_examples(config, beam_config, report_path)

        def _process_pipeline_result(self, pipeline_result) -> None:
            from etils import epath

            self.beam_counters = beam_counters(pipeline_result)
            path = epath.Path(self.data_dir) / REPORT_FILE
            report = json.loads(path.read_text())
            report["beam_counters"] = self.beam_counters
            path.write_text(json.dumps(report, indent=2, default=str))

    _BeamRecordBuilder.name = config.recipe
    _BeamRecordBuilder.__name__ = f"BeamRecordBuilder_{config.recipe}"
    return _BeamRecordBuilder


def beam_counters(pipeline_result) -> dict[str, int]:
    """Counters of our namespace, summed over steps (committed, else attempted, values)."""
    from apache_beam.metrics.metric import MetricsFilter

    query = pipeline_result.metrics().query(MetricsFilter().with_namespace(NAMESPACE))
    totals: dict[str, int] = {}
    for result in query["counters"]:
        value = result.committed if result.committed is not None else result.attempted
        name = result.key.metric.name
        totals[name] = totals.get(name, 0) + int(value or 0)
    return dict(sorted(totals.items()))


def generate_dataset_beam(
    config: E.DatagenConfig, out_dir: str, beam_config: BeamConfig = BeamConfig()
) -> tuple[str, dict[str, Any]]:
    """Run the pipeline and write out_dir/<recipe>/1.0.0; returns (dataset dir, report).

    `out_dir` may be any path TFDS/etils can write (a local dir, or gs://... for a cluster run:
    the workers write the shards and the report there).
    """
    import tensorflow_datasets as tfds
    from apache_beam.options.pipeline_options import PipelineOptions
    from etils import epath

    from mathjax_vl.data import storage

    version_dir = os.path.join(os.fspath(out_dir), config.recipe, storage.DATASET_VERSION)
    if (epath.Path(version_dir) / "dataset_info.json").exists():
        raise FileExistsError(f"dataset already exists at {version_dir}; write to a new out_dir")
    builder = _builder_class(config, beam_config)(
        splits={}, data_dir=os.fspath(out_dir), file_format="array_record"
    )
    storage._quiet_tfds()
    download_config = tfds.download.DownloadConfig(
        beam_runner=beam_config.runner, beam_options=PipelineOptions(list(beam_config.options))
    )
    builder.download_and_prepare(download_config=download_config)
    sidecar = {
        "kind": RECIPE_KINDS[config.recipe],
        "name": config.recipe,
        "splits": [config.resolved_split],
    }
    (epath.Path(version_dir) / storage.SIDECAR).write_text(json.dumps(sidecar))
    report = json.loads((epath.Path(version_dir) / REPORT_FILE).read_text())
    if report["short_by"] > 0:
        raise ShortDatasetError(
            f"{version_dir}: only {report['accepted_items']} of {config.n} items accepted among "
            f"the {report['items_computed']} computed (rejections: {report['rejections']}); the "
            f"dataset holds those. For n items rerun with a larger BeamConfig.item_factor "
            f"(--beam-item-factor) into a new --out."
        )
    return version_dir, report


def format_report(report: Mapping[str, Any]) -> str:
    """Human-readable summary (the CLI prints it), like `DatagenResult.report`."""
    from mathjax_vl.datagen import quality as Q

    counter = Q.RejectionCounter(report["rejections"])
    lines = [counter.report(report["accepted_items"])]
    for reason, examples in sorted(report["rejection_examples"].items()):
        for ex in examples:
            detail = " ".join(str(ex.get("detail", "")).split())[:160]
            lines.append(
                f"  e.g. {reason}: item {ex['index']} {ex.get('family')}/{ex.get('subtype')} "
                f"seed {ex.get('seed')}: {detail}"
            )
    lines.append(
        f"  seeds skipped because their content belongs to another split: {report['split_retries']}"
    )
    lines.append(
        f"  items computed {report['items_computed']}, up to the n-th accepted "
        f"{report['items_tried']}, surplus {report['surplus_items']}"
    )
    if report["short_by"] > 0:
        lines.append(f"  SHORT: {report['short_by']} items fewer than the {report['n']} asked for")
    counters = report.get("beam_counters", {})
    if counters:
        lines.append("  beam counters: " + ", ".join(f"{k}={v}" for k, v in counters.items()))
    return "\n".join(lines)
