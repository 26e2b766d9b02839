"""Typed, validated records: the data currency between importers, storage, datagen and pipelines.

Every record is a frozen dataclass that validates on construction and converts to and from a plain
dict (`to_dict` / `record_from_dict`) holding only str, int, float, bool, None, list, dict and
bytes, so it crosses process boundaries cheaply and maps onto TFDS features (storage.py). Images
are always ENCODED bytes (PNG or JPEG), never decoded arrays: they stay small on disk and decode
lazily in the pipeline's workers.

Record types (the `kind` string is stored in every dict):

- `TextConversation` ("text_conversation", stage-1 text SFT): turns of
  {role: system|user|assistant, content}; no image placeholder allowed in the text.
- `MultimodalConversation` ("multimodal_conversation", stage-3 instruction tuning): turns whose
  content may contain IMAGE_PLACEHOLDER, plus `images`; placeholders in all turns == len(images).
- `PumaPair` ("puma_pair", stage-2 KL alignment): a text-rich and a vision-rich `PumaSide`
  (instruction + images) with ONE shared `solution`; importers reject pairs whose two solutions
  differ (reason "pair_mismatch").
- `ImageCaption` ("image_caption", CLIP-Math contrastive pretraining): image + caption.
- `ImageCode` ("image_code", MathCoder-VL image-to-code): image + source code, language
  "python" or "tikz".
- `PreferencePair` ("preference_pair", DPO): a prompt with its images, a chosen and a rejected
  response.
- `EvalProblem` ("eval_problem", MathVerse/MathVista-style evaluation): problem_id, version,
  question, images, optional choices, answer, answer_type, precision, metadata.

Image placeholder convention: IMAGE_PLACEHOLDER ("<image>") marks where one image goes in a turn's
text, one placeholder per image, in order. The pipeline expands each placeholder into the vision
tower's image-token count; a record never knows that count. When an importer gets images with no
placeholder in the text (Math-PUMA, MM-MathInstruct), it puts the placeholders at the start of the
first user turn, followed by a newline, as Math-PUMA's prompt does ("image before the instruction").

Errors: validation raises `RecordError(source, index, reason, message)`; `reason` is one of
ERROR_REASONS so a skip policy can count skipped records per reason.
"""

from __future__ import annotations

import dataclasses
import io
import json
import math
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

IMAGE_PLACEHOLDER = "<image>"
ROLES = ("system", "user", "assistant")
CODE_LANGUAGES = ("python", "tikz")
ANSWER_TYPES = ("multi_choice", "integer", "float", "free_form", "list")

# Short codes a skip policy counts by. Keep this set fixed: metrics and reports key on it.
ERROR_REASONS = frozenset(
    {
        "corrupt_image",  # bytes that are not a decodable PNG/JPEG
        "missing_image",  # an image path that does not exist under the image root
        "missing_field",  # a required key absent from the source record
        "empty_response",  # an assistant turn / solution / caption / code that is empty
        "pair_mismatch",  # PUMA pair whose two sides carry different solutions
        "image_count_mismatch",  # number of IMAGE_PLACEHOLDERs != number of images
        "too_long",  # a sample that cannot fit the configured max length
        "bad_value",  # a field present but with a wrong type or value
        "bad_format",  # a source line/file that cannot be parsed at all (bad JSON, ...)
    }
)

_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
_JPEG_MAGIC = b"\xff\xd8\xff"


class RecordError(ValueError):
    """A record that cannot be used, located by source file and record index.

    The message always reads "<source> record <index>: <message> [reason]" so a user can go
    straight to the offending line. Picklable (Grain workers raise it across processes).
    """

    def __init__(self, source: str, index: int | str, reason: str, message: str):
        if reason not in ERROR_REASONS:
            raise ValueError(
                f"unknown RecordError reason {reason!r}; expected one of {sorted(ERROR_REASONS)}"
            )
        super().__init__(source, index, reason, message)
        self.source = str(source)
        self.index = index
        self.reason = reason
        self.message = message

    def __str__(self) -> str:
        return f"{self.source} record {self.index}: {self.message} [{self.reason}]"

    def __reduce__(self):
        return (type(self), (self.source, self.index, self.reason, self.message))


# --------------------------------------------------------------------------------------------
# Small validation helpers. `where` is a (source, index) pair carried through validation.
# --------------------------------------------------------------------------------------------

_NO_SOURCE = ("<record>", "?")


