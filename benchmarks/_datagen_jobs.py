"""A trusted map_calls job for benchmarks/datagen.py, imported inside the sandbox by name.

It renders the given figure programs the way engine.build_item does (`trust="family"`: the
library's own family programs, the in-process path when SandboxConfig.trusted_in_process).
"""


def render(payload, run_program):
    """Render `payload["programs"]`; the number that did not come back as a PNG."""
    results = [run_program(p, trust=payload.get("trust", "family")) for p in payload["programs"]]
    return sum(r["error_kind"] is not None or r["png"] is None for r in results)
