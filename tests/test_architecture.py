"""The package's structure, checked by parsing its source (no imports run):

- layers: a module imports only from its own layer or lower ones (function-level imports
  included): errors, models, losses < hf, data, decoding < datagen, train < eval < recipes <
  cli;
- no import cycle between packages (any import), and none between modules at import time
  (module-level imports; a registry's importlib loading of its built-in architecture modules is
  not an import statement);
- no model-kind dispatch outside the registries: no comparison against a registered kind name
  (or alias) and no isinstance / class-name test on a registered config class, except in the
  registries themselves and in the modules that declare that architecture.
"""

import ast
import pathlib
import re
import sys

import pytest

PKG = pathlib.Path(__file__).resolve().parent.parent / "mathjax_vl"
LAYERS = {
    "errors": 0,  # mathjax_vl/errors.py: the exception types every layer raises
    "models": 0,
    "losses": 0,
    "hf": 1,
    "data": 1,
    "decoding": 1,
    "datagen": 2,
    "train": 2,
    "eval": 3,
    "recipes": 4,
    "cli": 5,
}


def _modules() -> dict[str, pathlib.Path]:
    out = {}
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _imports(name: str, path: pathlib.Path, top_level: bool = False) -> set[str]:
    """mathjax_vl modules `name` imports (any nesting level, or module-level statements only),
    resolved to known modules."""
    tree = ast.parse(path.read_text())
    found: set[str] = set()
    for node in tree.body if top_level else ast.walk(tree):
        targets = []
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            targets = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for t in targets:
            if t.startswith("mathjax_vl") and t in MODULES:
                found.add(t)
    found.discard(name)
    return found


GRAPH = {name: _imports(name, path) for name, path in MODULES.items()}
TOP_LEVEL = {name: _imports(name, path, top_level=True) for name, path in MODULES.items()}


def _package(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_every_package_has_a_layer():
    packages = {_package(m) for m in MODULES if m.count(".") >= 1}
    assert packages <= set(LAYERS), sorted(packages - set(LAYERS))


def test_no_import_from_a_higher_layer():
    bad = []
    for mod, deps in GRAPH.items():
        src = _package(mod)
        if src not in LAYERS:
            continue
        for dep in deps:
            dst = _package(dep)
            if dst in LAYERS and LAYERS[dst] > LAYERS[src]:
                bad.append(
                    f"{mod} ({src}, layer {LAYERS[src]}) imports {dep} (layer {LAYERS[dst]})"
                )
    assert not bad, "\n".join(sorted(bad))


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_no_import_cycle_between_packages():
    graph: dict[str, set[str]] = {}
    for mod, deps in GRAPH.items():
        src = _package(mod)
        for dep in deps:
            dst = _package(dep)
            if src and dst and src != dst:
                graph.setdefault(src, set()).add(dst)
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_no_import_cycle_between_modules():
    """Module-level imports (the ones that run at import time); a package __init__ importing
    its own submodules is not a cycle of meaning."""
    graph = {
        m: {d for d in deps if not (MODULES[d].name == "__init__.py" and m.startswith(d + "."))}
        for m, deps in TOP_LEVEL.items()
    }
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def _registered() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """kind/alias name -> modules allowed to name it; config class name -> same."""
    from mathjax_vl.hf import registry as hf_registry
    from mathjax_vl.models import registry

    names: dict[str, set[str]] = {}
    classes: dict[str, set[str]] = {}
    for kind in registry.kinds():
        spec = registry.get(kind)
        owners = {spec.config_cls.__module__, spec.module_cls.__module__}
        if kind in hf_registry.kinds():
            owners.add(hf_registry.get(kind).load.__module__)
        for name in (kind, *spec.aliases):
            names.setdefault(name, set()).update(owners)
        classes.setdefault(spec.config_cls.__name__, set()).update(owners)
    return names, classes


REGISTRIES = {"mathjax_vl.models.registry", "mathjax_vl.hf.registry", "mathjax_vl.models.build"}


def test_no_kind_dispatch_outside_the_registry():
    names, classes = _registered()
    kind_alt = "|".join(sorted(map(re.escape, names), key=len, reverse=True))
    compare = re.compile(rf"""(==|!=)\s*["']({kind_alt})["']|["']({kind_alt})["']\s*(==|!=)""")
    member = re.compile(rf"""\bin\s*[\(\[\{{]\s*["']({kind_alt})["']""")
    class_alt = "|".join(sorted(map(re.escape, classes), key=len, reverse=True))
    isinst = re.compile(rf"isinstance\([^)]*\b({class_alt})\b")
    by_name = re.compile(r"type\([^)]*\)\.__name__\s*(==|!=|\.lower|\.startswith|in\b)")
    bad = []
    for mod, path in MODULES.items():
        if mod in REGISTRIES:
            continue
        for lineno, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#", 1)[0]
            for m in list(compare.finditer(code)) + list(member.finditer(code)):
                kind = next(g for g in m.groups() if g and g not in ("==", "!="))
                if mod not in names[kind]:
                    bad.append(f"{path.relative_to(PKG.parent)}:{lineno}: {line.strip()}")
            for m in isinst.finditer(code):
                if mod not in classes[m.group(1)]:
                    bad.append(f"{path.relative_to(PKG.parent)}:{lineno}: {line.strip()}")
            if by_name.search(code):
                bad.append(f"{path.relative_to(PKG.parent)}:{lineno}: {line.strip()}")
    assert not bad, "kind decisions outside the registry:\n" + "\n".join(bad)


@pytest.mark.parametrize(
    "line",
    [
        'if kind == "qwen2":',
        "if cfg.kind != 'llava':",
        'if kind in ("vlm", "decoder"):',
        "tower = A if isinstance(cfg.vision, SiglipVisionConfig) else B",
        'siglip = type(vision).__name__.lower().startswith("siglip")',
    ],
)
def test_the_dispatch_check_catches(line, tmp_path, monkeypatch):
    """The checker is not vacuous: each of these lines in a module outside the registry fails."""
    bad = tmp_path / "mathjax_vl" / "eval"
    bad.mkdir(parents=True)
    (bad / "offender.py").write_text(line + "\n")
    this = sys.modules[__name__]
    monkeypatch.setattr(this, "MODULES", {"mathjax_vl.eval.offender": bad / "offender.py"})
    monkeypatch.setattr(this, "PKG", tmp_path / "mathjax_vl")
    with pytest.raises(AssertionError, match="offender"):
        test_no_kind_dispatch_outside_the_registry()
