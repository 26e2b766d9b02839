"""The generation engine: determinism, faithful programs, gates wired in, recipes, CLI."""

import dataclasses
import os
import re
import subprocess
import sys

import pytest

from mathjax_vl.data import records as R
from mathjax_vl.datagen import engine as E
from mathjax_vl.datagen import quality as Q
from mathjax_vl.datagen import versions as V
from mathjax_vl.datagen.families import FAMILIES
from mathjax_vl.datagen.sandbox import FigureExecutor, SandboxConfig

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@pytest.fixture(scope="module")
def executor():
    with FigureExecutor(SandboxConfig(workers=2)) as ex:
        yield ex


@pytest.fixture(scope="module")
def image_code_run(executor):
    config = E.DatagenConfig(recipe="image_code", n=3, seed=21, workers=2, progress=False)
    return E.generate(config, executor)


def _dicts(records):
    return [r.to_dict() for r in records]


def test_same_seed_same_dataset_for_any_worker_count(image_code_run):
    config = E.DatagenConfig(recipe="image_code", n=3, seed=21, workers=1, progress=False)
    with FigureExecutor(SandboxConfig(workers=1)) as one_worker:
        again = E.generate(config, one_worker)
    assert _dicts(again.records) == _dicts(image_code_run.records)
    assert len(image_code_run.records) == 3
    families = {p["family"] for p in image_code_run.previews}
    assert len(families) >= 2  # items cycle through the registered families


def test_chunking_does_not_change_the_dataset(executor, image_code_run):
    config = E.DatagenConfig(
        recipe="image_code", n=3, seed=21, workers=2, progress=False, chunk_items=2
    )
    chunked = E.generate(config, executor)
    assert _dicts(chunked.records) == _dicts(image_code_run.records)
    assert chunked.records_written == 3


def test_different_seeds_give_different_datasets(executor, image_code_run):
    config = E.DatagenConfig(recipe="image_code", n=2, seed=22, workers=2, progress=False)
    other = E.generate(config, executor)
    assert {r.code for r in other.records}.isdisjoint({r.code for r in image_code_run.records})


def test_each_emitted_program_reproduces_the_stored_image_in_a_fresh_interpreter(
    image_code_run, executor, tmp_path
):
    pairs = []
    for record in image_code_run.records:
        assert isinstance(record, R.ImageCode) and record.language == "python"
        pairs.append((record.code, record.image))
    # Also a MathVerse vision-only program (figure + question drawn by the generated wrapper).
    problem = FAMILIES["plane_geometry"].generate(3)
    vision_only = V.mathverse_versions(problem)["vision_only"].figure_program(problem)
    pairs.append((vision_only, executor.run([vision_only])[0].png))
    env = {k: v for k, v in os.environ.items() if not k.startswith("MPL")}
    procs = []
    for i, (code, image) in enumerate(pairs):
        program, out = tmp_path / f"figure_{i}.py", tmp_path / f"figure_{i}.png"
        program.write_text(code)
        argv = [sys.executable, str(program), str(out)]
        procs.append((subprocess.Popen(argv, cwd=tmp_path, env=env), out, image))
    for proc, out, image in procs:
        assert proc.wait(timeout=120) == 0
        assert image is not None and out.read_bytes() == image


def _runner(executor):
    return lambda source: dataclasses.asdict(executor.run([source])[0])


BLANK = """
import sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
fig = plt.figure(figsize=(2, 2), dpi=50)
fig.savefig(sys.argv[1])
"""
CLIPPED = BLANK.replace(
    "fig.savefig", "fig.gca().plot([0, 1], [0, 1])\nfig.text(0.9, 0.5, 'AB = 12 cm')\nfig.savefig"
)


def test_engine_gates_reject_planted_blank_clipped_and_broken_figures(executor):
    run = _runner(executor)
    reasons = []
    for program in (BLANK, CLIPPED, "raise RuntimeError('planted')", "import os\nos._exit(3)"):
        with pytest.raises(E._Reject) as info:
            E._render(run, program, Q.QualityConfig(), {})
        reasons.append(info.value.reason)
    assert reasons[:3] == ["blank", "clipped", "render_failed:exception"]
    assert reasons[3] == "render_failed:crash"


def test_items_of_a_split_only_hold_problems_of_that_split(executor):
    run = _runner(executor)
    for split in ("train", "test"):
        config = E.DatagenConfig(recipe="captions", n=1, split=split, progress=False)
        for index in range(3):
            item = E.build_item({"config": config, "index": index}, run)
            assert Q.split_of(item["fingerprint"]) == split, item
        # The test split owns 5% of contents: its items skip seeds whose content is not theirs.