def _fail(where: tuple[str, int | str], reason: str, message: str) -> RecordError:
    return RecordError(where[0], where[1], reason, message)


def _require_str(
    value: Any, name: str, where, *, allow_empty: bool = False, empty_reason: str = "bad_value"
) -> str:
    if not isinstance(value, str):
        raise _fail(
            where, "bad_value", f"field {name!r}: expected str, found {type(value).__name__}"
        )
    if not allow_empty and not value.strip():
        raise _fail(
            where, empty_reason, f"field {name!r}: expected non-empty text, found {value!r}"
        )
    return value


def image_format(data: bytes) -> str | None:
    """'png', 'jpeg' or None, from the magic bytes only (cheap, no decode)."""
    if data.startswith(_PNG_MAGIC):
        return "png"
    if data.startswith(_JPEG_MAGIC):
        return "jpeg"
    return None


def check_image_bytes(data: Any, name: str, where=_NO_SOURCE, *, decode: bool = False) -> bytes:
    """Validates encoded image bytes; with decode=True also fully decodes them with PIL.

    Construction only checks the magic bytes (fast, keeps records cheap to build); importers and
    the pipeline decode, and a decode failure there is a "corrupt_image" RecordError too.
    """
    if isinstance(data, (bytearray, memoryview)):
        data = bytes(data)
    if not isinstance(data, bytes):
        raise _fail(
            where,
            "bad_value",
            f"{name}: expected encoded PNG/JPEG bytes, found {type(data).__name__}",
        )
    if image_format(data) is None:
        head = data[:8]
        raise _fail(
            where,
            "corrupt_image",
            f"{name}: expected PNG or JPEG bytes, found {len(data)} bytes starting {head!r}",
        )
    if decode:
        decode_image(data, name, where)
    return data


def decode_image(data: bytes, name: str = "image", where=_NO_SOURCE):
    """Decodes encoded bytes to a uint8 RGB array [H, W, 3]; RecordError 'corrupt_image' if bad."""
    import numpy as np
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            return np.asarray(img.convert("RGB"), dtype=np.uint8)
    except Exception as exc:  # PIL raises many types for truncated/corrupt data
        raise _fail(
            where, "corrupt_image", f"{name}: cannot decode image ({type(exc).__name__}: {exc})"
        ) from exc


def encode_png(image) -> bytes:
    """Encodes a uint8 array [H, W] / [H, W, 3|4] or a PIL image to PNG bytes (lossless)."""
    import numpy as np
    from PIL import Image

    if not isinstance(image, Image.Image):
        array = np.asarray(image)
        if array.dtype != np.uint8:
            raise ValueError(f"encode_png: expected uint8 array, found {array.dtype}")
        image = Image.fromarray(array)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def _check_images(images: Any, name: str, where) -> tuple[bytes, ...]:
    if isinstance(images, (bytes, str)) or not isinstance(images, Sequence):
        raise _fail(
            where,
            "bad_value",
            f"field {name!r}: expected a list of image bytes, found {type(images).__name__}",
        )
    return tuple(check_image_bytes(img, f"{name}[{i}]", where) for i, img in enumerate(images))


def _get(d: Mapping[str, Any], key: str, where, default: Any = dataclasses.MISSING) -> Any:
    if not isinstance(d, Mapping):
        raise _fail(where, "bad_value", f"expected a dict record, found {type(d).__name__}")
    if key in d:
        return d[key]
    if default is not dataclasses.MISSING:
        return default
    raise _fail(where, "missing_field", f"missing field {key!r} (found keys {sorted(d)})")


# --------------------------------------------------------------------------------------------
# Conversations
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Turn:
    """One chat message. `content` may hold IMAGE_PLACEHOLDERs only in multimodal records."""

    role: str
    content: str

    def to_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


