"""Modality versions of a problem (Math-PUMA's question designer and pair constructor, MathVerse's
five versions), multiple-choice options, and the record contents built from them.

A version is a pair of fact sets: the facts stated in the TEXT and the facts SHOWN in the figure
(descriptive facts are always drawn). Everything else (text, figure program, answerability) derives
from those sets and the `Problem`, so the content rules can be checked mechanically:

- text-only: its text alone determines the answer (`Problem.solve` on the text's facts);
- every version: text facts + shown facts determine the answer;
- vision-only: its text states no fact (the question never contains a number, by `spec`).

Math-PUMA (paper, "Pair Construction"): text-only (no image), text-dominant (all facts in the text;
the figure with its structure only), vision-dominant (the designer moves a random part of the
drawable facts to the figure only), vision-only (every fact in the figure; the text is the
question). A pair is two distinct versions drawn at random; the one carrying more information in
the image is the vision-rich side.

MathVerse: text-dominant (descriptive + implicit + essential facts in the text), text-lite
(descriptive facts dropped), vision-intensive (drawable implicit properties dropped, shown as
marks), vision-dominant (drawable numeric conditions moved into the figure), vision-only (the whole
problem, question included, drawn: the question is rendered under the figure by
`question_banner_program`).
"""

from __future__ import annotations

import dataclasses
import textwrap
from collections.abc import Sequence

import numpy as np

from mathjax_vl.datagen.spec import AnswerType, FactKind, Problem, answers_match, format_answer

PUMA_VERSIONS = ("text_only", "text_dominant", "vision_dominant", "vision_only")  # by visual share
MATHVERSE_VERSIONS = (
    "text_dominant",
    "text_lite",
    "vision_intensive",
    "vision_dominant",
    "vision_only",
)
MATHVERSE_VISION_ONLY_TEXT = (
    "According to the question shown in the image, answer the question."  # no facts, no numbers
)
CHOICE_LETTERS = "ABCDE"


@dataclasses.dataclass(frozen=True)
class Version:
    """Which facts go to the text and which to the figure; `shown=None` means no image."""

    scheme: str  # "puma" | "mathverse"
    name: str
    text_keys: frozenset[str]
    shown: frozenset[str] | None
    question_in_image: bool = False

    @property
    def has_image(self) -> bool:
        return self.shown is not None

    def text(self, problem: Problem) -> str:
        if self.question_in_image:
            return MATHVERSE_VISION_ONLY_TEXT
        return problem.text(self.text_keys)

    def figure_program(self, problem: Problem) -> str | None:
        if self.shown is None:
            return None
        program = problem.figure_program(self.shown)
        if self.question_in_image:
            return question_banner_program(program, problem.text(self.text_keys))
        return program

    def available_keys(self) -> frozenset[str]:
        """Facts a reader of this version can see (text + figure)."""
        return self.text_keys | (self.shown or frozenset())


def _drawable_conditions(problem: Problem) -> list[str]:
    """Non-descriptive facts the figure can show (structural marks and numeric labels)."""
    return [f.key for f in problem.facts if f.kind is not FactKind.DESCRIPTIVE and f.figure_label]


def puma_versions(problem: Problem, rng: np.random.Generator) -> dict[str, Version]:
    """Math-PUMA's four versions; a version that would repeat another is left out."""
    everything = frozenset(problem.fact_keys)
    descriptive = frozenset(problem.keys_of_kind(FactKind.DESCRIPTIVE))
    movable = _drawable_conditions(problem)
    undrawable = everything - descriptive - frozenset(movable)
    structure = descriptive | frozenset(
        k for k in movable if problem.fact(k).kind is FactKind.STRUCTURAL
    )
    out = {
        "text_only": Version("puma", "text_only", everything, None),
        "text_dominant": Version("puma", "text_dominant", everything, structure),
    }
    numbers = [k for k in movable if problem.fact(k).kind is FactKind.NUMERIC]
    if len(numbers) >= 2:
        # The question designer: each drawable number goes to the image only with probability
        # 1/2 (at least one moves, at least one stays); each drawn structural mark is dropped
        # from the text with probability 1/2 (the figure shows it).
        to_image = [k for k in numbers if rng.random() < 0.5]
        if not to_image:
            to_image = [numbers[int(rng.integers(len(numbers)))]]
        if len(to_image) == len(numbers):
            to_image.pop(int(rng.integers(len(to_image))))
        marks_only = [k for k in sorted(structure - descriptive) if rng.random() < 0.5]
        moved = frozenset(to_image)
        out["vision_dominant"] = Version(
            "puma", "vision_dominant", everything - moved - frozenset(marks_only), structure | moved
        )
    if movable and not undrawable:
        out["vision_only"] = Version("puma", "vision_only", frozenset(), everything)
    return out


