"""Importers on small files in each public format, including the bad-record cases."""

import io
import json
import os
import re

import numpy as np
import pytest
from PIL import Image

from mathjax_vl.data import importers as I
from mathjax_vl.data import records as R
from mathjax_vl.data.bad_records import BadRecordConfig, BadRecordTracker


def _array(seed: int, h: int = 6, w: int = 5) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


def _save(path, seed, fmt="PNG"):
    Image.fromarray(_array(seed)).save(path, format=fmt)
    return path


def _jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return str(path)


@pytest.fixture
def image_dir(tmp_path):
    d = tmp_path / "imgs"
    d.mkdir()
    _save(d / "a.png", 1)
    _save(d / "b.webp", 2, "WEBP")  # not PNG/JPEG: re-encoded to PNG on import
    (d / "bad.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 10)
    return d


def _puma_row(**kw):
    row = {
        "id": "p",
        "image_url": "",
        "instruction": "A square has side 2. Area?",
        "output": "4",
        "image_url_2": "a.png",
        "instruction_2": "Area?",
        "output_2": "4",
    }
    row.update(kw)
    return row


def test_puma_jsonl(tmp_path, image_dir):
    path = _jsonl(tmp_path / "puma.jsonl", [_puma_row(), _puma_row(id="q", output_2=" 4\n")])
    recs = list(I.import_source("puma", path, image_root=str(image_dir)))
    assert len(recs) == 2 and all(isinstance(r, R.PumaPair) for r in recs)
    p = recs[0]
    assert p.text_rich.images == () and p.text_rich.instruction == "A square has side 2. Area?"
    assert p.vision_rich.instruction == "<image>\nArea?" and p.solution == "4"
    np.testing.assert_array_equal(R.decode_image(p.vision_rich.images[0]), _array(1))
    assert p.vision_rich.images[0] == (image_dir / "a.png").read_bytes()  # PNG kept byte-exact


@pytest.mark.parametrize(
    "row, reason, needle",
    [
        (_puma_row(output_2="5"), "pair_mismatch", "'output_2' differ"),
        (_puma_row(image_url_2="bad.png"), "corrupt_image", "bad.png"),
        (_puma_row(image_url_2="nope.png"), "missing_image", "nope.png"),
        (
            {k: v for k, v in _puma_row().items() if k != "instruction_2"},
            "missing_field",
            "'instruction_2'",
        ),
        (_puma_row(output=""), "empty_response", "'output'"),
    ],
)
def test_puma_bad_rows_raise_with_file_and_index(tmp_path, image_dir, row, reason, needle):
    path = _jsonl(tmp_path / "puma.jsonl", [_puma_row(), row])
    with pytest.raises(R.RecordError) as info:
        list(I.import_source("puma", path, image_root=str(image_dir)))
    assert info.value.reason == reason
    assert str(info.value).startswith(f"{path} record 1: ") and needle in str(info.value)


def test_skip_policy_counts_per_reason(tmp_path, image_dir):
    rows = [_puma_row(), _puma_row(output_2="5"), _puma_row(image_url_2="bad.png"), _puma_row()]
    path = _jsonl(tmp_path / "puma.jsonl", rows)
    with open(path, "a") as f:
        f.write("{not json\n")
    tracker = BadRecordTracker(BadRecordConfig(policy="skip", max_skipped_fraction=1.0))
    recs = list(I.import_source("puma", path, str(image_dir), on_error=tracker))
    assert len(recs) == 2
    assert tracker.seen == 5 and dict(tracker.skipped_by_reason) == {
        "pair_mismatch": 1,
        "corrupt_image": 1,
        "bad_format": 1,
    }
    assert "record 4" in tracker.examples["bad_format"]


def test_llava_json_multi_and_text_only(tmp_path, image_dir):
    rows = [
        {
            "id": "l0",
            "image": "a.png",
            "conversations": [
                {"from": "human", "value": "<image>\nWhat is shown?"},
                {"from": "gpt", "value": "A"},
                {"from": "human", "value": "Sure?"},
                {"from": "gpt", "value": "Yes"},
            ],
        },
        {
            "id": "l1",
            "image": ["a.png", "b.webp"],
            "conversations": [
                {"from": "human", "value": "Compare."},
                {"from": "gpt", "value": "Same"},
            ],
        },
        {
            "id": "l2",
            "conversations": [{"from": "human", "value": "2+2"}, {"from": "gpt", "value": "4"}],
        },
    ]
    path = tmp_path / "llava.json"
    path.write_text(json.dumps(rows))
    recs = list(I.import_source("llava", str(path), str(image_dir)))
    assert [r.id for r in recs] == ["l0", "l1", "l2"]
    assert [t.role for t in recs[0].turns] == ["user", "assistant", "user", "assistant"]
    assert recs[1].turns[0].content == "<image><image>\nCompare."
    assert recs[2].images == ()
    webp = recs[1].images[1]
    assert R.image_format(webp) == "png"
    with Image.open(image_dir / "b.webp") as im:
        np.testing.assert_array_equal(R.decode_image(webp), np.asarray(im.convert("RGB")))


def test_llava_placeholder_count_mismatch(tmp_path, image_dir):
    row = {
        "image": "a.png",
        "conversations": [
            {"from": "human", "value": "<image><image> Q"},
            {"from": "gpt", "value": "A"},
        ],
    }
    path = _jsonl(tmp_path / "l.jsonl", [row])
    with pytest.raises(R.RecordError, match=r"record 0: .*2 placeholders and 1 images"):
        list(I.import_source("llava", path, str(image_dir)))


def _png_bytes(seed):
    buf = io.BytesIO()
    Image.fromarray(_array(seed)).save(buf, format="PNG")
    return buf.getvalue()


def test_mminstruct_parquet_with_bytes_and_auto_detect(tmp_path, image_dir):
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table(
        {
            "id": ["m0", "m1"],
            "image": [{"bytes": _png_bytes(3), "path": None}, None],
            "question": ["Find the angle.", "Find x."],
            "solution": ["30 degrees", "x = 2"],
            "image_path": ["ignored.png", "a.png"],
        }
    )
    path = tmp_path / "mm.parquet"
    pq.write_table(table, path)
    for fmt in ("mminstruct", "parquet"):
        recs = list(I.import_source(fmt, str(path), str(image_dir)))
        assert [type(r) for r in recs] == [R.MultimodalConversation] * 2
        np.testing.assert_array_equal(R.decode_image(recs[0].images[0]), _array(3))
        np.testing.assert_array_equal(R.decode_image(recs[1].images[0]), _array(1))
        assert recs[0].turns[0].content == "<image>\nFind the angle."
        assert recs[1].turns[1].content == "x = 2"


def test_mathverse_json(tmp_path, image_dir):
    base = {
        "problem_index": "12",
        "answer": "B",
        "question_type": "multi-choice",
        "question": "Find x. Choices: A:1 B:2",
        "query_cot": "cot prompt",
        "metadata": {"split": "testmini", "subject": "plane geometry"},
    }
    rows = [
        dict(
            base,
            sample_index="1",
            problem_version="Vision Only",
            image="a.png",
            query_wo="Please answer.\nQuestion: Find x.",
        ),
        dict(
            base,
            sample_index="2",
            problem_version="Text Only",
            image="",
            answer="3.5",
            question_type="free-form",
        ),
    ]
    path = tmp_path / "testmini.json"
    path.write_text(json.dumps(rows))
    recs = list(I.import_source("mathverse", str(path), str(image_dir)))
    vo, to = recs
    assert (vo.problem_id, vo.version, vo.answer, vo.answer_type) == (
        "12",
        "Vision Only",
        "B",
        "multi_choice",
    )
    assert vo.question == "Please answer.\nQuestion: Find x." and len(vo.images) == 1
    assert vo.metadata["subject"] == "plane geometry" and vo.metadata["sample_index"] == "1"
    assert to.images == () and to.answer_type == "free_form" and to.question.startswith("Find x")
    bad = dict(rows[0], question_type="essay")
    path.write_text(json.dumps([bad]))
    with pytest.raises(R.RecordError, match=r"testmini\.json record 0: field 'question_type'"):
        list(I.import_source("mathverse", str(path), str(image_dir)))


def test_caption_code_and_records_rows(tmp_path, image_dir):
    cap = _jsonl(tmp_path / "cap.jsonl", [{"image": "a.png", "caption": "noise"}])
    code = _jsonl(
        tmp_path / "code.jsonl", [{"image": "a.png", "code": "plot()", "language": "python"}]
    )
    rec = R.EvalProblem("1", "v", "<image>q", "2", "integer", (_png_bytes(5),))
    d = rec.to_dict()
    d["images"] = ["a.png"]  # records rows may reference images by path
    own = _jsonl(tmp_path / "own.jsonl", [{**d, "images": ["a.png"]}])
    (c,) = I.import_source("caption", cap, str(image_dir))
    (k,) = I.import_source("auto", code, str(image_dir))
    (e,) = I.import_source("records", own, str(image_dir))
    assert isinstance(c, R.ImageCaption) and c.caption == "noise"
    assert isinstance(k, R.ImageCode) and k.language == "python"
    assert isinstance(e, R.EvalProblem) and e.answer == "2"
    np.testing.assert_array_equal(R.decode_image(e.images[0]), _array(1))
    empty_code = _jsonl(
        tmp_path / "c2.jsonl", [{"image": "a.png", "code": " ", "language": "tikz"}]
    )
    with pytest.raises(R.RecordError) as info:
        list(I.import_source("code", empty_code, str(image_dir)))
    assert info.value.reason == "empty_response"


def test_folder_with_sidecars(tmp_path):
    d = tmp_path / "folder"
    d.mkdir()
    _save(d / "01.png", 1)
    (d / "01.txt").write_text("  A circle.\n")
    _save(d / "02.jpg", 2, "JPEG")
    (d / "02.tex").write_text("\\draw circle (1);")
    _save(d / "03.png", 3)
    (d / "03.py").write_text("import numpy")
    recs = list(I.import_source("folder", str(d)))
    assert [type(r).__name__ for r in recs] == ["ImageCaption", "ImageCode", "ImageCode"]
    assert recs[0].caption == "A circle." and recs[1].language == "tikz" and recs[2].id == "03"
    assert recs[1].image == (d / "02.jpg").read_bytes()
    _save(d / "04.png", 4)  # no sidecar
    with pytest.raises(R.RecordError) as info:
        list(I.import_source("folder", str(d)))
    assert info.value.reason == "missing_field" and "record 04.png" in str(info.value)


def test_unknown_file_and_format_errors(tmp_path):
    (tmp_path / "x.csv").write_text("a,b")
    with pytest.raises(ValueError, match=r"\.json, \.jsonl or \.parquet"):
        list(I.import_source("puma", str(tmp_path / "x.csv")))
    with pytest.raises(ValueError, match="unknown row format"):
        list(I.import_rows("csv", str(tmp_path / "x.csv")))
    (tmp_path / "odd.jsonl").write_text(json.dumps({"foo": 1}) + "\n")
    with pytest.raises(ValueError, match="cannot tell the format"):
        list(I.import_source("auto", str(tmp_path / "odd.jsonl")))


def test_cli_data_import_error_and_skip_policies(tmp_path, image_dir, capsys):
    from mathjax_vl.cli.main import main as cli_main
    from mathjax_vl.data import storage

    rows = [_puma_row(id=str(i)) for i in range(6)] + [_puma_row(id="bad", output_2="5")]
    path = _jsonl(tmp_path / "puma.jsonl", rows)
    base = ["data", "import", path, "--format", "puma", "--image-root", str(image_dir)]
    assert cli_main([*base, "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert re.fullmatch(r"error: .*puma\.jsonl record 6: .*\[pair_mismatch\]\n", err)
    assert (
        cli_main(
            [
                *base,
                "--out",
                str(tmp_path / "b"),
                "--on-bad-record",
                "skip",
                "--max-skipped-fraction",
                "0.2",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "pair_mismatch: 1" in out and "wrote 6 puma_pair records" in out
    src = storage.open_source(tmp_path / "b")
    assert [r.id for r in src] == ["0", "1", "2", "3", "4", "5"]
    rc = cli_main(
        [
            *base,
            "--out",
            str(tmp_path / "c"),
            "--on-bad-record",
            "skip",
            "--max-skipped-fraction",
            "0.1",
        ]
    )
    assert rc == 2 and "skipped 1 of 7" in capsys.readouterr().err
    assert os.listdir(tmp_path / "c") == []  # nothing left that looks like a dataset


def test_directory_of_data_files_in_name_order(tmp_path, image_dir):
    d = tmp_path / "shards"
    d.mkdir()
    _jsonl(d / "b.jsonl", [_puma_row(id="b0")])
    _jsonl(d / "a.jsonl", [_puma_row(id="a0"), _puma_row(id="a1")])
    (d / "notes.md").write_text("ignored")
    recs = list(I.import_source("puma", str(d), str(image_dir)))
    assert [r.id for r in recs] == ["a0", "a1", "b0"]


def _non_utf8_puma_file(tmp_path, suffix: str) -> str:
    """Three PUMA rows; row 1's instruction holds a Latin-1 byte (0xe9), on line 2."""
    rows = [json.dumps(_puma_row(id=str(i))).encode() for i in range(3)]
    rows[1] = rows[1].replace(b"Area?", b"Aire\xe9?", 1)
    if suffix == ".jsonl":
        data = b"\n".join(rows) + b"\n"
    else:
        data = b"[" + b",\n".join(rows) + b"]\n"  # rows on lines 1-3
    path = tmp_path / f"latin1{suffix}"
    path.write_bytes(data)
    return str(path)


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_non_utf8_text_is_a_bad_record_with_file_and_line(tmp_path, image_dir, suffix):
    path = _non_utf8_puma_file(tmp_path, suffix)
    with pytest.raises(R.RecordError) as info:
        list(I.import_source("puma", path, str(image_dir)))
    assert (info.value.source, info.value.index, info.value.reason) == (path, 1, "bad_format")
    assert "line 2" in str(info.value) and "not UTF-8" in str(info.value)
    tracker = BadRecordTracker(
        BadRecordConfig(policy="skip", max_skipped_fraction=0.5, min_records_for_bound=0)
    )
    recs = list(I.import_source("puma", path, str(image_dir), on_error=tracker))
    assert [r.id for r in recs] == ["0", "2"]
    assert dict(tracker.skipped_by_reason) == {"bad_format": 1} and tracker.seen == 3


def test_non_utf8_jsonl_names_column_and_byte(tmp_path, image_dir):
    path = _non_utf8_puma_file(tmp_path, ".jsonl")
    with pytest.raises(R.RecordError) as info:
        list(I.import_source("puma", path, str(image_dir)))
    line = open(path, "rb").read().split(b"\n")[1]
    column = line.index(b"\xe9") + 1
    assert f"line 2, column {column}: byte 0xe9 is not UTF-8 text" in str(info.value)


def test_non_utf8_sidecar_in_folder(tmp_path):
    d = tmp_path / "folder"
    d.mkdir()
    _save(d / "01.png", 1)
    (d / "01.txt").write_bytes(b"A circle.\nCentre \xff.\n")
    with pytest.raises(R.RecordError) as info:
        list(I.import_source("folder", str(d)))
    assert info.value.reason == "bad_format" and info.value.index == "01.png"
    assert "01.txt: line 2, column 8: byte 0xff" in str(info.value)


def test_cli_import_non_utf8_skip_counts_and_error_is_one_line(tmp_path, image_dir, capsys):
    from mathjax_vl.cli.main import main as cli_main

    path = _non_utf8_puma_file(tmp_path, ".jsonl")
    base = ["data", "import", path, "--format", "puma", "--image-root", str(image_dir)]
    assert cli_main([*base, "--out", str(tmp_path / "a")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith(f"error: {path} record 1: line 2, column ")
    rc = cli_main(
        [
            *base,
            "--out",
            str(tmp_path / "b"),
            "--on-bad-record",
            "skip",
            "--max-skipped-fraction",
            "0.5",
        ]
    )
    out = capsys.readouterr().out
    assert rc == 0 and "bad_format: 1" in out and "line 2" in out
    assert "wrote 2 puma_pair records" in out
    # --log-level DEBUG shows the traceback of the same error
    assert cli_main([*base, "--out", str(tmp_path / "c"), "--log-level", "DEBUG"]) == 2
    assert "Traceback (most recent call last)" in capsys.readouterr().err
