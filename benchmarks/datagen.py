"""Data-engine throughput: figures/s per core through the sandboxed executor vs raw matplotlib.

    python benchmarks/datagen.py [--figures 60] [--reps 3] [--pairs 48] [--workers 2]
                                 [--baseline GIT_REVISION] [--profile] [--compare-with GIT_REV]

For each family, fully labelled figure programs of `--figures` problems are prepared outside the
timing. Then, in `--reps` rounds, each round timing every row (reference figure and families) once
each way, so raw and executor and all rows see the same machine load:
  raw       the same programs exec'd and drawn+PNG-encoded in THIS process, one after another
            (no sandbox, no IPC): the matplotlib draw-and-encode rate of these figures;
  executor  the programs through FigureExecutor with ONE sandbox (one core): namespaces, a
            fresh process forked from the warm zygote per program, rlimits, seccomp, audit
            hook, clip measurement, PNG bytes + JSON back. CPU = the program's process (wait4
            rusage, so page faults after the fork count) + the zygote's share + this process;
  baseline  the same programs through the executor of `--baseline` (default: the last revision
            before OS isolation, a pool of warm in-process workers that exec program after
            program), run in a helper process with that revision's sandbox.py, timed
            interleaved with the executor in the same rounds (`--baseline none` skips it).
Both are per core. Then the whole engine (problem generation with sympy, answer re-check,
versions, rendering, image gates, dedup) makes `--pairs` Math-PUMA pairs with `--workers`
workers (now, the baseline revision's whole package in a helper process, now again), from which
the hours for Math-PUMA's 120K automatically generated pairs follow.

The machine is shared: the load average is printed; compare ratios, which are measured within
one run, rather than absolute rates across runs.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _programs(family_name: str, count: int) -> list[str]:
    from mathjax_vl.datagen.families import FAMILIES
    from mathjax_vl.datagen.quality import answer_problems

    family = FAMILIES[family_name]
    programs = []
    seed = 0
    while len(programs) < count:
        seed += 1
        try:
            problem = family.generate(10_000 + seed)
        except Exception:
            continue
        if answer_problems(problem):
            continue
        shown = [f.key for f in problem.facts if f.drawable]
        programs.append(problem.figure_program(shown))
    return programs


def _raw_rate(programs: list[str], workdir: str) -> float:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    compiled = [compile(p, "<figure program>", "exec") for p in programs]
    out = os.path.join(workdir, "raw.png")
    saved = sys.argv
    start, cpu_start = time.perf_counter(), time.process_time()
    for code in compiled:
        sys.argv = ["figure.py", out]
        with matplotlib.rc_context():
            exec(code, {"__name__": "__main__"})
        plt.close("all")
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu_start
    sys.argv = saved
    return len(programs) / elapsed, len(programs) / cpu


# (label, file suffix, function name): cumulative profile time of these calls, per figure.
_PROFILE_PARTS = (
    (
        "figure + axes created",
        ("matplotlib/pyplot.py", "figure"),
        ("matplotlib/figure.py", "add_axes"),
        ("matplotlib/figure.py", "add_subplot"),
    ),
    (
        "texts created",
        ("matplotlib/axes/_axes.py", "text"),
        ("matplotlib/axes/_axes.py", "set_title"),
    ),
    ("texts drawn", ("matplotlib/text.py", "draw")),
    ("PNG encoded", ("PIL/Image.py", "save")),
)


def _profile(programs: list[str], workdir: str) -> tuple[float, dict[str, float]]:
    """cProfile of the raw loop: ms per figure, and the share of each part of `_PROFILE_PARTS`
    (figure.draw minus texts drawn = other artists drawn; the rest = building the other artists,
    the program's own code). Profiling inflates Python-heavy parts; read shares, not times."""
    import cProfile
    import pstats

    profiler = cProfile.Profile()
    profiler.enable()
    _raw_rate(programs, workdir)
    profiler.disable()
    stats = pstats.Stats(profiler).stats  # (file, line, name) -> (cc, nc, tt, ct, callers)

    def cumulative(suffix: str, name: str) -> float:
        return sum(v[3] for (f, _, n), v in stats.items() if n == name and f.endswith(suffix))

    total = cumulative("benchmarks/datagen.py", "_raw_rate")
    shares = {}
    for label, *calls in _PROFILE_PARTS:
        shares[label] = sum(cumulative(f, n) for f, n in calls) / total
    drawn = cumulative("matplotlib/figure.py", "draw") / total
    shares["other artists drawn"] = drawn - shares["texts drawn"]
    shares["rest (other artists built, program code)"] = 1 - sum(shares.values())
    return total / len(programs) * 1000, shares


def _executor_overhead_ms(executor, count: int = 100) -> float:
    """CPU ms per program (worker + parent) of a program that only writes a 20 KB 'PNG'."""
    program = f"import sys\nopen(sys.argv[1], 'wb').write({PNG_STUB!r})\n"
    cpu_start = time.process_time()
    results = executor.run([program] * count)
    cpu = time.process_time() - cpu_start + sum(r.cpu_seconds for r in results)
    assert all(r.ok for r in results), results[0].error
    return cpu / count * 1000


PNG_STUB = b"\x89PNG\r\n\x1a\n" + bytes(20_000)


def _executor_rate(executor, programs: list[str]) -> tuple[float, float, int]:
    """(figures per wall second, figures per CPU second of worker + parent, failures)."""
    start, cpu_start = time.perf_counter(), time.process_time()
    results = executor.run(programs)
    elapsed, parent_cpu = time.perf_counter() - start, time.process_time() - cpu_start
    cpu = parent_cpu + sum(r.cpu_seconds for r in results)
    return len(programs) / elapsed, len(programs) / cpu, sum(not r.ok for r in results)


REFERENCE_FIGURE = """
import sys
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt

def draw(out_path):
    fig, ax = plt.subplots(figsize=(4, 4), dpi=96)
    ax.plot([0, 1, 0.5, 0], [0, 0, 1, 0], "k-")
    for x, y, name in ((0, 0, "A"), (1, 0, "B"), (0.5, 1, "C")):
        ax.text(x, y, name)
    ax.text(0.5, -0.05, "5 cm")
    ax.set_aspect("equal")
    ax.axis("off")
    fig.savefig(out_path, metadata={"Software": None})
    plt.close(fig)

if __name__ == "__main__":
    draw(sys.argv[1])
"""


PRE_ISOLATION_REVISION = "75f3bb281aa3948efd42a387e5b2b9dd648bfcd7"  # in-process worker pool

_BASELINE_HELPER = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
from mathjax_vl.datagen.sandbox import FigureExecutor, SandboxConfig
with FigureExecutor(SandboxConfig(workers=1)) as executor:
    executor.run(["x = 1"])
    print(json.dumps("ready"), flush=True)
    for line in sys.stdin:
        programs = json.loads(line)
        start, cpu_start = time.perf_counter(), time.process_time()
        results = executor.run(programs)
        elapsed, parent_cpu = time.perf_counter() - start, time.process_time() - cpu_start
        cpu = parent_cpu + sum(r.cpu_seconds for r in results)
        failed = sum(not r.ok for r in results)
        print(json.dumps([len(programs) / elapsed, len(programs) / cpu, failed]), flush=True)
"""


class _Baseline:
    """The executor of another revision, in a helper process: `rate(programs)` like
    `_executor_rate`. Only that revision's sandbox.py is exported (its workers import nothing
    else of the package for plain programs)."""

    def __init__(self, revision: str):
        import json
        import subprocess

        repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        source = subprocess.run(
            ["git", "show", f"{revision}:mathjax_vl/datagen/sandbox.py"],
            cwd=repo,
            capture_output=True,
            check=True,
        ).stdout
        self._tree = tempfile.mkdtemp(prefix="datagen_baseline_")
        package = os.path.join(self._tree, "mathjax_vl", "datagen")
        os.makedirs(package)
        for init in (os.path.join(self._tree, "mathjax_vl"), package):
            open(os.path.join(init, "__init__.py"), "w").close()
        with open(os.path.join(package, "sandbox.py"), "wb") as f:
            f.write(source)
        env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
        self._process = subprocess.Popen(
            [sys.executable, "-c", _BASELINE_HELPER, self._tree],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self._json = json
        assert json.loads(self._process.stdout.readline()) == "ready"

    def rate(self, programs: list[str]) -> tuple[float, float, int]:
        self._process.stdin.write(self._json.dumps(programs) + "\n")
        self._process.stdin.flush()
        return tuple(self._json.loads(self._process.stdout.readline()))

    def close(self) -> None:
        import shutil

        self._process.stdin.close()
        self._process.wait(timeout=30)
        shutil.rmtree(self._tree, ignore_errors=True)


def _engine_run(pairs: int, workers: int) -> dict:
    """engine.generate of `pairs` Math-PUMA pairs: wall seconds and CPU per accepted pair
    (jobs' CPU as the executor reports it + this process)."""
    import time

    from mathjax_vl.datagen import engine
    from mathjax_vl.datagen.sandbox import FigureExecutor, SandboxConfig

    config = engine.DatagenConfig(
        recipe="puma_pairs", n=pairs, seed=0, workers=workers, progress=False
    )
    with FigureExecutor(SandboxConfig(workers=workers)) as pool:
        pool.run(["x = 1"] * workers)  # start-up is not part of the steady state
        job_cpu = []
        map_calls = pool.map_calls

        def counted(target, payloads):
            for job in map_calls(target, payloads):
                job_cpu.append(job.cpu_seconds)
                yield job

        pool.map_calls = counted
        start, cpu_start = time.perf_counter(), time.process_time()
        result = engine.generate(config, pool)  # records in memory: 60 pairs are small
        elapsed, parent_cpu = time.perf_counter() - start, time.process_time() - cpu_start
    figures = sum(len(r.text_rich.images) + len(r.vision_rich.images) for r in result.records)
    return {
        "pairs": len(result.records),
        "figures": figures,
        "items": result.items_tried,
        "seconds": elapsed,
        "cpu_per_pair": (sum(job_cpu) + parent_cpu) / len(result.records),
    }


def _engine_at_revision(revision: str, pairs: int, workers: int) -> dict:
    """`_engine_run` with the whole package as it was at `revision` (exported to a temp dir)."""
    import inspect
    import io
    import json
    import subprocess
    import tarfile

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    archive = subprocess.run(
        ["git", "archive", revision, "mathjax_vl"], cwd=repo, capture_output=True, check=True
    ).stdout
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    with tempfile.TemporaryDirectory() as tree:
        tarfile.open(fileobj=io.BytesIO(archive)).extractall(tree, filter="data")
        script = "\n".join(
            [
                f"import json, sys\nsys.path.insert(0, {tree!r})",
                inspect.getsource(_engine_run),
                f"print(json.dumps(_engine_run({pairs}, {workers})))",
            ]
        )
        out = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, check=True, env=env
        ).stdout
    return json.loads(out.strip().splitlines()[-1])