def _check_turns(turns: Any, where) -> tuple[Turn, ...]:
    """Turns must be: optional system, then user/assistant alternating, ending with assistant."""
    if isinstance(turns, (str, bytes)) or not isinstance(turns, Sequence) or not turns:
        raise _fail(
            where,
            "missing_field" if not turns else "bad_value",
            "field 'turns': expected a non-empty list of {role, content} turns",
        )
    out = []
    for i, t in enumerate(turns):
        if isinstance(t, Mapping):
            role = _get(t, "role", where)
            content = _get(t, "content", where)
            t = Turn(role, content)
        if not isinstance(t, Turn):
            raise _fail(
                where, "bad_value", f"turns[{i}]: expected Turn or dict, found {type(t).__name__}"
            )
        if t.role not in ROLES:
            raise _fail(
                where, "bad_value", f"turns[{i}].role: expected one of {ROLES}, found {t.role!r}"
            )
        _require_str(t.content, f"turns[{i}].content", where, allow_empty=True)
        out.append(t)
    body = out[1:] if out[0].role == "system" else out
    if not body:
        raise _fail(where, "missing_field", "conversation has a system turn but no user turn")
    for i, t in enumerate(body):
        expected = "user" if i % 2 == 0 else "assistant"
        if t.role != expected:
            raise _fail(
                where,
                "bad_value",
                f"turns: expected roles [system] user assistant user assistant ..., found "
                f"{[x.role for x in out]}",
            )
        if t.role == "assistant" and not t.content.strip():
            raise _fail(where, "empty_response", f"assistant turn {i} has an empty response")
        if t.role == "user" and not t.content.strip():
            raise _fail(where, "bad_value", f"user turn {i} is empty")
    if body[-1].role != "assistant":
        raise _fail(where, "missing_field", "conversation ends with a user turn: no response")
    return tuple(out)


def _turns_from_dicts(d: Mapping[str, Any], where) -> tuple[Turn, ...]:
    turns = _get(d, "turns", where)
    if not isinstance(turns, Sequence) or isinstance(turns, (str, bytes)):
        raise _fail(where, "bad_value", "field 'turns': expected a list")
    return tuple(Turn(_get(t, "role", where), _get(t, "content", where)) for t in turns)


class _Record:
    """Shared machinery: `kind`, validation on construction, dict conversion."""

    kind: ClassVar[str] = ""

    def validate(self, where=_NO_SOURCE) -> None:
        raise NotImplementedError

    def __post_init__(self) -> None:
        self.validate(_NO_SOURCE)

    def _set(self, name: str, value: Any) -> None:
        object.__setattr__(self, name, value)  # normalise fields of a frozen dataclass


@dataclasses.dataclass(frozen=True)
class TextConversation(_Record):
    """Stage-1 text math SFT sample."""

    kind: ClassVar[str] = "text_conversation"
    turns: tuple[Turn, ...]
    id: str = ""

    def validate(self, where=_NO_SOURCE) -> None:
        self._set("turns", _check_turns(self.turns, where))
        _require_str(self.id, "id", where, allow_empty=True)
        for i, t in enumerate(self.turns):
            if IMAGE_PLACEHOLDER in t.content:
                raise _fail(
                    where,
                    "image_count_mismatch",
                    f"turns[{i}] contains {IMAGE_PLACEHOLDER!r} but a text conversation "
                    "has no images (use MultimodalConversation)",
                )

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "id": self.id, "turns": [t.to_dict() for t in self.turns]}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where=_NO_SOURCE) -> TextConversation:
        return _build(cls, where, turns=_turns_from_dicts(d, where), id=_get(d, "id", where, ""))


@dataclasses.dataclass(frozen=True)
class MultimodalConversation(_Record):
    """Stage-3 sample: any number of images, referenced in order by IMAGE_PLACEHOLDERs."""

    kind: ClassVar[str] = "multimodal_conversation"
    turns: tuple[Turn, ...]
    images: tuple[bytes, ...] = ()
    id: str = ""

    def validate(self, where=_NO_SOURCE) -> None:
        self._set("turns", _check_turns(self.turns, where))
        self._set("images", _check_images(self.images, "images", where))
        _require_str(self.id, "id", where, allow_empty=True)
        n_placeholders = sum(t.content.count(IMAGE_PLACEHOLDER) for t in self.turns)
        if n_placeholders != len(self.images):
            raise _fail(
                where,
                "image_count_mismatch",
                f"expected one {IMAGE_PLACEHOLDER!r} per image: found {n_placeholders} "
                f"placeholders and {len(self.images)} images",
            )

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "id": self.id,
            "turns": [t.to_dict() for t in self.turns],
            "images": list(self.images),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where=_NO_SOURCE) -> MultimodalConversation:
        return _build(
            cls,
            where,
            turns=_turns_from_dicts(d, where),
            images=_get(d, "images", where, ()),
            id=_get(d, "id", where, ""),
        )


def with_leading_placeholders(text: str, n_images: int) -> str:
    """Math-PUMA convention: one placeholder per image before the instruction, then a newline."""
    if n_images == 0 or IMAGE_PLACEHOLDER in text:
        return text
    return IMAGE_PLACEHOLDER * n_images + "\n" + text


