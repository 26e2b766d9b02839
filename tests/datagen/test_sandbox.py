"""The figure executor: bad programs are stopped and reported, good ones still render."""

import io

import numpy as np
import pytest
from PIL import Image

from mathjax_vl.datagen.sandbox import FigureExecutor, SandboxConfig

GOOD = """
import sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

def draw(out_path):
    fig, ax = plt.subplots(figsize=(2, 2), dpi=50)
    ax.plot([0, 1, 0.5, 0], [0, 0, 1, 0], "k-")
    ax.text(0.5, -0.05, "LABEL", ha="center")
    ax.set_xlim(-0.2, 1.2)
    ax.set_ylim(-0.2, 1.2)
    ax.axis("off")
    fig.savefig(out_path, metadata={"Software": None})

if __name__ == "__main__":
    draw(sys.argv[1])
"""


@pytest.fixture(scope="module")
def executor():
    with FigureExecutor(SandboxConfig(workers=2, timeout_s=0.25, wall_timeout_s=8.0)) as ex:
        yield ex


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def test_bad_programs_are_stopped_and_reported_and_the_run_completes(executor, tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    programs = [
        GOOD,
        "while True:\n    pass\n",  # infinite loop
        "block = bytearray(10 * 1024**3)\n",  # 10 GB allocation
        GOOD.replace("LABEL", "B"),
        f"import os\nos.remove({str(victim)!r})\n",  # delete a file outside its dir
        "def broken(:\n    pass\n",  # syntax error
        # a write outside its dir whose PermissionError the program swallows
        f"try:\n    open({str(tmp_path / 'new.txt')!r}, 'w')\nexcept OSError:\n    pass\n",
        "import subprocess\nsubprocess.run(['true'])\n",
        "import os\nos._exit(7)\n",  # worker dies
        "x = 1\n",  # makes no image
        # an infinite loop that disables its own CPU timer: the CPU rlimit ends it
        "import signal\nsignal.signal(signal.SIGPROF, signal.SIG_IGN)\nwhile True:\n    pass\n",
        "import numpy as np\na = np.ones((40000, 40000))\n",  # 12.8 GB through numpy
        GOOD.replace("LABEL", "C"),
    ]
    results = executor.run(programs)
    kinds = [r.error_kind for r in results]
    assert kinds == [
        None,
        "timeout",
        "memory",
        None,
        "forbidden",
        "syntax",
        "forbidden",  # recorded even though the program swallowed the PermissionError
        "forbidden",
        "crash",
        "no_image",
        "timeout",
        "memory",
        None,
    ], [(r.error_kind, r.error) for r in results]
    assert victim.read_text() == "keep me"
    assert not (tmp_path / "new.txt").exists()
    assert "victim.txt" in results[4].error
    assert "0.25 s of CPU" in results[1].error and "interrupted" in results[1].error
    # whichever limit comes first on a loaded machine: 2 CPU seconds or 8 s wall-clock
    assert "2 s of CPU (rlimit)" in results[10].error or "8 s wall-clock" in results[10].error
    for i in (0, 3, 12):
        image = _pixels(results[i].png)
        assert image.shape == (100, 100, 3)
        assert (image < 128).any()  # something was drawn
    # Distinct labels -> distinct images; same program -> identical bytes (fresh process each).
    assert results[0].png != results[3].png
    again = executor.run([GOOD])[0]
    assert again.png == results[0].png
    assert executor.restarts == 0  # every failure ended one program's process, not a sandbox


def test_clipped_labels_are_measured_on_the_canvas(executor):
    inside, outside = executor.run(
        [GOOD, GOOD.replace('ax.text(0.5, -0.05, "LABEL"', 'ax.text(1.6, -0.05, "LABEL"')]
    )
    assert inside.ok and inside.clipped_labels == ()
    assert outside.ok and outside.clipped_labels == ("LABEL",)


def test_program_state_does_not_leak_between_runs(executor):
    """rcParams changed by one program are restored for the next, as in a fresh interpreter."""
    dirty = "import matplotlib\nmatplotlib.rcParams['lines.linewidth'] = 9\n" + GOOD
    first, _, clean = [executor.run([p])[0] for p in (GOOD, dirty, GOOD)]
    assert clean.png == first.png


def test_model_style_program_that_only_shows_its_figure_is_kept(executor):
    """MathCoder-VL-style code ends with plt.show(); the open figure is saved for it."""
    source = (
        "import matplotlib.pyplot as plt\nplt.plot([0, 1], [1, 0])\nplt.title('y')\nplt.show()\n"
    )
    result = executor.run([source])[0]
    assert result.ok, result.error
    assert _pixels(result.png).shape[:2] == (480, 640)  # matplotlib's default canvas
    assert "saved the open figure" in result.output


EXTENTS = """
import sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
from mathjax_vl.datagen import sandbox_mpl

fig, ax = plt.subplots(figsize=(3, 3), dpi=80)
ax.set_title("title")
ax.set_xlabel("x label")
ax.text(0.2, 0.2, "plain")
ax.text(0.5, 0.5, "rotated", rotation=35, ha="center", va="center")
ax.text(0.3, 0.8, "boxed", bbox=dict(boxstyle="round,pad=0.3", facecolor="white"))
ax.text(0.1, 0.5, "two\\nlines", ha="left", va="top")
ax.text(0.6, 0.2, r"$\\sqrt{x^2}$")
ax.text(1.0, 1.0, "axes", transform=ax.transAxes, ha="right", va="bottom")
ax.text(0.1, 0.9, "wrapped " * 8, wrap=True)
fig.savefig(sys.argv[1], metadata={"Software": None})
renderer = fig.canvas.get_renderer()
drawn = [(entry[0], entry[1:5]) for entry in sandbox_mpl.DRAWN_TEXT]
texts = [t for t in fig.findobj(matplotlib.text.Text) if t.get_visible() and t.get_text().strip()]
same = 0
for t in texts:
    b = t.get_window_extent(renderer)
    close = lambda got: max(abs(u - v) for u, v in zip(got, (b.x0, b.y0, b.x1, b.y1))) < 1e-6
    assert any(text == t.get_text() and close(got) for text, got in drawn), (t, b, drawn)
    same += 1
print("extents equal:", same, "drawn:", len(drawn))
"""


@pytest.fixture(scope="module")
def single_worker():
    """One worker (so consecutive programs share it) with the default CPU limit (the first math
    text of a worker is slow)."""
    with FigureExecutor(SandboxConfig(workers=1)) as ex:
        yield ex


def test_label_extents_are_matplotlibs_window_extents(single_worker):
    """The clip gate's extents (layout reused from draw) equal `Text.get_window_extent` for
    rotated, boxed, multi-line, math, axes-relative and wrapped labels and tick labels."""
    result = single_worker.run([EXTENTS])[0]
    assert result.ok, (result.error, result.output)
    same, drawn = (int(v) for v in result.output.split(":", 1)[1].split("drawn:"))
    assert same == drawn >= 12  # 7 texts + title + x label + tick labels


LITTER = """
import os
os.makedirs("sub/deeper")
open("sub/deeper/junk.txt", "w").write("x")
open("junk.txt", "w").write("x")
os.symlink("junk.txt", "link")
os.chmod("sub", 0o500)  # a directory the cleanup cannot empty: the worker moves to a new one
"""
CHECK_EMPTY = "import os\nassert os.listdir('.') == [], os.listdir('.')\n" + GOOD.replace(
    "def draw", "def _draw"
).replace("draw(sys.argv[1])", "_draw(sys.argv[1])")


def test_every_program_starts_in_an_empty_directory(single_worker):
    """Every program gets a new, empty working dir; the last one's files, links and
    subdirectories (even one it made unwritable) are gone."""
    plain = LITTER.replace('os.chmod("sub", 0o500)', "")
    results = single_worker.run([plain, CHECK_EMPTY, LITTER, CHECK_EMPTY, CHECK_EMPTY])
    assert [r.error_kind for r in results] == ["no_image", None, "no_image", None, None]
    assert results[1].png == results[3].png == results[4].png
