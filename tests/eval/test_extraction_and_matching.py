"""Hand-made responses for each benchmark answer format, scored by extraction + matching."""

import pytest

from mathjax_vl.eval.extraction import extract_answer, find_boxed
from mathjax_vl.eval.matching import answers_match, levenshtein, mathvista_normalize

CHOICES = ["A: 30°", "B: 40°", "C: 50°", "D: 60°"]


@pytest.mark.parametrize(
    ("response", "expected", "rule"),
    [
        ("Angle ABC equals 50°, so the answer is C.", "C", "phrase"),
        ("Since the angles sum to 180, \\boxed{B}", "B", "boxed"),
        ("Reasoning...\nAnswer: (D)", "D", "phrase"),
        ("We get 40°.\nThe correct option is B: 40°", "B", "phrase"),
        ("Thus the answer is 50°.", "C", "phrase"),  # option text mapped to its letter
        ("Looking at the figure...\nA", "A", "last_line"),
    ],
)
def test_multiple_choice_letters_and_option_texts(response, expected, rule):
    extracted = extract_answer(response, CHOICES)
    assert (extracted.text, extracted.rule) == (expected, rule)
    assert answers_match(extracted.text, expected, "multi_choice", choices=CHOICES)


def test_wrong_letter_does_not_match():
    extracted = extract_answer("So the answer is B.", CHOICES)
    assert not answers_match(extracted.text, "C", "multi_choice", choices=CHOICES)
    # A word that starts with a letter is not a letter answer.
    assert extract_answer("The answer is Because of symmetry, 3", CHOICES).text != "B"


def test_boxed_with_nested_braces_takes_the_last():
    response = "first \\boxed{1} then \\boxed{\\frac{3}{4}} done"
    assert find_boxed(response) == "\\frac{3}{4}"


@pytest.mark.parametrize(
    ("response", "gold", "answer_type", "precision", "expected"),
    [
        ("The answer is 12.", "12", "integer", None, True),
        ("The answer is 12 cm.", "12", "integer", None, True),
        ("so the area is 1,250", "1250", "integer", None, True),
        ("The answer is 12.5", "12", "integer", None, False),
        ("Answer: 3.14159", "3.14", "float", 2, True),
        ("Answer: 3.15", "3.14", "float", 2, False),
        ("The answer is 0.75", "3/4", "fraction", None, True),
        ("The answer is \\frac{3}{4}", "0.75", "fraction", None, True),
        ("\\boxed{\\frac{2}{3}}", "3/4", "fraction", None, False),
        ("The answer is 2\\sqrt{3}", "\\sqrt{12}", "expression", None, True),
        ("\\boxed{x^2 + 2x + 1}", "(x+1)^2", "expression", None, True),
        ("\\boxed{x^2 + 1}", "(x+1)^2", "expression", None, False),
        ("The answer is [1, 3)", "[1,3)", "interval", None, True),
        ("The answer is (1, 3)", "[1,3)", "interval", None, False),
        ("Final answer: 40°", "40", "integer", None, True),
        ("I cannot tell.", "7", "integer", None, False),
    ],
)
def test_numeric_and_symbolic_answers(response, gold, answer_type, precision, expected):
    extracted = extract_answer(response)
    assert answers_match(extracted.text, gold, answer_type, precision=precision) is expected


def test_last_number_fallback_and_empty():
    assert extract_answer("First 3. Then 4.\nFinally 5", None, "integer").text == "5"
    assert answers_match(extract_answer("First 3. Then 4.\nFinally 5").text, "5", "free_form")
    # The answer stated first (issue 14): not the last number of the sentence.
    assert extract_answer("There are 2 items sold less than 5 units.", None, "integer").text == "2"
    assert extract_answer("   ").rule == "none"
    assert not answers_match(None, "3", "integer")


def test_unknown_answer_type_is_an_error():
    with pytest.raises(ValueError, match="answer_type 'number'"):
        answers_match("3", "3", "number")


def test_levenshtein_closed_forms():
    assert levenshtein("kitten", "sitting") == 3
    assert levenshtein("", "abc") == 3
    assert levenshtein("abc", "abc") == 0


def test_mathvista_normalisation():
    choices = ["3", "4.5", "triangle", "square"]
    assert (
        mathvista_normalize("B", question_type="multi_choice", answer_type="text", choices=choices)
        == "4.5"
    )
    assert (
        mathvista_normalize(
            "squares", question_type="multi_choice", answer_type="text", choices=choices
        )
        == "square"
    )
    assert mathvista_normalize("7.0", question_type="free_form", answer_type="integer") == "7"
    assert (
        mathvista_normalize("2.456", question_type="free_form", answer_type="float", precision=2)
        == "2.46"
    )
    assert mathvista_normalize("abc", question_type="free_form", answer_type="integer") is None
    with pytest.raises(ValueError, match="needs its choices"):
        mathvista_normalize("A", question_type="multi_choice", answer_type="text")


@pytest.mark.parametrize(
    ("response", "choices", "expected", "rule"),
    [
        # The typical failures of issue 14, each as the response commits to it.
        ("The answer is **(B) No**", ("Yes", "No"), "B", "phrase"),
        ("**(C) 7**\n\nBecause the angles sum to 180.", ("5", "6", "7"), "C", "bold"),
        ("Looking at the chart, Periwinkle is not the maximum.", ("yes", "no"), "B", "yes_no"),
        ("Looking at the chart, Periwinkle has the maximum value.", ("yes", "no"), "A", "yes_no"),
        (
            "f'(2) = 12 and f'(5) = 75, so the derivative at x=2 is less than at x=5.",
            ("larger than", "equal to", "smaller than"),
            "C",
            "paraphrase",
        ),
        (
            "(B) 8/11\n\nSince 8 of the 11 parts are blue, 3/11 are not blue.",
            ("3/11", "8/11", "6/11"),
            "B",
            "first_line",
        ),
        (
            "If the bars are equal, the answer is (A) Yes. Otherwise, the answer is (B) No. "
            "Without the data we cannot determine the answer.",
            ("Yes", "No"),
            None,
            "none",
        ),
        ("The correct option is (b).", ("(c)", "(a)", "(b)"), "C", "phrase"),  # option text "(b)"
        ("所以答案是C", ("1", "1.5", "2"), "C", "phrase"),
    ],
)
def test_choice_commitments(response, choices, expected, rule):
    extracted = extract_answer(response, choices, "multi_choice")
    assert (extracted.text, extracted.rule) == (expected, rule)


@pytest.mark.parametrize(
    ("response", "answer_type", "expected"),
    [
        ("The total is 1,250 dollars.", "integer", "1250"),
        ("So the percentage is 45%.", "integer", "45"),
        ("Therefore, the number of bars with value below 40 is 3.", "integer", "3"),
        (
            "Since the 4 dots are divided into 2 equal groups, there are 4/2 = 2 dots.",
            "integer",
            "2",
        ),
        ("The line graph peaks between 2007 and 2008.", "list", "[2007, 2008]"),
        ("The answer is $\\frac{3}{4}$.", "float", "3/4"),
        ("The question does not provide enough information to find f(0).", "integer", None),
    ],
)
def test_free_form_commitments(response, answer_type, expected):
    assert extract_answer(response, None, answer_type).text == expected


def test_mathvista_list_and_unicode_normalisation():
    assert (
        mathvista_normalize("2007, 2008", question_type="free_form", answer_type="list")
        == "[2007, 2008]"
    )
    assert (
        mathvista_normalize("3/4", question_type="free_form", answer_type="float", precision=2)
        == "0.75"
    )
