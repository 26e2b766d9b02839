"""Rule-based answer extraction: the answer a free-text response commits to (no GPT judge).

The official MathVerse / MathVista pipelines ask a GPT model "what answer does this response
give?". We answer the same question with explicit rules. A response states its answer in a few
places, tried from the most to the least explicit:

1. a `\\boxed{}` (the last one);
2. a final-answer phrase ("the answer is", "Answer:", "the correct option is", "答案是", ...),
   its last occurrence, up to the end of that sentence;
3. a bold span (`**...**`), the last one that holds an answer;
4. for multiple choice: the last line, then the first line (answers stated first: "(B) No, ..."),
   then the last sentence naming exactly one option (by letter, by its text, or for yes/no
   questions a yes/no stated or implied by a negation);
5. for free-form: the number of a short one-sentence reply ("There are 2 items sold less than 5
   units" commits to 2, not 5), else the last number.

Within a span a choice is read as its letter ("(B)", "B.", "option B"), an option's exact text
(option texts that are themselves letters such as "(b)" included), or an option's text quoted in
the span. Which rule fired is returned so reports show how often each was needed.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from collections.abc import Sequence

from mathjax_vl.eval.safety import clip_response

_PHRASES = (
    r"final answers?\s*(?:is|are|:|should be|would be)",
    r"(?:the|my|our)\s+(?:correct\s+|best\s+|final\s+|right\s+)?(?:answer|option|choice)"
    r"(?:\s+to\s+(?:the|this)\s+question)?\s*(?:is|are|should be|would be|will be|:)",
    r"\banswer\s*(?:is|:)",
    r"\bthe answer\s*=",
    r"final (?:value|result)\s*(?:is|:)",
    r"答案(?:是|为|应该是|应为)?\s*[:：]?",
    r"(?:我们|所以|因此)?选(?:择|项)?\s*(?:为|是)?\s*[:：]?",
)
_PHRASE_RE = re.compile("|".join(f"(?:{p})" for p in _PHRASES), re.IGNORECASE)
_BOLD_RE = re.compile(r"\*\*([^*\n]{1,200})\*\*")
_NUMBER_RE = re.compile(
    r"(?<![\w.])[-−+]?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+(?:\.\d+)?)?(?![\w])"
    r"|(?<![\w.])[-−]?\.\d+"
)
_FRAC_RE = re.compile(r"\\[dt]?frac\s*\{\s*(-?\d+(?:\.\d+)?)\s*\}\s*\{\s*(\d+(?:\.\d+)?)\s*\}")
_NUMBER_WORDS = {
    "zero": 0, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7,
    "eight": 8, "nine": 9, "ten": 10, "eleven": 11, "twelve": 12, "thirteen": 13,
    "fourteen": 14, "fifteen": 15, "sixteen": 16, "seventeen": 17, "eighteen": 18,
    "nineteen": 19, "twenty": 20, "none": 0, "no": 0,
}  # fmt: skip
_NUMBER_WORD_RE = re.compile(r"\b(" + "|".join(_NUMBER_WORDS) + r")\b", re.IGNORECASE)
_NEGATION_RE = re.compile(
    r"\b(?:not|no|never|neither|nor|none|cannot|isn't|aren't|doesn't|don't|didn't|wasn't|"
    r"weren't|won't|hasn't|haven't|can't|couldn't|shouldn't|fails?|lacks?|without)\b|n't\b",
    re.IGNORECASE,
)
_YES_RE = re.compile(r"^\W*(yes|no)\b", re.IGNORECASE)
_REFUSAL_RE = re.compile(
    r"\b(?:cannot|can't|can ?not|unable|impossible|not possible|enough information|"
    r"(?:does|do|did)(?: not|n't) (?:provide|give|specify|mention|include|contain|show|say)|"
    r"no (?:specific |further |additional )?(?:information|context|data|details)|"
    r"(?:is|are) (?:unclear|ambiguous|incomplete|nonsensical|invalid)|more (?:context|details)|"
    r"insufficient|not (?:clear|specified|provided|given)|no (?:image|figure|graph|information)|"
    r"not able|don't have|do not have|need more|provide more|without (?:the|an?) (?:image|figure)|"
    r"please (?:provide|describe|share|clarify|specify)|"
    r"none of the (?:given |provided )?(?:options|choices|answers|above)|"
    r"no correct (?:option|answer)|"
    r"not (?:available|listed|present|included|among|one of|in the (?:given |provided )?"
    r"(?:options|choices|list))|"
    r"(?:a|an) (?:mistake|error|typo) in the (?:question|options|choices)|"
    r"(?:is|are) not (?:valid|clear|correct|possible to)|as an ai|text-based ai|language model)"
    r"|不在选[项择]|没有(?:正确|合适)的?(?:答案|选项)|无法(?:确定|判断|回答)",
    re.IGNORECASE,
)


@dataclasses.dataclass(frozen=True)
class ExtractedAnswer:
    """The answer span pulled from a response and the rule that produced it."""

    text: str | None
    rule: str  # boxed | phrase | bold | last_line | first_line | option_mention | yes_no |
    # short_reply | last_number | last_line_text | none


# --- spans ---------------------------------------------------------------------------------------


def find_boxed(response: str) -> str | None:
    """Content of the last \\boxed{...} or \\fbox{...}, with balanced braces (unclosed: to end)."""
    last = None
    for match in re.finditer(r"\\(?:boxed|fbox)\s*\{", response):
        depth, start = 1, match.end()
        end = len(response)
        for pos in range(start, min(len(response), start + 2000)):
            char = response[pos]
            depth += (char == "{") - (char == "}")
            if depth == 0:
                end = pos
                break
        last = response[start:end].strip()
    return last


def _clean_span(span: str) -> str:
    """A phrase's continuation cut at the end of its sentence (keeps "3.5" and "(B)")."""
    span = span.lstrip(" \t*").lstrip(":：").lstrip(" \t*")
    line = span.split("\n", 1)[0].strip()
    if not line:  # "Answer:\n(B)": the next line, when it is short enough to be an answer
        following = span.strip().split("\n", 1)[0].strip()
        line = following if len(following) <= 40 else ""
    sentence = re.split(r"(?<=[^\d\s])\.(?:\s|$)|(?<=\d)\.(?=\s|$)|[。;；]", line, maxsplit=1)[0]
    sentence = sentence.strip().strip("*").strip()
    sentence = re.sub(r"^\$+|\$+$", "", sentence).strip()
    return sentence


