"""MathVerse's two-step protocol by rules (checked on the official prompts' own worked
examples) and the optional model-based extractor's plumbing (a tiny random model)."""

import importlib.util
import pathlib
import sys

import pytest

from mathjax_vl.data.records import EvalProblem
from mathjax_vl.eval import mathverse
from mathjax_vl.eval.evaluator import evaluate
from mathjax_vl.eval.scoring import score_all


def _problem(answer, answer_type="free_form", choices=None, pid="1", version="text_dominant"):
    return EvalProblem(
        problem_id=pid,
        version=version,
        question="q",
        answer=answer,
        answer_type=answer_type,
        choices=choices,
        metadata={"subject": "plane geometry", "subfield": "length"},
    )


# Step 1: the official extraction prompt's worked examples (model response -> extraction).
@pytest.mark.parametrize(
    ("response", "choices", "answer_type", "expected"),
    [
        (
            "Rounded to two decimal places, the perimeter of the sector is approximately:"
            "\n\n(-2, 1)",
            None,
            "free_form",
            "(-2, 1)",
        ),
        (
            "at those points.\n\nTherefore, the correct option that represents the meaning of the "
            "intersection points of the graphs is:\n\nD. They give the solutions to the equation "
            "$f(t)=g(t)$.",
            ("A: a", "B: b", "C: c", "D: They give the solutions to the equation $f(t)=g(t)$"),
            "multi_choice",
            "D",
        ),
        (
            "As it stands, I cannot provide the correct option letter because there isn't enough "
            "information to solve for 'y'.",
            ("A: 1", "B: 2", "C: 3", "D: 4"),
            "multi_choice",
            "null",
        ),
        (
            "Given that AB = 17.6 meters, we can now substitute into the equation:\n\nd = 17.6 / "
            "cos(38°)\n\nTherefore, to one decimal place, the distance d between Ned and Bart is "
            "approximately 22.3 meters.",
            None,
            "float",
            "22.3",
        ),
    ],
)
def test_rule_extraction_on_the_official_examples(response, choices, answer_type, expected):
    problem = _problem("x", answer_type, choices)
    assert mathverse.rule_extract(problem, response) == expected


# Step 2: the official judging prompt's worked examples (gold, extraction -> judgement).
@pytest.mark.parametrize(
    ("gold", "extraction", "answer_type", "choices", "expected"),
    [
        ("(-2,1]", "\\((-2, 1)\\)", "free_form", None, False),
        ("C", "B:2√{3}", "multi_choice", ("A:2", "B:2√{3}", "C:√{3}", "D:2√{2}"), False),
        ("C", "null", "multi_choice", ("A:2", "B:2√{3}", "C:√{3}", "D:2√{2}"), False),
        (
            "A",
            "\\frac{x^2}{81} + \\frac{y^2}{9} = 1",
            "multi_choice",
            ("A: \\frac{x^2}{81} + \\frac{y^2}{9} = 1", "B: Can not determine."),
            True,
        ),
        ("C", "C:√{3}", "multi_choice", ("A:2", "B:2√{3}", "C:√{3}", "D:2√{2}"), True),
        ("22.3", "22.3", "float", None, True),
    ],
)
def test_rule_judging_on_the_official_examples(gold, extraction, answer_type, choices, expected):
    assert mathverse.judge(_problem(gold, answer_type, choices), extraction) is expected


def test_extraction_prompt_is_the_official_few_shot_prompt():
    prompt = mathverse.extraction_prompt("So the answer is 3.")
    assert prompt.startswith("I am providing you a response from a model to a math problem")
    assert "Extracted Answer: null" in prompt and prompt.count("Model response:") == 7
    assert prompt.endswith("7.\n\nModel response: 'So the answer is 3.'\nExtracted Answer: ")
    assert mathverse.clean_extraction("Extracted Answer: B\n\n8.\nModel response") == "B"


class _EchoEngine:
    """Stands in for GenerationEngine: answers "Extracted Answer: <last letter of prompt>"."""

    class handle:
        source = "echo"

    def __init__(self):
        self.prompts = []

    def generate(self, requests, progress=False):
        from mathjax_vl.eval.generation import Generation

        self.prompts += [r.text for r in requests]
        return [Generation(f"Extracted Answer: {r.text[-21]}", (), "stop") for r in requests]


def test_model_extractions_are_judged_by_rules(tmp_path):
    choices = ("A: 1", "B: 2", "C: 3")
    problems = [_problem("B", "multi_choice", choices, pid=str(i)) for i in range(3)]
    responses = ["... it is B", "... it is C", "... so A"]  # the echo engine reads the letter
    extractor = mathverse.ModelExtractor(_EchoEngine())
    items = score_all(problems, responses, "mathverse", extractor.extract(responses))
    assert [i.extracted for i in items] == ["B", "C", "A"]
    assert [i.correct for i in items] == [True, False, False] and {i.rule for i in items} == {
        "model"
    }
    assert extractor.engine.prompts[0] == mathverse.extraction_prompt(responses[0])
    with pytest.raises(ValueError, match="3 responses but 2 extractions"):
        score_all(problems, responses, "mathverse", ["B", "C"])


def _assets():
    if "_tiny_assets" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "_tiny_assets", pathlib.Path(__file__).with_name("_tiny_assets.py")
        )
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        sys.modules["_tiny_assets"] = module
    return sys.modules["_tiny_assets"]


def test_model_extractor_runs_a_tiny_random_model_end_to_end(tmp_path):
    """Plumbing only: load via eval loading, batched decoding on the official prompt, the
    extraction judged by rules and reported. (A random model's extractions mean nothing.)"""
    from mathjax_vl.eval.generation import GenerationConfig, GenerationEngine, Request
    from mathjax_vl.eval.loading import load_model

    assets = _assets()
    llava_dir, _ = assets.shared_llava()  # holds the tokenizer
    qwen_dir, _ = assets.make_qwen2(str(tmp_path), llava_dir)
    engine = GenerationEngine(
        load_model(qwen_dir), GenerationConfig(max_new_tokens=6, batch_size=2)
    )
    extractor = mathverse.ModelExtractor(engine, max_response_words=8)
    versions = ("text_dominant", "text_lite", "vision_intensive", "vision_dominant", "vision_only")
    problems = [_problem("3", "integer", pid="1", version=v) for v in versions]
    responses = [f"Triangle ABC has side {i} cm. The answer is {i}." for i in range(5)]
    summary = evaluate(problems, "mathverse", tmp_path / "out", responses=responses,
                       extractor=extractor)  # fmt: skip
    direct = engine.generate([Request(mathverse.extraction_prompt(r.split(" ", 1)[1])) for r in
                              responses[:1]])  # fmt: skip
    items = [line for line in (tmp_path / "out" / "items.jsonl").read_text().splitlines()]
    assert len(items) == 5 and summary["extractor"] == {"model": engine.handle.source}
    assert summary["breakdown"]["per_subject"]["plane geometry"]["total"] == 5
    assert isinstance(direct[0].text, str)
