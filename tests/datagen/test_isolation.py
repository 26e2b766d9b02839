"""What a process inside the sandbox sees, per isolation tool, and failing clearly without one."""

import os
import shutil

import pytest

from mathjax_vl.datagen import isolation
from mathjax_vl.datagen.sandbox import FigureExecutor, IsolationError, SandboxConfig

HERE = os.path.dirname(os.path.abspath(__file__))
MODES = [m for m in ("bwrap", "unshare") if shutil.which(m)]


@pytest.fixture
def probe_on_path(monkeypatch):
    old = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([HERE] + ([old] if old else [])))
    monkeypatch.setenv("MATHJAX_VL_TEST_SECRET", "do-not-leak")


@pytest.mark.parametrize("mode", MODES)
def test_inside_the_sandbox_only_the_runtime_is_visible(mode, probe_on_path, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("x")
    repo_file = os.path.join(os.path.dirname(os.path.dirname(HERE)), "pyproject.toml")
    paths = [str(secret), "/etc/passwd", os.path.expanduser("~/.bashrc"), repo_file]
    config = SandboxConfig(workers=1, isolation=mode)
    with FigureExecutor(config) as executor:
        (job,) = executor.map_calls("_sandbox_probe:probe", [{"paths": paths}])
    assert job.error_kind is None, job.error
    seen = job.value
    bound = {root.split("/")[1] for root in isolation.read_roots()}  # e.g. usr, root (pyenv)
    assert set(seen["root"]) <= bound | {"dev", "proc", "tmp", "lib", "lib64", "lib32"}
    assert "etc" not in seen["root"] and "home" not in seen["root"]
    assert not any(seen["readable"].values())  # host files, /etc, $HOME, the repository root
    assert "MATHJAX_VL_TEST_SECRET" not in seen["env"] and "PATH" not in seen["env"]
    assert int(seen["cap_eff"], 16) == 0 and seen["no_new_privs"] == "1"
    assert seen["interfaces"] == ["lo"]  # a network namespace of its own
    assert seen["pid"] > 1  # the job is a child of the zygote, PID 1 of a new namespace
    assert seen["writable_tmp"]  # its private tmpfs


def test_a_missing_tool_fails_clearly_instead_of_running_unisolated(monkeypatch):
    monkeypatch.setattr(isolation.shutil, "which", lambda name: None)
    isolation.resolve_mode.cache_clear()
    try:
        with pytest.raises(IsolationError, match="--unsafe-no-isolation"):
            FigureExecutor(SandboxConfig(isolation="auto")).start()
        with pytest.raises(IsolationError, match="bwrap program is not installed"):
            FigureExecutor(SandboxConfig(isolation="bwrap")).start()
    finally:
        isolation.resolve_mode.cache_clear()


def test_unsafe_no_isolation_warns_and_still_limits(capfd):
    with FigureExecutor(SandboxConfig(workers=1, unsafe_no_isolation=True)) as executor:
        assert executor.mode == "none"
        ok, forbidden = executor.run(["x = 1\n", "import os\nos.fork()\n"])
    assert "WARNING: --unsafe-no-isolation" in capfd.readouterr().err
    assert ok.error_kind == "no_image" and forbidden.error_kind == "forbidden"


FIGURE = (
    "import sys\nimport matplotlib.pyplot as plt\nplt.plot([0, 1], [1, 0])\n"
    "plt.savefig(sys.argv[1])\n"
)


def test_programs_inside_jobs_run_in_their_own_processes(probe_on_path):
    """A job's figure programs cannot reach the warm job worker or later jobs."""
    with FigureExecutor(SandboxConfig(workers=1)) as executor:
        jobs = list(
            executor.map_calls("_sandbox_probe:tamper_then_render", [{"figure": FIGURE}] * 2)
        )
    for job in jobs:
        assert job.error_kind is None, job.error
        assert job.value["bad"] == "forbidden" and job.value["good"] is None
        assert job.value["png"].startswith(b"\x89PNG") and not job.value["tampered"]