def _conditional(response: str, start: int) -> bool:
    """Whether the clause before `start` is a condition ("If x > y, the answer is (A)")."""
    before = response[max(0, start - 300) : start]
    clause = re.split(r"[.!?。\n]\s", before)[-1]
    pattern = r"(?i)\b(?:if|unless|whether|suppose|assuming|otherwise)\b|如果|若"
    return re.search(pattern, clause) is not None


def phrase_spans(response: str) -> list[str]:
    """The text after each final-answer phrase, last occurrence first (conditional ones, "if
    ..., the answer is (A)", are no commitment and are skipped)."""
    spans = []
    for match in reversed(list(_PHRASE_RE.finditer(response))):
        if _conditional(response, match.start()):
            continue
        span = _clean_span(response[match.end() : match.end() + 400])
        if span:
            spans.append(span)
    return spans


def find_phrase_answer(response: str) -> str | None:
    """The text after the last final-answer phrase, up to the end of its sentence."""
    spans = phrase_spans(response)
    return spans[0] if spans else None


def bold_spans(response: str) -> list[str]:
    """Bold spans, last first (headers such as "**Step 1:**" are skipped)."""
    spans = []
    for match in reversed(list(_BOLD_RE.finditer(response))):
        text = match.group(1).strip()
        if text and not re.match(r"(?i)^(step|note|solution|explanation)\b", text):
            spans.append(text.rstrip(":").strip())
    return spans


def _lines(response: str) -> list[str]:
    return [line.strip() for line in response.splitlines() if line.strip()]


def _sentences(response: str) -> list[str]:
    parts = re.split(r"(?<=[^\d\s][.!?])\s+|(?<=\d[.!?])\s+(?=[A-Z])|\n+|[。！？]", response)
    return [p.strip() for p in parts if p and p.strip()]


# --- numbers -------------------------------------------------------------------------------------


def numbers_in(span: str) -> list[str]:
    """Plain numbers in `span`, in order ("1,250" -> "1250", "\\frac{1}{2}" -> "1/2")."""
    span = _FRAC_RE.sub(lambda m: f" {m.group(1)}/{m.group(2)} ", span)
    found = []
    for match in _NUMBER_RE.finditer(span):
        text = match.group(0).replace(",", "").replace(" ", "").replace("−", "-").lstrip("+")
        found.append(text)
    return found


def find_last_number(response: str) -> str | None:
    numbers = numbers_in(response)
    return numbers[-1] if numbers else None


_STATED_RE = re.compile(
    r"(?i)(?:\b(?:is|are|was|were|equals?|be|becomes?|gives?|get|has|have|of)|[=:≈])\s+"
    r"(?:about|approximately|around|roughly|exactly|only|just|now|then|a total of|\$|\*\*)?\s*"
    r"(?=[-−]?\$?\d|[-−]?\.\d)"
)


