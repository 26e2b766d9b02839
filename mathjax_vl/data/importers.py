"""Importers from the public data formats into our records (then `storage.write_dataset`).

Formats (row schemas as released; see REFERENCE.md section 3-4):

- "puma":       Math-PUMA pairs `image_url, instruction, output` + `image_url_2, instruction_2,
                output_2` -> PumaPair. An empty image means text only. The two outputs must be the
                same solution (after stripping whitespace), else "pair_mismatch".
- "llava":      `{id, image, conversations: [{from: human|gpt|system, value}]}`
                -> MultimodalConversation (`image`: a path, a list of paths, or absent).
- "mminstruct": MM-MathInstruct `id, image (bytes), question, solution, image_path`
                -> MultimodalConversation (image bytes used when present, else `image_path`).
- "mathverse":  MathVerse testmini `sample_index, problem_index, problem_version, question, image,
                answer, question_type, metadata, query_wo, query_cot` -> EvalProblem.
- "caption":    `{image, caption}` rows -> ImageCaption.
- "code":       `{image, code, language}` rows -> ImageCode.
- "records":    our own `record.to_dict()` rows (images as paths or bytes).
- "folder":     a directory of images with sidecar files of the same stem: `.txt` -> ImageCaption,
                `.py` -> ImageCode(python), `.tex`/`.tikz` -> ImageCode(tikz).

Every row format reads `.json` (a list of rows), `.jsonl` (one row per line) and `.parquet`
(pyarrow; image columns may hold raw bytes or Hugging Face `{bytes, path}` structs). "parquet" /
"auto" pick the row format from the first row's columns (`detect_format`).

Images: a path is resolved against `image_root` (default: the data file's directory); a missing
file is "missing_image", undecodable bytes "corrupt_image". Every image is decoded once here so a
dataset never stores a corrupt image; PNG/JPEG bytes are kept as they are (no re-encoding loss),
other formats (WebP, GIF, BMP, ...) are re-encoded to PNG.

Record index in errors: the 0-based row number (for JSONL: line number - 1; for folders: the image
file name). Bad rows go to `on_error(RecordError)`: None raises (policy "error"); a
`bad_records.BadRecordTracker` (or any callable) decides, and its `record_ok()` is called for good
rows so the skipped fraction is right.
"""

from __future__ import annotations

import io
import json
import os
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from mathjax_vl.data import records as R
from mathjax_vl.data.records import RecordError

OnError = Callable[[RecordError], Any] | None
ROW_FORMATS = ("puma", "llava", "mminstruct", "mathverse", "caption", "code", "records")
FORMATS = (*ROW_FORMATS, "parquet", "auto", "folder")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp")
LLAVA_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
}
MATHVERSE_ANSWER_TYPES = {"multi-choice": "multi_choice", "free-form": "free_form"}


# --------------------------------------------------------------------------------------------
# Reading rows
# --------------------------------------------------------------------------------------------


def _not_utf8(err: UnicodeDecodeError, raw: bytes, first_line: int = 1) -> str:
    """'line L, column C: byte 0x.. is not UTF-8 text' for the undecodable byte of `raw`."""
    line = first_line + raw.count(b"\n", 0, err.start)
    column = err.start - (raw.rfind(b"\n", 0, err.start) + 1) + 1
    bad = raw[err.start : err.start + 1].hex()
    return f"line {line}, column {column}: byte 0x{bad} is not UTF-8 text ({err.reason})"


_ESCAPED = re.compile("[\udc80-\udcff]")  # bytes that surrogateescape could not decode


def _escaped_lines(text: str) -> list[int]:
    """1-based line of every undecodable byte of a surrogateescape-decoded text, in order."""
    lines, line, last = [], 1, 0
    for match in _ESCAPED.finditer(text):
        line += text.count("\n", last, match.start())
        last = match.start()
        lines.append(line)
    return lines


def _surrogates(value: Any) -> int:
    """How many undecodable bytes (surrogateescape'd) a parsed JSON value holds, keys included."""
    if isinstance(value, str):
        return len(_ESCAPED.findall(value))
    if isinstance(value, Mapping):
        return sum(_surrogates(k) + _surrogates(v) for k, v in value.items())
    if isinstance(value, list):
        return sum(_surrogates(v) for v in value)
    return 0