# --------------------------------------------------------------------------------------------
# PUMA pairs
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PumaSide:
    """One side of a PUMA pair: the instruction (with placeholders) and its images (maybe none)."""

    instruction: str
    images: tuple[bytes, ...] = ()

    def validate(self, name: str, where=_NO_SOURCE) -> None:
        _require_str(self.instruction, f"{name}.instruction", where, empty_reason="missing_field")
        object.__setattr__(self, "images", _check_images(self.images, f"{name}.images", where))
        n = self.instruction.count(IMAGE_PLACEHOLDER)
        if n != len(self.images):
            raise _fail(
                where,
                "image_count_mismatch",
                f"{name}: expected one {IMAGE_PLACEHOLDER!r} per image: found {n} "
                f"placeholders and {len(self.images)} images",
            )

    def to_dict(self) -> dict[str, Any]:
        return {"instruction": self.instruction, "images": list(self.images)}


@dataclasses.dataclass(frozen=True)
class PumaPair(_Record):
    """Stage-2 KL-alignment sample: same problem as text-rich and vision-rich, ONE solution.

    The shared solution is what makes response positions alignable token by token; a pair whose
    sources disagree on the solution is rejected at import ("pair_mismatch"), never stored.
    """

    kind: ClassVar[str] = "puma_pair"
    text_rich: PumaSide
    vision_rich: PumaSide
    solution: str
    id: str = ""

    def validate(self, where=_NO_SOURCE) -> None:
        for name in ("text_rich", "vision_rich"):
            side = getattr(self, name)
            if not isinstance(side, PumaSide):
                raise _fail(
                    where,
                    "bad_value",
                    f"field {name!r}: expected PumaSide, found {type(side).__name__}",
                )
            side.validate(name, where)
        _require_str(self.solution, "solution", where, empty_reason="empty_response")
        _require_str(self.id, "id", where, allow_empty=True)

    def side_conversation(self, side: str) -> MultimodalConversation:
        """The side ('text_rich' | 'vision_rich') as a user/assistant conversation."""
        if side not in ("text_rich", "vision_rich"):
            raise ValueError(f"side: expected 'text_rich' or 'vision_rich', found {side!r}")
        s: PumaSide = getattr(self, side)
        return MultimodalConversation(
            turns=(Turn("user", s.instruction), Turn("assistant", self.solution)),
            images=s.images,
            id=f"{self.id}:{side}",
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "id": self.id,
            "text_rich": self.text_rich.to_dict(),
            "vision_rich": self.vision_rich.to_dict(),
            "solution": self.solution,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where=_NO_SOURCE) -> PumaPair:
        sides = {}
        for name in ("text_rich", "vision_rich"):
            s = _get(d, name, where)
            sides[name] = PumaSide(
                _get(s, "instruction", where), tuple(_get(s, "images", where, ()))
            )
        return _build(
            cls, where, solution=_get(d, "solution", where), id=_get(d, "id", where, ""), **sides
        )


# --------------------------------------------------------------------------------------------
# Image-text records
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class ImageCaption(_Record):
    """CLIP-Math contrastive sample: one diagram and its caption."""

    kind: ClassVar[str] = "image_caption"
    image: bytes
    caption: str
    id: str = ""

    def validate(self, where=_NO_SOURCE) -> None:
        self._set("image", check_image_bytes(self.image, "image", where))
        _require_str(self.caption, "caption", where, empty_reason="empty_response")
        _require_str(self.id, "id", where, allow_empty=True)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "id": self.id, "image": self.image, "caption": self.caption}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where=_NO_SOURCE) -> ImageCaption:
        return _build(
            cls,
            where,
            image=_get(d, "image", where),
            caption=_get(d, "caption", where),
            id=_get(d, "id", where, ""),
        )


@dataclasses.dataclass(frozen=True)
class ImageCode(_Record):
    """MathCoder-VL image-to-code sample: an image and the Python/TikZ source that draws it."""

    kind: ClassVar[str] = "image_code"
    image: bytes
    code: str
    language: str
    id: str = ""

    def validate(self, where=_NO_SOURCE) -> None:
        self._set("image", check_image_bytes(self.image, "image", where))
        _require_str(self.code, "code", where, empty_reason="empty_response")
        if self.language not in CODE_LANGUAGES:
            raise _fail(
                where,
                "bad_value",
                f"field 'language': expected one of {CODE_LANGUAGES}, found {self.language!r}",
            )
        _require_str(self.id, "id", where, allow_empty=True)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "id": self.id,
            "image": self.image,
            "code": self.code,
            "language": self.language,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where=_NO_SOURCE) -> ImageCode:
        return _build(
            cls,
            where,
            image=_get(d, "image", where),
            code=_get(d, "code", where),
            language=_get(d, "language", where),
            id=_get(d, "id", where, ""),
        )