def _programs_at_revision(revision: str, names: list[str], count: int) -> dict[str, list[str]]:
    """The same problems' figure programs as emitted by the package at a git revision (its
    `mathjax_vl/` exported to a temp dir, generated in a subprocess that imports it)."""
    import inspect
    import io
    import json
    import subprocess
    import tarfile

    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    archive = subprocess.run(
        ["git", "archive", revision, "mathjax_vl"], cwd=repo, capture_output=True, check=True
    ).stdout
    with tempfile.TemporaryDirectory() as tree:
        tarfile.open(fileobj=io.BytesIO(archive)).extractall(tree, filter="data")
        script = "\n".join(
            [
                f"import json, sys\nsys.path.insert(0, {tree!r})",
                inspect.getsource(_programs),
                f"print(json.dumps({{n: _programs(n, {count}) for n in {names!r}}}))",
            ]
        )
        out = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, check=True
        ).stdout
    return json.loads(out)


def _compare_with_revision(revision: str, names: list[str], count: int, reps: int) -> None:
    """Raw (in-process) rate of the figure programs at `revision` vs now, interleaved."""
    from mathjax_vl.datagen.families import FAMILIES

    before = _programs_at_revision(revision, names, count)
    print(f"\nRaw matplotlib rate of the same problems' programs at {revision} vs now")
    print("(in-process, interleaved in the same run, CPU fig/s):\n")
    print(f"| family | {revision} | now | speed-up |")
    print("| --- | ---: | ---: | ---: |")
    with tempfile.TemporaryDirectory() as workdir:
        for name in names:
            assert name in FAMILIES, name
            now = _programs(name, count)
            _raw_rate(before[name][:3], workdir)
            _raw_rate(now[:3], workdir)
            old_rates, new_rates = [], []
            for _ in range(reps):
                old_rates.append(_raw_rate(before[name], workdir)[1])
                new_rates.append(_raw_rate(now, workdir)[1])
            old, new = sum(old_rates) / reps, sum(new_rates) / reps
            print(f"| {name} | {old:.1f} | {new:.1f} | {new / old:.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--figures", type=int, default=60)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--pairs", type=int, default=48)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--baseline",
        default=PRE_ISOLATION_REVISION,
        help="git revision whose executor is timed alongside (none: skip)",
    )
    parser.add_argument(
        "--profile", action="store_true", help="also print where a raw figure's time goes"
    )
    parser.add_argument(
        "--compare-with",
        metavar="GIT_REVISION",
        help="also time the families' programs as emitted at this revision against now (raw)",
    )
    args = parser.parse_args()

    import matplotlib

    from mathjax_vl.datagen.families import FAMILIES
    from mathjax_vl.datagen.sandbox import FigureExecutor, SandboxConfig

    print(f"cores: {os.cpu_count()}  load average at start: {os.getloadavg()}")
    print(f"matplotlib {matplotlib.__version__}, python {sys.version.split()[0]}")
    rows, profiles = [], []
    baseline = None if args.baseline == "none" else _Baseline(args.baseline)
    with (
        tempfile.TemporaryDirectory() as workdir,
        FigureExecutor(SandboxConfig(workers=1)) as executor,
    ):
        executor.run(["x = 1"])  # wait for the worker to be warm
        print(f"isolation: {executor.mode}")
        names = ["simple triangle (reference)", *sorted(FAMILIES)]
        sets = {}
        for name in names:
            if name in FAMILIES:
                sets[name] = _programs(name, args.figures)
            else:  # REFERENCE.md's anchor: ~30 simple figures/s per core on this kind of machine
                sets[name] = [REFERENCE_FIGURE] * args.figures
            _raw_rate(sets[name][:3], workdir)  # warm caches (fonts, mathtext) in this process
            executor.run(sets[name][:3])
            if baseline is not None:
                baseline.rate(sets[name][:3])
        # Every rep times every row (raw, executor, baseline; the last two alternate in order),
        # so all rows share the machine's load.
        timings = {name: ([], [], [], [], [0], []) for name in names}
        for rep in range(args.reps):
            for name in names:
                raw, raw_cpu, wall, cpu, failures, base_cpu = timings[name]
                r_wall, r_cpu = _raw_rate(sets[name], workdir)
                raw.append(r_wall)
                raw_cpu.append(r_cpu)
                if baseline is not None and rep % 2 == 1:
                    base_cpu.append(baseline.rate(sets[name])[1])
                e_wall, e_cpu, failed = _executor_rate(executor, sets[name])
                wall.append(e_wall)
                cpu.append(e_cpu)
                failures[0] += failed
                if baseline is not None and rep % 2 == 0:
                    base_cpu.append(baseline.rate(sets[name])[1])
        mean = lambda xs: sum(xs) / len(xs) if xs else float("nan")
        for name in names:
            raw, raw_cpu, wall, cpu, failures, base_cpu = timings[name]
            rows.append(
                (name, mean(raw), mean(wall), mean(raw_cpu), mean(cpu), failures[0], mean(base_cpu))
            )
            if args.profile:
                profiles.append((name, *_profile(sets[name], workdir)))
        overhead_ms = _executor_overhead_ms(executor)
    if baseline is not None:
        baseline.close()
    reference_raw_cpu = rows[0][3]
    print()
    print("Per core. wall = figures per elapsed second of one process (depends on machine load);")
    print("cpu = figures per CPU second used (executor: worker + parent), less load-dependent;")
    print("last column: executor cpu rate / the reference figure's raw cpu rate (same run).")
    print()
    print(f"baseline: the executor at {args.baseline} (cpu fig/s), timed in the same rounds.")
    print()
    print(
        "| figures | raw wall fig/s | executor wall fig/s | raw cpu fig/s | executor cpu fig/s "
        "| executor / raw (cpu) | failed | executor / reference raw | baseline cpu fig/s "
        "| executor / baseline (cpu) |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for name, r_wall, e_wall, r_cpu, e_cpu, failures, b_cpu in rows:
        print(
            f"| {name} | {r_wall:.1f} | {e_wall:.1f} | {r_cpu:.1f} | {e_cpu:.1f} "
            f"| {e_cpu / r_cpu:.0%} | {failures} | {e_cpu / reference_raw_cpu:.0%} "
            f"| {b_cpu:.1f} | {e_cpu / b_cpu:.0%} |"
        )

    print(
        f"\nexecutor overhead: {overhead_ms:.2f} ms CPU per program (worker + parent) for a "
        "program that only writes a 20 KB file: fork, working dir, limits, seccomp, guard, IPC"
    )
    if profiles:
        labels = list(profiles[0][2])
        print("\nWhere a raw figure's time goes (cProfile, in-process; shares of the total):\n")
        print(f"| figures | ms/figure (profiled) | {' | '.join(labels)} |")
        print(f"| --- | ---: | {' | '.join('---:' for _ in labels)} |")
        for name, ms, shares in profiles:
            print(f"| {name} | {ms:.1f} | {' | '.join(f'{shares[k]:.0%}' for k in labels)} |")

    if args.compare_with:
        _compare_with_revision(args.compare_with, sorted(FAMILIES), args.figures, args.reps)

    runs = {"now": [_engine_run(args.pairs, args.workers)]}
    if baseline is not None:
        runs["baseline"] = [_engine_at_revision(args.baseline, args.pairs, args.workers)]
        runs["now"].append(_engine_run(args.pairs, args.workers))
    print()
    for label, measured in runs.items():
        for run in measured:
            print(
                f"engine puma_pairs ({label}): {run['pairs']} pairs ({run['figures']} figures, "
                f"{run['items']} items tried) in {run['seconds']:.1f} s wall with "
                f"{args.workers} workers = {run['pairs'] / run['seconds']:.2f} pairs/s; CPU per "
                f"accepted pair (workers + parent, rejected items included) "
                f"{run['cpu_per_pair'] * 1000:.0f} ms = {1 / run['cpu_per_pair']:.2f} pairs/s/core"
            )
    run = runs["now"][0]
    print(
        f"Math-PUMA's 120K generated pairs on this machine ({args.workers} workers): "
        f"{120_000 / (run['pairs'] / run['seconds']) / 3600:.2f} h at the measured wall rate "
        f"(current load), {120_000 * run['cpu_per_pair'] / os.cpu_count() / 3600:.2f} h with all "
        f"{os.cpu_count()} cores to ourselves (CPU-time estimate)"
    )
    print(f"load average at end: {os.getloadavg()}")


if __name__ == "__main__":
    main()