def mathverse_versions(problem: Problem) -> dict[str, Version]:
    """MathVerse's five versions (vision-only only when every condition can be drawn)."""
    everything = frozenset(problem.fact_keys)
    descriptive = frozenset(problem.keys_of_kind(FactKind.DESCRIPTIVE))
    drawable = frozenset(_drawable_conditions(problem))
    structural = frozenset(problem.keys_of_kind(FactKind.STRUCTURAL))
    numeric = frozenset(problem.keys_of_kind(FactKind.NUMERIC))
    marks = descriptive | (structural & drawable)  # the "original diagram"
    out = {
        "text_dominant": Version("mathverse", "text_dominant", everything, marks),
        "text_lite": Version("mathverse", "text_lite", everything - descriptive, marks),
        "vision_intensive": Version(
            "mathverse",
            "vision_intensive",
            everything - descriptive - (structural & drawable),
            marks,
        ),
        "vision_dominant": Version(
            "mathverse",
            "vision_dominant",
            (structural | numeric) - (numeric & drawable),
            marks | (numeric & drawable),
        ),
    }
    if everything - descriptive <= drawable:
        out["vision_only"] = Version(
            "mathverse", "vision_only", frozenset(), everything, question_in_image=True
        )
    return out


def pick_pair(versions: dict[str, Version], rng: np.random.Generator) -> tuple[Version, Version]:
    """Two distinct versions at random -> (text_rich, vision_rich) by their visual share."""
    names = [n for n in PUMA_VERSIONS if n in versions]
    i, j = sorted(rng.choice(len(names), size=2, replace=False).tolist())
    return versions[names[i]], versions[names[j]]


def check_version(problem: Problem, version: Version) -> list[str]:
    """Content-rule violations of one version (empty when it is sound)."""
    problems = []
    values = problem.fact_values
    try:
        seen = problem.solve({k: values[k] for k in version.available_keys()})
        if not answers_match(seen, problem.answer, problem.answer_spec):
            problems.append(f"{version.name}: text + figure give {seen}, not {problem.answer}")
    except Exception as exc:
        problems.append(f"{version.name}: text + figure do not determine the answer ({exc})")
    if version.name == "text_only":
        try:
            from_text = problem.solve({k: values[k] for k in version.text_keys})
            if not answers_match(from_text, problem.answer, problem.answer_spec):
                problems.append(f"text_only: its text gives {from_text}")
        except Exception as exc:
            problems.append(f"text_only: its text does not determine the answer ({exc})")
    if version.name == "vision_only" and any(ch.isdigit() for ch in version.text(problem)):
        problems.append("vision_only: the text carries numbers")
    return problems


# ----- answers, choices, solutions -----


def answer_with_unit(problem: Problem, value=None) -> str:
    text = format_answer(problem.answer if value is None else value, problem.answer_spec)
    unit = problem.answer_spec.unit
    if not unit:
        return text
    return f"{text}{unit}" if unit == "°" else f"{text} {unit}"


def solution_text(problem: Problem) -> str:
    """Chain-of-thought solution: the rationale's steps, then the final answer sentence."""
    return "\n".join([*problem.rationale, f"The answer is {answer_with_unit(problem)}."])


def instruction(problem: Problem, text: str, choices: Sequence[str] | None = None) -> str:
    if choices:
        options = "\n".join(f"{CHOICE_LETTERS[i]}: {c}" for i, c in enumerate(choices))
        return f"{text}\nChoices:\n{options}\nAnswer with the option's letter."
    return f"{text} {problem.answer_spec.instruction()}"