# --------------------------------------------------------------------------------------------
# Evaluation problems
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class EvalProblem(_Record):
    """A benchmark item (MathVerse / MathVista style). One record per (problem, version).

    `question` is the full prompt text shown to the model (for MathVerse: `query_wo` or the
    question with its choices); `images` are referenced by IMAGE_PLACEHOLDERs in the question or,
    when the question has none, are placed before it by the pipeline. `answer` is the gold answer as
    text (a letter for multi_choice). `precision` is the number of decimals for float answers.
    `metadata` is JSON-serialisable extra information (subject, source, question_type, ...).
    """

    kind: ClassVar[str] = "eval_problem"
    problem_id: str
    version: str
    question: str
    answer: str
    answer_type: str
    images: tuple[bytes, ...] = ()
    choices: tuple[str, ...] | None = None
    precision: int | None = None
    metadata: Mapping[str, Any] = dataclasses.field(default_factory=dict)

    def validate(self, where=_NO_SOURCE) -> None:
        _require_str(self.problem_id, "problem_id", where, empty_reason="missing_field")
        _require_str(self.version, "version", where, allow_empty=True)
        _require_str(self.question, "question", where, empty_reason="missing_field")
        _require_str(self.answer, "answer", where, empty_reason="empty_response")
        if self.answer_type not in ANSWER_TYPES:
            raise _fail(
                where,
                "bad_value",
                f"field 'answer_type': expected one of {ANSWER_TYPES}, found {self.answer_type!r}",
            )
        self._set("images", _check_images(self.images, "images", where))
        n = self.question.count(IMAGE_PLACEHOLDER)
        if n not in (0, len(self.images)):
            raise _fail(
                where,
                "image_count_mismatch",
                f"question has {n} {IMAGE_PLACEHOLDER!r} for {len(self.images)} images",
            )
        if self.choices is not None:
            if isinstance(self.choices, (str, bytes)) or not isinstance(self.choices, Sequence):
                raise _fail(where, "bad_value", "field 'choices': expected a list of str or None")
            choices = tuple(self.choices)
            for i, c in enumerate(choices):
                _require_str(c, f"choices[{i}]", where, allow_empty=True)
            self._set("choices", choices)
        if self.precision is not None and (
            isinstance(self.precision, bool)
            or not isinstance(self.precision, int)
            or self.precision < 0
        ):
            raise _fail(
                where,
                "bad_value",
                f"field 'precision': expected int >= 0 or None, found {self.precision!r}",
            )
        if self.answer_type == "integer":
            try:
                value = float(self.answer)
            except ValueError:
                value = math.nan
            if not math.isfinite(value) or value != int(value):
                raise _fail(
                    where, "bad_value", f"answer_type 'integer' but answer is {self.answer!r}"
                )
        if not isinstance(self.metadata, Mapping):
            raise _fail(where, "bad_value", "field 'metadata': expected a dict")
        try:
            json.dumps(self.metadata)
        except (TypeError, ValueError) as exc:
            raise _fail(
                where, "bad_value", f"field 'metadata' is not JSON-serialisable: {exc}"
            ) from exc
        self._set("metadata", dict(self.metadata))

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "problem_id": self.problem_id,
            "version": self.version,
            "question": self.question,
            "answer": self.answer,
            "answer_type": self.answer_type,
            "images": list(self.images),
            "choices": None if self.choices is None else list(self.choices),
            "precision": self.precision,
            "metadata": json.loads(json.dumps(self.metadata)),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where=_NO_SOURCE) -> EvalProblem:
        choices = _get(d, "choices", where, None)
        return _build(
            cls,
            where,
            problem_id=_get(d, "problem_id", where),
            version=_get(d, "version", where, ""),
            question=_get(d, "question", where),
            answer=_get(d, "answer", where),
            answer_type=_get(d, "answer_type", where),
            images=tuple(_get(d, "images", where, ())),
            choices=None if choices is None else tuple(choices),
            precision=_get(d, "precision", where, None),
            metadata=_get(d, "metadata", where, {}),
        )