def read_rows(path: str) -> Iterator[tuple[int, Any]]:
    """(index, row) pairs from .json / .jsonl / .parquet; unparsable JSONL lines and rows with
    bytes that are not UTF-8 text are yielded as RecordError objects (reason "bad_format", naming
    the file and line) so the caller's policy decides."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no such data file")
    lower = path.lower()
    if lower.endswith(".jsonl"):
        with open(path, "rb") as f:
            for i, raw in enumerate(f):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    yield i, RecordError(path, i, "bad_format", _not_utf8(exc, raw, i + 1))
                    continue
                if not line.strip():
                    continue
                try:
                    yield i, json.loads(line)
                except json.JSONDecodeError as exc:
                    yield i, RecordError(path, i, "bad_format", f"line {i + 1} is not JSON: {exc}")
    elif lower.endswith(".json"):
        with open(path, "rb") as f:
            raw = f.read()
        # Undecodable bytes become lone surrogates, so the file still parses and each row that
        # holds one is a bad record (with the line of its first bad byte), not a failed import.
        try:
            text, bad_lines = raw.decode("utf-8"), []
        except UnicodeDecodeError:
            text = raw.decode("utf-8", errors="surrogateescape")
            bad_lines = _escaped_lines(text)
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise RecordError(path, "file", "bad_format", f"not a JSON file: {exc}") from exc
        if isinstance(data, Mapping):  # {id: row} layout
            data = [
                dict(row, id=row.get("id", key)) if isinstance(row, Mapping) else row
                for key, row in data.items()
            ]
        if not isinstance(data, list):
            raise RecordError(
                path,
                "file",
                "bad_format",
                f"expected a JSON list of rows, found {type(data).__name__}",
            )
        for i, row in enumerate(data):
            n = _surrogates(row) if bad_lines else 0
            if n:  # rows appear in file order, so they take the bad bytes' lines in order
                lines, bad_lines = bad_lines[:n], bad_lines[n:]
                yield (
                    i,
                    RecordError(
                        path,
                        i,
                        "bad_format",
                        f"row {i} (line {lines[0] if lines else '?'}) holds bytes that are not "
                        "UTF-8 text",
                    ),
                )
            else:
                yield i, row
    elif lower.endswith(".parquet"):
        import pyarrow.parquet as pq

        offset = 0
        for batch in pq.ParquetFile(path).iter_batches(batch_size=256):
            for j, row in enumerate(batch.to_pylist()):
                yield offset + j, row
            offset += batch.num_rows
    else:
        raise ValueError(f"{path}: expected a .json, .jsonl or .parquet file")


def detect_format(row: Mapping[str, Any]) -> str:
    """Row format from its keys (for parquet/auto)."""
    keys = set(row)
    if "kind" in keys:
        return "records"
    if "conversations" in keys:
        return "llava"
    if "image_url" in keys or "instruction_2" in keys:
        return "puma"
    if "problem_version" in keys:
        return "mathverse"
    if {"question", "solution"} <= keys:
        return "mminstruct"
    if "caption" in keys:
        return "caption"
    if "code" in keys:
        return "code"
    raise ValueError(f"cannot tell the format of a row with keys {sorted(keys)}; pass --format")


# --------------------------------------------------------------------------------------------
# Images
# --------------------------------------------------------------------------------------------


class ImageLoader:
    """Turns an image field (path, bytes, HF {bytes, path} struct) into verified PNG/JPEG bytes."""

    def __init__(self, image_root: str):
        self.image_root = image_root

    def __call__(self, value: Any, field: str, where: tuple[str, Any]) -> bytes:
        if isinstance(value, Mapping):  # Hugging Face datasets Image feature
            value = value.get("bytes") or value.get("path")
        if isinstance(value, (bytes, bytearray, memoryview)):
            return verified_image_bytes(bytes(value), field, where)
        if not isinstance(value, str) or not value.strip():
            raise RecordError(
                *where,
                "bad_value",
                f"field {field!r}: expected an image path or bytes, found {value!r}",
            )
        path = value if os.path.isabs(value) else os.path.join(self.image_root, value)
        if not os.path.isfile(path):
            raise RecordError(
                *where,
                "missing_image",
                f"field {field!r}: image file {path} does not exist (image root {self.image_root})",
            )
        with open(path, "rb") as f:
            return verified_image_bytes(f.read(), f"{field} ({path})", where)


def verified_image_bytes(data: bytes, name: str, where: tuple[str, Any]) -> bytes:
    """Decodes once to verify; keeps PNG/JPEG bytes as they are, re-encodes others to PNG."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as img:
            img.load()
            if R.image_format(data) is not None:
                return data
            buf = io.BytesIO()
            (img if img.mode in ("RGB", "RGBA", "L", "LA", "P") else img.convert("RGB")).save(
                buf, format="PNG"
            )
            return buf.getvalue()
    except Exception as exc:
        raise RecordError(
            *where, "corrupt_image", f"{name}: cannot decode image ({type(exc).__name__}: {exc})"
        ) from exc