def stated_number(sentence: str) -> str | None:
    """The number right after the sentence's last "is/are/=/:" ("the number of bars below 40 is
    3" -> 3, "There are 2 items sold less than 5 units" -> 2); None when no such statement."""
    matches = list(_STATED_RE.finditer(sentence))
    for match in reversed(matches):
        numbers = numbers_in(sentence[match.end() : match.end() + 60])
        if numbers:
            return numbers[0]
    return None


def sentence_number(sentence: str) -> str | None:
    """The number a sentence states as its result: after its last "=", else the first number of
    its main clause ("Since the 4 dots form 2 groups, there are 2 in each" -> the main clause)."""
    if "=" in sentence:
        after = numbers_in(sentence.rsplit("=", 1)[1])
        if after:
            return after[0]
    main = sentence
    if re.match(r"(?i)^\W*(?:since|as|because|if|given|when|after|from|with|using)\b", sentence):
        main = sentence.split(",", 1)[1] if "," in sentence else sentence
    numbers = numbers_in(main) or numbers_in(sentence)
    return numbers[0] if numbers else None


def _number_word(span: str) -> str | None:
    match = _NUMBER_WORD_RE.search(span)
    return str(_NUMBER_WORDS[match.group(1).lower()]) if match else None


# --- choices -------------------------------------------------------------------------------------


def _fold(text: str) -> str:
    text = text.replace("√", "sqrt").replace("−", "-").replace("°", "").replace("^\\circ", "")
    return re.sub(r"[\s$*{}\\]+", "", text).lower().strip(".:")


def _option_body(choice: str) -> str:
    """'A: 12 cm' / '(A) 12 cm' -> '12 cm' (the loaders keep letters on some benchmarks)."""
    return re.sub(r"^\s*\(?[A-H]\)?\s*[:.)]\s*", "", choice) or choice


@functools.lru_cache(maxsize=32)
def _letters(num_choices: int) -> str:
    return "".join(chr(ord("A") + i) for i in range(min(num_choices, 26)))


def find_choice_letter(span: str, num_choices: int) -> str | None:
    """An option letter named in `span`: "(B)", "B.", "B:", "option B", a bare "B", "**B**"."""
    if num_choices <= 0 or not span:
        return None
    letters = f"[{_letters(num_choices)}]"
    span = span.strip().strip("*").strip()
    patterns = (
        rf"^\(?({letters})\)?(?=$|[\s).,:;\]*]|\W)",  # leading letter
        rf"(?:option|choice|选项)\s*(?:为|是)?\s*\(?({letters})\)?(?![A-Za-z])",
        rf"\(({letters})\)",
        rf"(?:^|[\s\[:*])({letters})(?=$|[\s).,:;\]*])",
    )
    for pattern in patterns:
        match = re.search(pattern, span, flags=re.IGNORECASE if "option" in pattern else 0)
        if match:
            letter = match.group(1).upper()
            # "A" as an English article ("A triangle ...") is not a choice.
            if pattern.endswith(r"|\W)") and letter == "A" and re.match(r"^A\s+[a-z]", span):
                continue
            return letter
    return None


def match_choice_text(span: str, choices: Sequence[str]) -> str | None:
    """The letter of the option whose text equals `span` (folded), if exactly one does."""
    folded = _fold(span)
    if not folded:
        return None
    hits = [
        chr(ord("A") + i)
        for i, choice in enumerate(choices)
        if _fold(_option_body(choice)) == folded or _fold(choice) == folded
    ]
    return hits[0] if len(hits) == 1 else None


def _quoted_option(span: str, choices: Sequence[str]) -> str | None:
    """The option whose text appears in `span` as a whole word; the earliest, then the longest."""
    folded_span = " " + re.sub(r"\s+", " ", span.replace("−", "-")).lower() + " "
    best = None
    for index, choice in enumerate(choices):
        body = re.sub(r"\s+", " ", _option_body(choice).replace("−", "-")).strip().lower()
        if not body:
            continue
        pattern = r"(?<![\w.])" + re.escape(body) + r"(?![\w]|\.\d)"
        match = re.search(pattern, folded_span)
        if match:
            key = (match.start(), -len(body))
            if best is None or key < best[0]:
                best = (key, chr(ord("A") + index))
    return best[1] if best else None