# --------------------------------------------------------------------------------------------
# Preference pairs
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class PreferencePair(_Record):
    """DPO sample: a prompt (with its images) and two responses, the chosen one preferred."""

    kind: ClassVar[str] = "preference_pair"
    prompt: str
    chosen: str
    rejected: str
    images: tuple[bytes, ...] = ()
    id: str = ""

    def validate(self, where=_NO_SOURCE) -> None:
        _require_str(self.prompt, "prompt", where, empty_reason="missing_field")
        _require_str(self.chosen, "chosen", where, empty_reason="empty_response")
        _require_str(self.rejected, "rejected", where, empty_reason="empty_response")
        self._set("images", _check_images(self.images, "images", where))
        _require_str(self.id, "id", where, allow_empty=True)
        n = self.prompt.count(IMAGE_PLACEHOLDER)
        if n != len(self.images):
            raise _fail(
                where,
                "image_count_mismatch",
                f"prompt: expected one {IMAGE_PLACEHOLDER!r} per image: found {n} placeholders "
                f"and {len(self.images)} images",
            )
        for name in ("chosen", "rejected"):
            if IMAGE_PLACEHOLDER in getattr(self, name):
                raise _fail(where, "bad_value", f"field {name!r}: a response holds no images")
        if self.chosen == self.rejected:
            raise _fail(where, "bad_value", "chosen and rejected are the same response")

    def conversation(self, side: str) -> MultimodalConversation:
        """The prompt answered by the 'chosen' or 'rejected' response."""
        if side not in ("chosen", "rejected"):
            raise ValueError(f"side: expected 'chosen' or 'rejected', found {side!r}")
        return MultimodalConversation(
            turns=(Turn("user", self.prompt), Turn("assistant", getattr(self, side))),
            images=self.images,
            id=f"{self.id}:{side}",
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "id": self.id,
            "prompt": self.prompt,
            "chosen": self.chosen,
            "rejected": self.rejected,
            "images": list(self.images),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where=_NO_SOURCE) -> PreferencePair:
        return _build(
            cls,
            where,
            prompt=_get(d, "prompt", where),
            chosen=_get(d, "chosen", where),
            rejected=_get(d, "rejected", where),
            images=tuple(_get(d, "images", where, ())),
            id=_get(d, "id", where, ""),
        )


# --------------------------------------------------------------------------------------------
# Registry and generic construction
# --------------------------------------------------------------------------------------------

Record = (
    TextConversation
    | MultimodalConversation
    | PumaPair
    | ImageCaption
    | ImageCode
    | EvalProblem
    | PreferencePair
)

RECORD_TYPES: dict[str, type] = {
    cls.kind: cls
    for cls in (
        TextConversation,
        MultimodalConversation,
        PumaPair,
        ImageCaption,
        ImageCode,
        EvalProblem,
        PreferencePair,
    )
}


def _build(cls, where, **fields):
    """Constructs `cls` so validation errors carry the real (source, index), not a placeholder."""
    try:
        return cls(**fields)
    except RecordError as exc:
        if (exc.source, exc.index) == _NO_SOURCE:
            raise RecordError(where[0], where[1], exc.reason, exc.message) from None
        raise


def build_record(cls: type, where: tuple[str, int | str], **fields: Any) -> Record:
    """`cls(**fields)`, with any RecordError located at `where` = (source file, record index)."""
    return _build(cls, where, **fields)


def validate_record(record: Any, source: str, index: int | str) -> None:
    """Re-validates a built record, raising RecordError located at (source, index)."""
    if not isinstance(record, tuple(RECORD_TYPES.values())):
        raise RecordError(
            source,
            index,
            "bad_value",
            f"expected a record type {sorted(RECORD_TYPES)}, found {type(record).__name__}",
        )
    record.validate((source, index))


def record_from_dict(
    d: Mapping[str, Any], source: str = "<dict>", index: int | str = "?"
) -> Record:
    """Builds the record named by d['kind']; RecordError (located at source/index) if invalid."""
    where = (source, index)
    kind = _get(d, "kind", where)
    if kind not in RECORD_TYPES:
        raise _fail(
            where,
            "bad_value",
            f"field 'kind': expected one of {sorted(RECORD_TYPES)}, found {kind!r}",
        )
    return RECORD_TYPES[kind].from_dict(d, where)


def record_to_dict(record: Record) -> dict[str, Any]:
    """Plain dict with 'kind' (bytes for images), inverse of record_from_dict."""
    return record.to_dict()
