"""MathVerse's official two-step protocol (answer extraction, then judging), without a paid API.

The official scripts (ZrrSkywalker/MathVerse `evaluation/`) ask GPT twice: step 1 extracts the
answer from the response with a few-shot prompt, step 2 judges the extraction against the gold
answer; the score script then prints per subject-subfield, per subject, total, per version and
overall accuracy. We mirror both steps:

- step 1 by rules (`mathjax_vl.eval.extraction`: an option letter, else the answer span), or,
  optionally, by a LOCAL instruct model run by our batched decoding on the official few-shot
  extraction prompt (`ModelExtractor`; its accuracy is never claimed without a real model);
- step 2 by rules (`mathjax_vl.eval.matching.answers_match`: letters exactly, numbers to
  precision, expressions by math-verify), the official "null" extraction being wrong;
- the report rows by `mathjax_vl.eval.metrics.mathverse_breakdown`.

The extraction prompt below is the official one (MIT License, Copyright (c) 2024 Renrui Zhang),
kept verbatim so a local model sees exactly what GPT saw.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from mathjax_vl.data.records import EvalProblem
from mathjax_vl.eval.extraction import extract_answer
from mathjax_vl.eval.matching import answers_match
from mathjax_vl.eval.safety import clip_response

NULL_EXTRACTION = "null"  # what the official prompt's example 4 extracts from a non-answer

MATHVERSE_EXTRACT_PROMPT = (
    "I am providing you a response from a model to a math problem, termed"
    " 'Model Response'. You should extract the answer from the response as"
    " 'Extracted Answer'. Directly output the extracted answer with no"
    " explanation.\n"
    "\n"
    "1.\n"
    "Model response: 'Rounded to two decimal places, the perimeter of the"
    " sector is approximately:\n"
    "\n"
    "(-2, 1)'\n"
    "Extracted Answer: (-2, 1)\n"
    "\n"
    "2.\n"
    "Model response: 'at those points.\n"
    "\n"
    "Therefore, the correct option that represents the meaning of the"
    " intersection points of the graphs is:\n"
    "\n"
    "D. They give the solutions to the equation $f(t)=g(t)$.\",'\n"
    "Extracted Answer: D\n"
    "\n"
    "3.\n"
    "Model response: ' at 1 (there's a closed circle at y = 1), the range"
    " in interval notation is \\((-4, 1]\\).\n"
    "\n"
    "Final values:\n"
    "Domain: \\((-3, 3]\\)\n"
    "Range: \\((-4, 1]\\)'\n"
    "Extracted Answer: Domain: \\((-3, 3]\\)\n"
    "Range: \\((-4, 1]\\)\n"
    "\n"
    "4.\n"
    "Model response: 'As it stands, I cannot provide the correct option"
    " letter because there isn't enough information to solve for 'y'.'\n"
    "Extracted Answer: null\n"
    "\n"
    "5.\n"
    "Model response: 'Given that AB = 17.6 meters, we can now substitute"
    " into the equation:\n"
    "\n"
    "d = 17.6 / cos(38°)\n"
    "\n"
    "Therefore, to one decimal place, the distance d between Ned and Bart"
    " is approximately 22.3 meters.'\n"
    "Extracted answer: 22.3\n"
    "\n"
    "6.\n"
    "Model response:  have all the coefficients for the quadratic"
    " function:\n"
    "\\( f(x) = ax^2 + bx + c \\)\n"
    "\\( f(x) = -1x^2 - 2x + 1 \\)\n"
    "\n"
    "Therefore, the equation for the graphed function \\( f \\) is:\n"
    "\\( f(x) = -x^2 - 2x + 1 \\)\"'\n"
    "Extracted answer: f(x) = -x^2 - 2x + 1\n"
    "\n"
    "7."
)


def extraction_prompt(response: str) -> str:
    """The official step-1 prompt for one response: the few-shot demo, then the response."""
    return f"{MATHVERSE_EXTRACT_PROMPT}\n\nModel response: '{response}'\nExtracted Answer: "


def clean_extraction(text: str) -> str:
    """A model's step-1 output as the official script keeps it: "Extracted Answer: " removed,
    stripped; the first line only (a small model may run on into a next example)."""
    text = str(text).replace("Extracted Answer: ", "").replace("Extracted answer: ", "").strip()
    return text.split("\n\n", 1)[0].strip()


def rule_extract(problem: EvalProblem, response: str) -> str:
    """Step 1 by rules: the option letter or the answer span; "null" when there is none."""
    extracted = extract_answer(response, problem.choices, problem.answer_type)
    return extracted.text if extracted.text is not None else NULL_EXTRACTION


def judge(problem: EvalProblem, extraction: str) -> bool:
    """Step 2 by rules: whether the extraction is the gold answer ("null" never is)."""
    extraction = clip_response(extraction).strip()
    if not extraction or extraction.lower() == NULL_EXTRACTION:
        return False
    answer = extraction
    if problem.choices:  # a choice extraction is itself a short response: "D", "B:2√3"
        answer = extract_answer(extraction, problem.choices, problem.answer_type).text
    return answers_match(
        answer,
        problem.answer,
        problem.answer_type,
        choices=problem.choices,
        precision=problem.precision,
    )


class ModelExtractor:
    """Step 1 by a local instruct model: the official few-shot prompt, greedy batched decoding.

    `engine` is a `mathjax_vl.eval.generation.GenerationEngine` over any model the eval loading
    can load (`mathjax_vl.eval.loading.load_model`); responses are cut to their last
    `max_response_words` words first (the official `--trunk_response`; <= 0 keeps them whole).
    """

    def __init__(self, engine: Any, max_response_words: int = 300):
        self.engine = engine
        self.max_response_words = max_response_words

    def extract(self, responses: Sequence[str], progress: bool = False) -> list[str]:
        from mathjax_vl.eval.generation import Request

        requests = [
            Request(extraction_prompt(self._trunk(r)), (), f"response {i}")
            for i, r in enumerate(responses)
        ]
        return [clean_extraction(g.text) for g in self.engine.generate(requests, progress)]

    def _trunk(self, response: str) -> str:
        if self.max_response_words <= 0:
            return response
        return " ".join(str(response).split(" ")[-self.max_response_words :])
