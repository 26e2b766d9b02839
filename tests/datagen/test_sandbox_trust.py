"""The trusted in-process path (SandboxConfig.trusted_in_process) and who may not use it.

Engine/Beam jobs render the programs the library generated from its families in the warm job
worker (trust="family"); codify, `run` and anything a job does not mark keep a fresh restricted
process per program. The probe program prints its pid, so each test sees which process ran it,
and calls gc.get_objects() (refused by the audit hook), so it also sees which rules applied.
"""

import os

import pytest

from mathjax_vl.datagen.codify import codify
from mathjax_vl.datagen.sandbox import FigureExecutor, SandboxConfig

HERE = os.path.dirname(os.path.abspath(__file__))
FIGURE = (
    "import os, sys\nprint('PID', os.getpid())\nimport matplotlib.pyplot as plt\n"
    "plt.plot([0, 1], [1, 0])\nplt.title('trust')\nplt.savefig(sys.argv[1])\n"
)
INTROSPECTS = "import gc\ngc.get_objects()\n" + FIGURE  # fine for trusted code only


@pytest.fixture(scope="module", params=[True, False], ids=["in_process", "per_program"])
def executor(request):
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([HERE] + ([old] if old else []))
    try:
        with FigureExecutor(SandboxConfig(workers=1, trusted_in_process=request.param)) as executor:
            yield executor
    finally:
        if old is None:
            del os.environ["PYTHONPATH"]
        else:
            os.environ["PYTHONPATH"] = old


def _job(executor, trust, programs):
    payload = {"trust": trust, "programs": programs}
    (job,) = executor.map_calls("_sandbox_probe:render_with_trust", [payload])
    assert job.error_kind is None, job.error
    return job.value


def test_family_programs_render_in_the_worker_only_when_the_knob_is_on(executor):
    family = _job(executor, "family", [FIGURE, FIGURE, INTROSPECTS])
    untrusted = _job(executor, "untrusted", [FIGURE, INTROSPECTS])
    if executor.config.trusted_in_process:
        assert family["pids"] == [family["worker"]] * 3  # no process per program
        assert family["kinds"] == [None, None, None]  # no audit hook on trusted code
    else:
        assert len(family["pids"]) >= 2 and family["worker"] not in family["pids"]
        assert family["kinds"] == [None, None, "forbidden"]
    # The untrusted path is the same with the knob on or off: own process, audit hook.
    assert untrusted["pids"] and untrusted["worker"] not in untrusted["pids"]
    assert untrusted["kinds"] == [None, "forbidden"]
    # Both paths draw the same bytes (the engine's output does not depend on the path), and
    # the in-process path leaves nothing behind that changes the next figure.
    assert family["pngs"][0].startswith(b"\x89PNG")
    assert family["pngs"][0] == family["pngs"][1] == untrusted["pngs"][0]


def test_run_and_codify_never_take_the_trusted_path(executor):
    """The public run-program API and codify's model-written programs: always per-program."""
    ok, refused = executor.run([FIGURE, INTROSPECTS])
    assert ok.ok and ok.error_kind is None
    assert refused.error_kind == "forbidden" and "gc" in refused.error
    report = codify([("fig", ok.png)], lambda images: [INTROSPECTS] * len(images), executor)
    assert [o.status for o in report.outcomes] == ["forbidden"] and report.records == []


def test_an_unknown_trust_level_is_refused(executor):
    (job,) = executor.map_calls(
        "_sandbox_probe:render_with_trust", [{"trust": "trusted", "programs": [FIGURE]}]
    )
    assert job.error_kind == "exception" and "trust must be one of" in job.error
