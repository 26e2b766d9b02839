"""The demo's data: every dataset the three recipes need, generated here, nothing downloaded.

Stage-1 (text-math SFT) data is derived from the generated PUMA pairs: the text-rich side of a pair
whose text alone carries every fact becomes a text-only conversation with the pair's solution,
which is how Math-PUMA's text-only version relates to its multimodal versions.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Iterator

from mathjax_vl.data import records as R


@dataclasses.dataclass(frozen=True)
class DemoDataConfig:
    seed: int = 0
    workers: int = 2
    n_captions: int = 64  # CLIP-Math diagram-caption pairs
    n_pairs: int = 64  # Math-PUMA stage-2 pairs (also the source of stage-1 text data)
    n_instruct: int = 64  # stage-3 multimodal CoT conversations
    n_image_code: int = 48  # MathCoder-VL image-code pairs
    n_eval_problems: int = 8  # held-out MathVerse-style problems (x 5 versions)
    vocab_size: int = 1024  # tokenizer (256 bytes + 4 specials + merges)
    families: tuple[str, ...] | None = None  # None: every family; "family/subtype" narrows
    multiple_choice_fraction: float = 0.5  # share of instruct / eval problems asked as choices
    # A count of 0 skips that recipe (the ablation needs no image-code pairs).


RECIPE_COUNTS = (
    ("contrastive", "n_captions"),
    ("puma_kl", "n_pairs"),
    ("multimodal_sft", "n_instruct"),
    ("image_to_code", "n_image_code"),
    ("mathverse_eval", "n_eval_problems"),
)


def text_conversations(pairs: Iterable[R.PumaPair]) -> Iterator[R.TextConversation]:
    """Text-only SFT conversations from the text-rich sides that carry no image."""
    for pair in pairs:
        strong = pair.text_rich
        if strong.images:
            continue
        yield R.TextConversation(
            turns=(
                R.Turn("user", strong.instruction),
                R.Turn("assistant", pair.solution),
            ),
            id=f"{pair.id}/text",
        )


def record_texts(record: R.Record) -> Iterator[str]:
    """Every string of a record a tokenizer should learn from."""
    if isinstance(record, R.TextConversation | R.MultimodalConversation):
        for turn in record.turns:
            yield turn.content.replace(R.IMAGE_PLACEHOLDER, "")
    elif isinstance(record, R.PumaPair):
        yield record.text_rich.instruction.replace(R.IMAGE_PLACEHOLDER, "")
        yield record.vision_rich.instruction.replace(R.IMAGE_PLACEHOLDER, "")
        yield record.solution
    elif isinstance(record, R.ImageCaption):
        yield record.caption
    elif isinstance(record, R.ImageCode):
        yield record.code
    elif isinstance(record, R.EvalProblem):
        yield record.question.replace(R.IMAGE_PLACEHOLDER, "")
        yield record.answer


def generate_all(cfg: DemoDataConfig, out_dir: str, log=print) -> dict[str, str]:
    """Generates every dataset and the tokenizer; returns {name: directory}."""
    from mathjax_vl.data.storage import open_source, write_dataset
    from mathjax_vl.data.tokenizer_train import train_tokenizer
    from mathjax_vl.datagen.engine import DatagenConfig, generate_dataset
    from mathjax_vl.datagen.sandbox import FigureExecutor, SandboxConfig

    paths: dict[str, str] = {}
    texts: list[str] = []
    sandbox = SandboxConfig(workers=cfg.workers)
    with FigureExecutor(sandbox) as executor:
        for offset, (recipe, field) in enumerate(RECIPE_COUNTS):
            if getattr(cfg, field) == 0:
                continue
            config = DatagenConfig(
                recipe=recipe,
                n=getattr(cfg, field),
                seed=cfg.seed + 1000 * offset,
                workers=cfg.workers,
                sandbox=sandbox,
                families=tuple(cfg.families) if cfg.families else None,
                multiple_choice_fraction=cfg.multiple_choice_fraction,
            )
            paths[recipe], stats = generate_dataset(config, os.path.join(out_dir, "data"), executor)
            source = open_source(paths[recipe], config.resolved_split)
            log(
                f"  {recipe}: {len(source)} records from {stats.accepted} problems "
                f"-> {paths[recipe]}"
            )
            for index in range(len(source)):
                texts.extend(record_texts(source[index]))
    pairs = open_source(paths["puma_kl"], "train")
    conversations = list(text_conversations(pairs[i] for i in range(len(pairs))))
    if not conversations:
        raise RuntimeError("no text-only PUMA sides were generated for stage-1 SFT; raise n_pairs")
    paths["text_sft"] = write_dataset(conversations, os.path.join(out_dir, "data"), "text_sft")
    log(f"  text_sft: {len(conversations)} records -> {paths['text_sft']}")
    paths["tokenizer"] = train_tokenizer(texts, cfg.vocab_size, os.path.join(out_dir, "tokenizer"))
    log(f"  tokenizer: byte-level BPE on {len(texts)} texts -> {paths['tokenizer']}")
    return paths
