"""The shape of the code base: layers and no import cycles.

Every project module is parsed (not imported) and every import counts — at module level, inside
functions, under ``TYPE_CHECKING`` — as does every ``"package.module:function"`` dispatch string.
``model/`` is the bottom layer: it imports nothing from ``train/``, ``serve/`` or the CLI
(``collectguard/``), which is the top and imported by nobody.
"""

from __future__ import annotations

import ast
import re
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("collectguard", "model", "train", "serve")
DISPATCH = re.compile(rf"^((?:{'|'.join(PACKAGES)})(?:\.\w+)*):\w+$")


def project_modules(root: Path = ROOT) -> dict[str, Path]:
    out = {}
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            parts = list(path.relative_to(root).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts = parts[:-1]
            out[".".join(parts)] = path
    return out


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The project module an imported name belongs to (``model.labels.VIOLATIONS`` → ``model.labels``)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def imports_of(module: str, path: Path, modules: dict[str, Path]) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)  # `from serve import app`
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and (m := DISPATCH.match(node.value)):
            names.add(m.group(1))
    found = {_resolve(n, modules) for n in names}
    return {m for m in found if m is not None and m != module}


def import_graph(root: Path = ROOT) -> dict[str, set[str]]:
    modules = project_modules(root)
    return {m: imports_of(m, p, modules) for m, p in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    try:
        list(TopologicalSorter(graph).static_order())
    except CycleError as e:
        return list(e.args[1])
    return None


def test_the_graph_sees_lazy_imports_and_dispatch_strings():
    graph = import_graph()
    assert "model.onnx_backend" in graph["model.runners"]  # a lazy import inside make_runner
    assert "train.finetune" in graph["collectguard.cli"]  # a "module:function" string
    assert len(graph) > 30


def test_the_check_catches_a_lazy_cycle_and_a_dispatch_string(tmp_path):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "a.py").write_text("from model.b import f\n")
    (tmp_path / "model" / "b.py").write_text("def f():\n    from model import a\n")
    assert find_cycle(import_graph(tmp_path)) is not None
    (tmp_path / "model" / "b.py").write_text("RUN = 'model.c:run'\n")
    (tmp_path / "model" / "c.py").write_text("import model.a\n")
    assert find_cycle(import_graph(tmp_path)) is not None
    (tmp_path / "model" / "c.py").write_text("")
    assert find_cycle(import_graph(tmp_path)) is None


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, f"import cycle: {' -> '.join(cycle or [])}"


@pytest.mark.parametrize(
    ("lower", "upper"),
    [("model", ("train", "serve", "collectguard")), ("train", ("collectguard",)), ("serve", ("collectguard",))],
)
def test_layers_import_only_downwards(lower, upper):
    bad = {
        module: sorted(dep for dep in deps if dep.split(".")[0] in upper)
        for module, deps in import_graph().items()
        if module.split(".")[0] == lower
    }
    assert not {m: d for m, d in bad.items() if d}, f"{lower}/ must not import from {upper}"