# Words an option is often paraphrased with, mapped to one canonical word ("f'(2) is less than
# f'(5)" answers the option "smaller than").
_SYNONYMS = {
    "less": "smaller", "fewer": "smaller", "lower": "smaller", "shorter": "smaller",
    "smallest": "smallest", "least": "smallest", "lowest": "smallest", "fewest": "smallest",
    "greater": "larger", "bigger": "larger", "higher": "larger", "more": "larger",
    "taller": "larger", "longer": "larger", "largest": "largest", "greatest": "largest",
    "biggest": "largest", "highest": "largest", "most": "largest", "same": "equal",
    "equals": "equal", "identical": "equal", "increases": "increase", "increasing": "increase",
    "decreases": "decrease", "decreasing": "decrease", "grows": "increase", "rises": "increase",
    "falls": "decrease", "drops": "decrease", "rise": "increase", "grow": "increase",
    "fall": "decrease", "drop": "decrease", "up": "increase", "down": "decrease",
}  # fmt: skip


def _canonical_words(text: str) -> str:
    words = re.findall(r"[\w.%°√/+-]+", text.lower())
    return " ".join(_SYNONYMS.get(w, w) for w in words)


def _paraphrased_option(sentence: str, choices: Sequence[str]) -> str | None:
    """The option quoted in `sentence` once both are put in canonical words (synonyms), when
    exactly one option matches that way."""
    canonical = [_canonical_words(_option_body(c)) for c in choices]
    if len(set(canonical)) < len(canonical):
        return None
    return _quoted_option(_canonical_words(sentence), canonical)


def _is_yes_no(choices: Sequence[str]) -> bool:
    return sorted(_fold(_option_body(c)) for c in choices) == ["no", "yes"]


def _yes_no_letter(answer: str, choices: Sequence[str]) -> str:
    for index, choice in enumerate(choices):
        if _fold(_option_body(choice)) == answer:
            return chr(ord("A") + index)
    raise ValueError("not a yes/no question")


def choice_in_span(span: str, choices: Sequence[str]) -> str | None:
    """The option letter a span commits to, or None."""
    if not span or not span.strip():
        return None
    exact = match_choice_text(span, choices)
    if exact is not None:
        return exact
    letter = find_choice_letter(span, len(choices))
    if letter is not None:
        return letter
    if _is_yes_no(choices):
        yes_no = _YES_RE.match(span)
        if yes_no:
            return _yes_no_letter(yes_no.group(1).lower(), choices)
    return _quoted_option(span, choices)


def _implied_yes_no(sentence: str, choices: Sequence[str]) -> str | None:
    """'Periwinkle is not the maximum' -> No; an affirmative statement -> Yes; refusals -> None."""
    explicit = re.search(r"\b(yes|no)\b", sentence, re.IGNORECASE)
    if explicit and re.match(r"^\W*(?:so|thus|therefore|hence)?,?\s*(yes|no)\b", sentence, re.I):
        return _yes_no_letter(explicit.group(1).lower(), choices)
    if _REFUSAL_RE.search(sentence) or sentence.endswith("?"):
        return None
    answer = "no" if _NEGATION_RE.search(sentence) else "yes"
    return _yes_no_letter(answer, choices)


# --- extraction ----------------------------------------------------------------------------------


def declines(response: str) -> bool:
    """Whether the response ends by declining to answer (no information, no option fits)."""
    return any(_REFUSAL_RE.search(s) for s in _sentences(response)[-2:])


def _extract_choice(response: str, choices: Sequence[str]) -> ExtractedAnswer:
    boxed = find_boxed(response)
    ranked: list[tuple[str, str]] = []
    if boxed is not None:
        ranked.append(("boxed", boxed))
    ranked += [("phrase", s) for s in phrase_spans(response)[:3]]
    ranked += [("bold", s) for s in bold_spans(response)[:3]]
    lines = _lines(response)
    if lines and not declines(response):
        ranked.append(("last_line", lines[-1]))
        ranked.append(("first_line", lines[0]))
    for rule, span in ranked:
        if rule in ("last_line", "first_line"):
            # A whole line counts only when it is short or leads with a letter/option.
            letter = find_choice_letter(span, len(choices)) if len(span) < 80 else None
            letter = letter or match_choice_text(span, choices)
            if letter is None and re.match(r"^\W*\(?[A-H]\)?[.:)]", span):
                letter = find_choice_letter(span[:4], len(choices))
            if letter is None and _is_yes_no(choices) and _YES_RE.match(span):
                letter = _yes_no_letter(_YES_RE.match(span).group(1).lower(), choices)
            if letter is not None:
                return ExtractedAnswer(letter, rule)
            continue
        letter = choice_in_span(span, choices)
        if letter is not None:
            return ExtractedAnswer(letter, rule)
    sentences = _sentences(response)
    if declines(response):
        return ExtractedAnswer(None, "none")
    for sentence in reversed(sentences[-3:]):
        if _REFUSAL_RE.search(sentence):
            continue
        letter = _quoted_option(sentence, choices)
        if letter is not None:
            return ExtractedAnswer(letter, "option_mention")
    for sentence in reversed(sentences[-2:]):
        letter = None if _REFUSAL_RE.search(sentence) else _paraphrased_option(sentence, choices)
        if letter is not None:
            return ExtractedAnswer(letter, "paraphrase")
    if _is_yes_no(choices) and sentences:
        for sentence in (sentences[-1], sentences[0]):
            letter = _implied_yes_no(sentence, choices)
            if letter is not None:
                return ExtractedAnswer(letter, "yes_no")
    if sentences and len(sentences[-1]) <= 80:
        # A short final statement naming no option ("The bar is blue"): the answer text itself;
        # MathVista's normalisation maps it to the nearest option, as it does GPT's extraction.
        return ExtractedAnswer(sentences[-1].rstrip(".").strip(), "answer_text")
    return ExtractedAnswer(None, "none")