def multiple_choice(
    problem: Problem, rng: np.random.Generator, n_options: int = 4
) -> tuple[tuple[str, ...], int] | None:
    """Options (gold + distractors from typical mistakes) and the gold index, or None.

    Distractors come from `Problem.mistakes` first; numeric answers are topped up with scaled
    values of the gold answer when the mistakes are too few. A distractor whose text equals the
    gold's, or another option's, is dropped, so every option is distinct.
    """
    spec = problem.answer_spec
    gold = answer_with_unit(problem)
    options: list[str] = []
    for mistake in problem.mistakes:
        try:
            if answers_match(mistake.value, problem.answer, spec):
                continue
            text = answer_with_unit(problem, mistake.value)
        except (TypeError, ValueError, AttributeError):
            continue  # a mistake value that does not fit the answer type
        if text != gold and text not in options:
            options.append(text)
    if spec.type in (AnswerType.INTEGER, AnswerType.FLOAT, AnswerType.EXPRESSION):
        for factor in (2, 3, 4):  # "forgot to halve / took double" style fillers
            if len(options) >= n_options - 1:
                break
            try:
                value = problem.answer * factor if factor != 4 else problem.answer / 2
                text = answer_with_unit(problem, value)
            except (TypeError, ValueError, AttributeError):
                continue
            if text != gold and text not in options:
                options.append(text)
    if not options:
        return None
    options = options[: n_options - 1]
    gold_index = int(rng.integers(len(options) + 1))
    options.insert(gold_index, gold)
    return tuple(options), gold_index


def eval_answer_type(problem: Problem) -> tuple[str, int | None]:
    """EvalProblem answer_type and precision for a free-form question."""
    t = problem.answer_spec.type
    if t is AnswerType.INTEGER:
        return "integer", None
    if t is AnswerType.FLOAT:
        return "float", problem.answer_spec.precision
    if t is AnswerType.SET:
        return "list", None
    return "free_form", None


# ----- vision-only with the question drawn -----

_BANNER_TEMPLATE = '''"""Figure with the problem text drawn under it (MathVerse vision-only)."""
import io
import sys
import textwrap

import matplotlib

matplotlib.use("Agg")
import matplotlib.image as mpimg
import matplotlib.pyplot as plt

FIGURE_SOURCE = {source!r}
QUESTION = {question!r}


def draw(out_path):
    body_namespace = {{"__name__": "figure_body"}}
    exec(compile(FIGURE_SOURCE, "figure_body", "exec"), body_namespace)
    buffer = io.BytesIO()
    body_namespace["draw"](buffer)
    buffer.seek(0)
    body = mpimg.imread(buffer, format="png")
    lines = textwrap.wrap(QUESTION, {width})
    dpi = {dpi}
    height, width = body.shape[:2]
    text_height = 18 * len(lines) + 14
    total = height + text_height
    fig = plt.figure(figsize=(width / dpi, total / dpi), dpi=dpi)
    ax = fig.add_axes([0, text_height / total, 1, height / total])
    ax.imshow(body, interpolation="nearest")
    ax.axis("off")
    fig.text(0.03, (text_height - 7) / total, "\\n".join(lines), ha="left", va="top", fontsize=10)
    fig.savefig(out_path, dpi=dpi, metadata={{"Software": None}})
    plt.close(fig)


if __name__ == "__main__":
    draw(sys.argv[1])
'''


def question_banner_program(program: str, question: str, width: int = 52, dpi: int = 96) -> str:
    """A standalone program drawing `program`'s figure with `question` written below it."""
    return _BANNER_TEMPLATE.format(
        source=program, question=textwrap.dedent(question), width=width, dpi=dpi
    )


# Salt of each recipe's random choices (version picks, choice order), so recipes drawn from the
# same seed make independent choices.
RECIPE_TAGS = {
    "puma_kl": 1,
    "mathverse_eval": 2,
    "contrastive": 3,
    "multimodal_sft": 4,
    "image_to_code": 5,
    "preference": 6,
}
