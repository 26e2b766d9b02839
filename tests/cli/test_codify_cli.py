"""`mathjax-vl codify`: a random image-to-code model's programs all fail inside the sandbox (the
run completes and reports every outcome); programs that reproduce the figure are kept."""

import importlib.util
import json
import pathlib
import sys

import pytest

from mathjax_vl.cli.commands import codify as codify_cli
from mathjax_vl.cli.main import main
from mathjax_vl.data.storage import open_source
from mathjax_vl.datagen.sandbox import FigureExecutor, SandboxConfig


def _load_assets():
    """tests/eval/_tiny_assets.py, one module object per process (its model cache is shared)."""
    if "_tiny_assets" not in sys.modules:
        spec = importlib.util.spec_from_file_location(
            "_tiny_assets", pathlib.Path(__file__).parent.parent / "eval" / "_tiny_assets.py"
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules["_tiny_assets"] = module
        spec.loader.exec_module(module)
    return sys.modules["_tiny_assets"]


assets = _load_assets()

TRIANGLE = """
import sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
fig, ax = plt.subplots(figsize=(2, 2), dpi=50)
ax.plot([0, 4, 1, 0], [0, 0, 3, 0], color="black", lw=2)
ax.set_xlim(-1, 5); ax.set_ylim(-1, 4); ax.axis("off")
fig.savefig(sys.argv[1])
"""
CIRCLE = TRIANGLE.replace(
    'ax.plot([0, 4, 1, 0], [0, 0, 3, 0], color="black", lw=2)',
    "ax.add_patch(plt.Circle((2, 1.5), 1.4, fill=False, lw=2))",
)


@pytest.fixture(scope="module")
def figures(tmp_path_factory):
    """A folder with a triangle and a circle drawn by their programs (name -> program)."""
    folder = tmp_path_factory.mktemp("figures")
    programs = {"a_triangle": TRIANGLE, "b_circle": CIRCLE}
    with FigureExecutor(SandboxConfig(workers=1, timeout_s=20.0)) as executor:
        results = executor.run(list(programs.values()))
    pngs = {}
    for (name, _), result in zip(programs.items(), results):
        assert result.ok, result.error
        (folder / f"{name}.png").write_bytes(result.png)
        pngs[name] = result.png
    (folder / "notes.txt").write_text("ignored: not a png")
    return folder, programs, pngs


def _outcomes(out):
    return [json.loads(line) for line in (out / "outcomes.jsonl").read_text().splitlines()]


def test_random_model_fails_contained_and_run_completes(tmp_path, figures, capsys):
    folder, _, _ = figures
    llava_dir, _ = assets.shared_llava()  # same settings as the eval CLI test: shared compile
    out = tmp_path / "codified"
    rc = main(["codify", "--model", llava_dir, "--images", str(folder), "--out", str(out),
               "--max-new-tokens", "10", "--timeout", "5", "--batch-size", "2"])  # fmt: skip
    printed = capsys.readouterr().out
    assert rc == 0
    outcomes = _outcomes(out)
    assert [o["name"] for o in outcomes] == ["a_triangle", "b_circle"]
    assert all(o["status"] != "kept" for o in outcomes)  # random text is no program
    assert all(o["error"] or o["status"] == "below_threshold" for o in outcomes)
    assert "2 figures:" in printed and "no dataset written" in printed
    assert not (out / "codified").exists()


def test_keeps_programs_whose_render_matches(tmp_path, figures, monkeypatch, capsys):
    folder, _, pngs = figures
    by_png = {
        pngs["a_triangle"]: f"```python\n{TRIANGLE}```",  # the true program
        pngs["b_circle"]: TRIANGLE,
    }  # the second runs, but draws a triangle for the circle
    monkeypatch.setattr(
        codify_cli, "build_generate", lambda args: (lambda images: [by_png[p] for p in images], {})
    )
    out = tmp_path / "codified"
    rc = main(["codify", "--model", str(tmp_path), "--images", str(folder), "--out", str(out),
               "--threshold", "0.9"])  # fmt: skip
    printed = capsys.readouterr().out
    assert rc == 0
    statuses = {o["name"]: o["status"] for o in _outcomes(out)}
    assert statuses == {"a_triangle": "kept", "b_circle": "below_threshold"}
    assert "below_threshold 1, kept 1" in printed
    records = open_source(str(out / "codified"), "train")
    assert len(records) == 1
    record = records[0]
    assert record.id == "a_triangle" and record.language == "python"
    assert record.image == pngs["a_triangle"] and "ax.plot" in record.code
    # A second run into the same dataset is refused before any work is done.
    rc = main(["codify", "--model", str(tmp_path), "--images", str(folder), "--out", str(out)])
    assert rc == 2 and "already exists" in capsys.readouterr().err


def test_crashed_run_resumes_with_only_the_remaining_figures(tmp_path, figures, monkeypatch):
    """A run that dies after its first batch (1 figure) is rerun: only the other figure is
    generated and rendered, and outcomes + dataset equal an uninterrupted run's."""
    folder, _, pngs = figures
    by_png = {pngs["a_triangle"]: TRIANGLE, pngs["b_circle"]: TRIANGLE}
    calls = []

    def build(crash_after):
        def generate(images):
            if crash_after is not None and len(calls) >= crash_after:
                raise RuntimeError("killed")
            calls.append(len(images))
            return [by_png[p] for p in images]

        return lambda args: (generate, {"model": "fake"})

    def run(out):
        return main(["codify", "--model", str(tmp_path), "--images", str(folder), "--out",
                     str(out), "--batch-size", "1", "--threshold", "0.9"])  # fmt: skip

    monkeypatch.setattr(codify_cli, "build_generate", build(None))
    assert run(tmp_path / "straight") == 0 and calls == [1, 1]
    calls.clear()
    monkeypatch.setattr(codify_cli, "build_generate", build(1))
    with pytest.raises(RuntimeError, match="killed"):
        run(tmp_path / "resumed")
    assert calls == [1] and not (tmp_path / "resumed" / "outcomes.jsonl").exists()
    calls.clear()
    monkeypatch.setattr(codify_cli, "build_generate", build(None))
    assert run(tmp_path / "resumed") == 0
    assert calls == [1]  # the first figure was not generated (nor rendered) again
    assert _outcomes(tmp_path / "resumed") == _outcomes(tmp_path / "straight")
    a = open_source(str(tmp_path / "straight" / "codified"), "train")
    b = open_source(str(tmp_path / "resumed" / "codified"), "train")
    assert [(r.id, r.code, r.image) for r in a] == [(r.id, r.code, r.image) for r in b]
    assert [r.id for r in a] == ["a_triangle"]


def test_bad_images_folder_is_named(tmp_path, capsys):
    rc = main(["codify", "--model", str(tmp_path), "--images", str(tmp_path / "none"),
               "--out", str(tmp_path / "o")])  # fmt: skip
    assert rc == 2 and f"--images {tmp_path / 'none'}: not a directory" in capsys.readouterr().err
    rc = main(["codify", "--model", str(tmp_path), "--images", str(tmp_path),
               "--out", str(tmp_path / "o")])  # fmt: skip
    assert rc == 2 and "no .png files" in capsys.readouterr().err