def _span_number(span: str, answer_type: str | None) -> str | None:
    if answer_type == "list":
        match = re.search(r"\[[^\[\]]*\]", span)
        if match:
            return match.group(0)
    numbers = numbers_in(span)
    if answer_type == "list" and len(numbers) > 1:
        return "[" + ", ".join(numbers) + "]"
    if numbers:
        return numbers[0]
    return _number_word(span) if answer_type in ("integer", None) else None


def _free_text_answer(response: str) -> ExtractedAnswer:
    """A non-numeric answer (expression, interval, coordinates): a short last line, else what
    the last sentence states after its last "is" / "=" / ":"."""
    lines = _lines(response)
    if not lines:
        return ExtractedAnswer(None, "none")
    last = lines[-1].rstrip(".").strip().strip("*$").strip()
    if len(lines) > 1 and len(last) <= 60:
        return ExtractedAnswer(last, "last_line")
    sentences = _sentences(response)
    sentence = sentences[-1].rstrip(".") if sentences else last
    parts = re.split(r"\b(?:is|are|equals)\s+|=|:\s", sentence)
    answer = parts[-1].strip().strip("*$").strip() if len(parts) > 1 else sentence
    return ExtractedAnswer(answer or None, "last_sentence" if answer else "none")


def _extract_free(response: str, answer_type: str | None) -> ExtractedAnswer:
    boxed = find_boxed(response)
    if boxed is not None:
        return ExtractedAnswer(boxed, "boxed")
    numeric = answer_type in ("integer", "float", "list")
    for rule, spans in (("phrase", phrase_spans(response)[:2]), ("bold", bold_spans(response)[:2])):
        for span in spans:
            if not numeric:
                return ExtractedAnswer(span, rule)
            number = _span_number(span, answer_type)
            if number is not None:
                return ExtractedAnswer(number, rule)
    if declines(response):
        return ExtractedAnswer(None, "none")
    if not numeric:
        return _free_text_answer(response)
    sentences = _sentences(response)
    if answer_type == "list":
        lists = re.findall(r"\[[^\[\]]*\]", response)
        if lists:
            return ExtractedAnswer(lists[-1], "last_number")
        for sentence in reversed(sentences[-3:]):  # "between 2007 and 2008" -> [2007, 2008]
            numbers = numbers_in(sentence)
            if len(numbers) > 1:
                return ExtractedAnswer("[" + ", ".join(numbers) + "]", "last_sentence")
    # The last sentence that states a number commits to it; within that sentence the stated
    # result comes first ("There are 2 items sold less than 5 units" commits to 2, not 5).
    for sentence in reversed(sentences[-4:]):
        number = stated_number(sentence)
        if number is not None:
            return ExtractedAnswer(number, "stated")
    for sentence in reversed(sentences[-4:]):
        number = sentence_number(sentence)
        if number is not None:
            return ExtractedAnswer(number, "last_sentence")
    number = find_last_number(response)
    if number is not None:
        return ExtractedAnswer(number, "last_number")
    lines = _lines(response)
    if lines:
        return ExtractedAnswer(lines[-1], "last_line_text")
    return ExtractedAnswer(None, "none")


def extract_answer(
    response: str, choices: Sequence[str] | None = None, answer_type: str | None = None
) -> ExtractedAnswer:
    """The answer `response` commits to: an option letter when `choices` are given, else a span
    (a number for numeric `answer_type`s). Never raises; None when there is no answer."""
    text = clip_response(response)
    if not text.strip():
        return ExtractedAnswer(None, "none")
    if choices:
        return _extract_choice(text, list(choices))
    return _extract_free(text, answer_type)