def test_mathverse_recipe_gives_text_only_and_five_versions_per_problem(executor):
    config = E.DatagenConfig(recipe="mathverse_eval", n=2, seed=4, workers=2, progress=False)
    result = E.generate(config, executor)
    assert result.split_retries > 0  # test-split content is found by skipping other seeds
    by_problem = {}
    for record in result.records:
        assert isinstance(record, R.EvalProblem)
        by_problem.setdefault(record.problem_id, []).append(record)
        assert Q.split_of(record.metadata["fingerprint"]) == "test"
    assert len(by_problem) == 2
    for versions in by_problem.values():
        names = [r.version for r in versions]
        assert names[:5] == [
            "Text Only",
            "Text Dominant",
            "Text Lite",
            "Vision Intensive",
            "Vision Dominant",
        ]
        assert versions[0].images == () and all(len(r.images) == 1 for r in versions[1:])
        assert len({r.answer for r in versions}) == 1  # same problem, same gold
        lengths = [len(r.question) for r in versions[1:5] if r.choices is None]
        assert lengths == sorted(lengths, reverse=True)  # information leaves the text
        if names[-1] == "Vision Only":
            vo = versions[-1]
            assert not re.search(r"\d", vo.question.split("Choices:")[0])
        for r in versions:
            if r.answer_type == "multi_choice":
                assert r.answer in "ABCD" and r.choices[ord(r.answer) - 65]


def test_puma_and_instruct_recipes_build_valid_records(executor):
    pairs = E.generate(
        E.DatagenConfig(recipe="puma_pairs", n=3, seed=8, workers=2, progress=False), executor
    )
    for pair in pairs.records:
        assert isinstance(pair, R.PumaPair)
        assert len(pair.vision_rich.images) == 1
        assert len(pair.text_rich.images) <= 1
        assert pair.solution.splitlines()[-1].startswith("The answer is ")
    convs = E.generate(
        E.DatagenConfig(recipe="instruct", n=2, seed=8, workers=2, progress=False), executor
    )
    for conv in convs.records:
        assert isinstance(conv, R.MultimodalConversation)
        assert conv.turns[0].content.startswith(R.IMAGE_PLACEHOLDER)
        assert "The answer is" in conv.turns[1].content


def test_cli_writes_a_tfds_dataset_a_report_and_a_preview(tmp_path):
    from mathjax_vl.cli.main import main
    from mathjax_vl.data.storage import RecordSource

    preview = tmp_path / "preview.png"
    argv = ["datagen", "--recipe", "captions", "--n", "3", "--seed", "2", "--workers", "1"]
    argv += ["--out", str(tmp_path / "out"), "--preview", str(preview), "--no-progress"]
    assert main(argv) == 0
    source = RecordSource(tmp_path / "out", split="train")
    records = [source[i] for i in range(len(source))]
    assert len(records) == 3 and all(isinstance(r, R.ImageCaption) for r in records)
    assert all(r.caption and r.image.startswith(b"\x89PNG") for r in records)
    assert os.path.isfile(os.path.join(source.dataset_dir, "datagen_report.json"))
    assert preview.read_bytes().startswith(b"\x89PNG")


def test_a_family_subtype_entry_narrows_generation_to_that_subtype(executor):
    config = E.DatagenConfig(
        recipe="captions",
        n=4,
        seed=3,
        families=("plane_geometry/regular_polygon", "solid_geometry/cube"),
        progress=False,
    )
    result = E.generate(config, executor)
    assert len(result.records) == 4
    run = _runner(executor)
    subtypes = [E.build_item({"config": config, "index": i}, run)["subtype"] for i in range(4)]
    assert subtypes == ["regular_polygon", "cube", "regular_polygon", "cube"]
    with pytest.raises(KeyError, match="no subtype 'heptagon'"):
        E.DatagenConfig(recipe="captions", n=1, families=("plane_geometry/heptagon",))
    with pytest.raises(KeyError, match="unknown family 'topology'"):
        E.DatagenConfig(recipe="captions", n=1, families=("topology",))
    with pytest.raises(ValueError, match="at least one family"):
        E.DatagenConfig(recipe="captions", n=1, families=())


def test_cli_rejects_an_unknown_subtype_in_one_line(capsys):
    from mathjax_vl.cli.main import main

    argv = ["datagen", "--recipe", "captions", "--n", "1", "--out", "/nonexistent/x"]
    assert main([*argv, "--families", "functions/fractal"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "no subtype 'fractal'" in err
