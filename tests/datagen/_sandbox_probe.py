"""A trusted job for sandbox tests: reports what a process inside the sandbox can see.

Imported inside the sandbox by module name (tests/datagen is put on PYTHONPATH, as for
_beam_faults); it runs without the audit hook, so it can look at everything the namespaces let
through.
"""

import os


def probe(payload, run_program):
    def readable(path):
        try:
            with open(path, "rb") as f:
                f.read(1)
            return True
        except OSError:
            return False

    with open("/proc/self/status") as f:
        status = dict(line.split(":", 1) for line in f if ":" in line)
    with open("/proc/net/dev") as f:
        interfaces = sorted(line.split(":")[0].strip() for line in f if ":" in line)
    return {
        "root": sorted(os.listdir("/")),
        "env": sorted(os.environ),
        "cap_eff": status["CapEff"].strip(),
        "no_new_privs": status["NoNewPrivs"].strip(),
        "pid": os.getpid(),
        "interfaces": interfaces,
        "readable": {p: readable(p) for p in payload["paths"]},
        "writable_tmp": os.access("/tmp", os.W_OK),
    }


def tamper_then_render(payload, run_program):
    """A job whose first program tampers with its interpreter and is refused, then renders."""
    import builtins

    bad = run_program("import builtins\nbuiltins.TAMPERED = True\nimport os\nos.fork()\n")
    good = run_program(payload["figure"])
    return {
        "bad": bad["error_kind"],
        "good": good["error_kind"],
        "png": good["png"],
        "tampered": hasattr(builtins, "TAMPERED"),
    }