# --------------------------------------------------------------------------------------------
# Row converters: (row, where, load_image) -> record
# --------------------------------------------------------------------------------------------


def _field(row: Any, key: str, where, *, required: bool = True, default: Any = None) -> Any:
    if not isinstance(row, Mapping):
        raise RecordError(
            *where, "bad_format", f"expected a JSON object row, found {type(row).__name__}"
        )
    value = row.get(key)
    if value is None:
        if required:
            raise RecordError(
                *where, "missing_field", f"missing field {key!r} (row has {sorted(row)})"
            )
        return default
    return value


def _images_of(value: Any) -> list[Any]:
    """An image field as a list: None/'' -> [], a path/bytes -> [it], a list -> itself."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return []
    if isinstance(value, (list, tuple)):
        return [v for v in value if v is not None and v != ""]
    return [value]


def _text_field(row, key, where, empty_reason: str) -> str:
    value = _field(row, key, where)
    if not isinstance(value, str):
        raise RecordError(
            *where, "bad_value", f"field {key!r}: expected str, found {type(value).__name__}"
        )
    if not value.strip():
        raise RecordError(*where, empty_reason, f"field {key!r} is empty")
    return value


def _row_id(row: Mapping[str, Any], where, key: str = "id") -> str:
    value = row.get(key)
    return str(where[1]) if value is None else str(value)


def puma_row(row, where, load_image) -> R.PumaPair:
    sides = []
    for suffix in ("", "_2"):
        instruction = _text_field(row, f"instruction{suffix}", where, "missing_field")
        images = [
            load_image(v, f"image_url{suffix}", where)
            for v in _images_of(_field(row, f"image_url{suffix}", where, required=False))
        ]
        instruction = R.with_leading_placeholders(instruction, len(images))
        sides.append(R.PumaSide(instruction, tuple(images)))
    output = _text_field(row, "output", where, "empty_response")
    output_2 = _text_field(row, "output_2", where, "empty_response")
    if output.strip() != output_2.strip():
        raise RecordError(
            *where,
            "pair_mismatch",
            "a PUMA pair's two sides must share one solution: 'output' and "
            f"'output_2' differ ({output[:60]!r}... vs {output_2[:60]!r}...)",
        )
    return R._build(
        R.PumaPair,
        where,
        text_rich=sides[0],
        vision_rich=sides[1],
        solution=output.strip(),
        id=_row_id(row, where),
    )


def llava_row(row, where, load_image) -> R.MultimodalConversation:
    convs = _field(row, "conversations", where)
    if not isinstance(convs, list) or not convs:
        raise RecordError(
            *where, "missing_field", "field 'conversations': expected a non-empty list"
        )
    turns = []
    for j, msg in enumerate(convs):
        speaker = _field(msg, "from", where)
        if speaker not in LLAVA_ROLES:
            raise RecordError(
                *where,
                "bad_value",
                f"conversations[{j}].from: expected one of "
                f"{sorted(LLAVA_ROLES)}, found {speaker!r}",
            )
        value = _field(msg, "value", where, required=False, default="")
        turns.append(R.Turn(LLAVA_ROLES[speaker], value))
    images = [load_image(v, "image", where) for v in _images_of(row.get("image"))]
    n_placeholders = sum(t.content.count(R.IMAGE_PLACEHOLDER) for t in turns)
    if images and n_placeholders == 0:
        first_user = next((j for j, t in enumerate(turns) if t.role == "user"), None)
        if first_user is not None:
            t = turns[first_user]
            turns[first_user] = R.Turn(t.role, R.with_leading_placeholders(t.content, len(images)))
    return R._build(
        R.MultimodalConversation,
        where,
        turns=tuple(turns),
        images=tuple(images),
        id=_row_id(row, where),
    )


def mminstruct_row(row, where, load_image) -> R.MultimodalConversation:
    question = _text_field(row, "question", where, "missing_field")
    solution = _text_field(row, "solution", where, "empty_response")
    image = row.get("image") if isinstance(row, Mapping) else None
    if image is None or (
        isinstance(image, Mapping) and not (image.get("bytes") or image.get("path"))
    ):
        image = _field(row, "image_path", where)
        images = [load_image(image, "image_path", where)]
    else:
        images = [load_image(image, "image", where)]
    return R._build(
        R.MultimodalConversation,
        where,
        turns=(
            R.Turn("user", R.with_leading_placeholders(question, len(images))),
            R.Turn("assistant", solution),
        ),
        images=tuple(images),
        id=_row_id(row, where),
    )


_MATHVERSE_CHOICES_HEADER = re.compile(r"(?i)(?:^|\n)\s*(?:choices?|options?)\s*[:：]")
_MATHVERSE_OPTION_MARK = re.compile(r"(?:^|(?<=\s)|(?<=;))\(?([A-H])\)?\s*[:.)：]")


def mathverse_choices(question: str) -> tuple[str, ...]:
    """Options listed after "Choices:" / "Choice:" in a MathVerse question ("A:12 cm" lines, or
    "A. 1 B. 2" on one line), in order, as "A: text"; an option's text may be empty. () when the
    options are only in the image (vision-only versions)."""
    headers = list(_MATHVERSE_CHOICES_HEADER.finditer(question))
    if not headers:
        return ()
    header = headers[-1]  # the last header: the question text itself may say "options"
    tail = question[header.end() :]
    marks = []
    for mark in _MATHVERSE_OPTION_MARK.finditer(tail):
        if mark.group(1) == chr(ord("A") + len(marks)):
            marks.append(mark)
    choices = []
    for index, mark in enumerate(marks):
        end = marks[index + 1].start() if index + 1 < len(marks) else len(tail)
        text = tail[mark.end() : end].strip().rstrip(";").strip()
        choices.append(f"{mark.group(1)}: {text}" if text else f"{mark.group(1)}:")
    return tuple(choices)


def mathverse_row(row, where, load_image, question_field: str = "query_wo") -> R.EvalProblem:
    """MathVerse row -> EvalProblem; `question` is `query_wo` (the benchmark's prompt without CoT
    instruction, choices included) when present, else the bare `question`."""
    question = row.get(question_field) or _text_field(row, "question", where, "missing_field")
    qtype = _field(row, "question_type", where)
    if qtype not in MATHVERSE_ANSWER_TYPES:
        raise RecordError(
            *where,
            "bad_value",
            f"field 'question_type': expected one of "
            f"{sorted(MATHVERSE_ANSWER_TYPES)}, found {qtype!r}",
        )
    images = [load_image(v, "image", where) for v in _images_of(row.get("image")) if load_image]
    choices = mathverse_choices(row.get("question") or question) if qtype == "multi-choice" else ()
    metadata = dict(row.get("metadata") or {})
    for key in ("sample_index", "question", "query_cot", "question_for_eval"):
        if row.get(key) is not None:
            metadata[key] = row[key]
    metadata["question_type"] = qtype
    answer = _field(row, "answer", where)
    return R._build(
        R.EvalProblem,
        where,
        problem_id=str(_field(row, "problem_index", where)),
        version=str(_field(row, "problem_version", where)),
        question=question,
        answer=str(answer).strip(),
        answer_type=MATHVERSE_ANSWER_TYPES[qtype],
        images=tuple(images),
        choices=choices or None,
        precision=None,
        metadata=metadata,
    )


def caption_row(row, where, load_image) -> R.ImageCaption:
    image = load_image(_field(row, "image", where), "image", where)
    caption = _text_field(row, "caption", where, "empty_response")
    return R._build(R.ImageCaption, where, image=image, caption=caption, id=_row_id(row, where))


def code_row(row, where, load_image) -> R.ImageCode:
    image = load_image(_field(row, "image", where), "image", where)
    code = _text_field(row, "code", where, "empty_response")
    language = _field(row, "language", where)
    return R._build(
        R.ImageCode, where, image=image, code=code, language=language, id=_row_id(row, where)
    )


def records_row(row, where, load_image) -> R.Record:
    """Our own dict layout; image fields may be paths (resolved) or bytes."""
    _field(row, "kind", where)
    row = dict(row)

    def load_all(values, field):
        return [load_image(v, field, where) for v in (values or [])]

    if "image" in row:
        row["image"] = load_image(row["image"], "image", where)
    if "images" in row:
        row["images"] = load_all(row["images"], "images")
    for side in ("text_rich", "vision_rich"):
        if isinstance(row.get(side), Mapping):
            row[side] = dict(row[side], images=load_all(row[side].get("images"), side + ".images"))
    return R.record_from_dict(row, *where)


ROW_CONVERTERS: dict[str, Callable[..., R.Record]] = {
    "puma": puma_row,
    "llava": llava_row,
    "mminstruct": mminstruct_row,
    "mathverse": mathverse_row,
    "caption": caption_row,
    "code": code_row,
    "records": records_row,
}


# --------------------------------------------------------------------------------------------
# Drivers
# --------------------------------------------------------------------------------------------


def _dispatch(build: Callable[[], R.Record], on_error: OnError) -> R.Record | None:
    try:
        record = build()
    except RecordError as err:
        if on_error is None:
            raise
        on_error(err)  # raises under policy "error", counts under "skip"
        return None
    ok = getattr(on_error, "record_ok", None)
    if ok is not None:
        ok()
    return record


def _raiser(err: RecordError) -> Callable[[], R.Record]:
    def fail() -> R.Record:
        raise err

    return fail


def import_rows(
    fmt: str, path: str, image_root: str | None = None, on_error: OnError = None
) -> Iterator[R.Record]:
    """Yields records from one .json/.jsonl/.parquet file in row format `fmt` (or parquet/auto)."""
    if fmt not in (*ROW_FORMATS, "parquet", "auto"):
        raise ValueError(f"unknown row format {fmt!r}; expected one of {FORMATS}")
    path = os.fspath(path)
    load_image = ImageLoader(image_root or os.path.dirname(os.path.abspath(path)))
    convert = None if fmt in ("parquet", "auto") else ROW_CONVERTERS[fmt]
    for index, row in read_rows(path):
        where = (path, index)
        if isinstance(row, RecordError):
            _dispatch(_raiser(row), on_error)
            continue
        if convert is None and isinstance(row, Mapping):
            convert = ROW_CONVERTERS[detect_format(row)]
        elif convert is None:
            _dispatch(
                _raiser(RecordError(*where, "bad_format", "expected a JSON object row")), on_error
            )
            continue
        record = _dispatch(
            lambda row=row, where=where, convert=convert: convert(row, where, load_image), on_error
        )
        if record is not None:
            yield record


def import_folder(folder: str, on_error: OnError = None) -> Iterator[R.Record]:
    """Images in `folder` (sorted by name) with a same-stem sidecar: .txt caption, .py/.tex/.tikz
    code. An image without a sidecar is "missing_field"; the index is the image file name."""
    folder = os.fspath(folder)
    if not os.path.isdir(folder):
        raise FileNotFoundError(f"{folder}: not a directory")
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith(IMAGE_SUFFIXES))
    if not names:
        raise FileNotFoundError(f"{folder}: no image files ({', '.join(IMAGE_SUFFIXES)})")
    sidecars = {".txt": None, ".py": "python", ".tex": "tikz", ".tikz": "tikz"}

    def build(name: str) -> R.Record:
        where = (folder, name)
        stem = os.path.splitext(name)[0]
        found = [ext for ext in sidecars if os.path.isfile(os.path.join(folder, stem + ext))]
        if len(found) != 1:
            raise RecordError(
                *where,
                "missing_field" if not found else "bad_value",
                f"expected exactly one sidecar {stem}{{.txt|.py|.tex|.tikz}} for "
                f"image {name}, found {[stem + e for e in found]}",
            )
        sidecar = os.path.join(folder, stem + found[0])
        with open(sidecar, "rb") as f:
            raw = f.read()
        try:
            text = raw.decode("utf-8").strip()
        except UnicodeDecodeError as exc:
            raise RecordError(*where, "bad_format", f"{sidecar}: {_not_utf8(exc, raw)}") from None
        with open(os.path.join(folder, name), "rb") as f:
            image = verified_image_bytes(f.read(), name, where)
        if sidecars[found[0]] is None:
            return R._build(R.ImageCaption, where, image=image, caption=text, id=stem)
        return R._build(
            R.ImageCode, where, image=image, code=text, language=sidecars[found[0]], id=stem
        )

    for name in names:
        record = _dispatch(lambda name=name: build(name), on_error)
        if record is not None:
            yield record


def import_source(
    fmt: str, src: str, image_root: str | None = None, on_error: OnError = None
) -> Iterator[R.Record]:
    """One entry point: a folder for "folder", else a data file (or a dir of data files)."""
    if fmt == "folder":
        yield from import_folder(src, on_error)
        return
    if os.path.isdir(src):
        files = sorted(
            os.path.join(src, n)
            for n in os.listdir(src)
            if n.lower().endswith((".json", ".jsonl", ".parquet"))
        )
        if not files:
            raise FileNotFoundError(f"{src}: no .json/.jsonl/.parquet files")
    else:
        files = [src]
    for path in files:
        yield from import_rows(fmt, path, image_root, on_error)
