# SPDX-License-Identifier: Apache-2.0
"""The package's shape as docs/architecture.md draws it: one-way arrows between
packages, no import cycle (deferred imports included), modules that import in
either order in a fresh interpreter, short functions, one meaning per name."""

import ast
import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PACKAGE = ROOT / "physicsnemo_climax"
#: The entry points every task package defines (the one rule for task packages).
TASK_NAMES = {"train", "fit", "evaluate", "summarize", "check_config", "build_model"}
TASK_PACKAGES = ("forecasting", "s2s", "climate_projection", "climate_downscaling", "downscaling")


def modules() -> dict[str, Path]:
    """Dotted module name -> file, packages as their ``__init__``."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The package's modules ``name`` imports, anywhere in the file (deferred imports too)."""
    base = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            parts = base[: len(base) - node.level + 1] if node.level else []
            target = ".".join(parts + ([node.module] if node.module else []))
            found |= {f"{target}.{a.name}" if f"{target}.{a.name}" in known else target for a in node.names}
    return {m for m in found if m in known and m != name}


def graph() -> dict[str, set[str]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "(root)"


def documented_layers() -> dict[str, set[str]]:
    text = (ROOT / "docs" / "architecture.md").read_text()
    table = text.split("<!-- layers")[1].split("<!-- end of layers")[0]
    rows = re.findall(r"^\| `([^`]+)` \|([^|]*)\|$", table, re.M)
    return {name: set(re.findall(r"`([^`]+)`", deps)) for name, deps in rows}


def test_no_import_cycle_even_through_deferred_imports():
    edges, state, cycles = graph(), {}, []

    def visit(node, stack):
        state[node] = "open"
        for nxt in sorted(edges[node]):
            if state.get(nxt) == "open":
                cycles.append(stack[stack.index(nxt) :] + [nxt])
            elif nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = "done"

    for node in edges:
        if node not in state:
            visit(node, [node])
    assert not cycles, "import cycles: " + "; ".join(" -> ".join(c) for c in cycles)


def test_packages_import_as_docs_architecture_says():
    actual = defaultdict(set)
    for module, targets in graph().items():
        actual[layer(module)] |= {layer(t) for t in targets} - {layer(module)}
    documented = documented_layers()
    assert set(documented) == set(map(layer, modules())), "every package has its row"
    assert {k: v for k, v in actual.items() if v} == {k: v for k, v in documented.items() if v}


def test_no_function_is_60_lines_or_longer():
    long = []
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - min([node.lineno] + [d.lineno for d in node.decorator_list]) + 1
                if lines >= 60:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} ({lines} lines)")
    assert not long, long


def test_a_public_name_means_one_thing():
    """Top-level names defined in two modules: only the task packages' entry points
    (same role in each) and the CLI's command handlers (named after their commands)."""
    where = defaultdict(list)
    for name, path in modules().items():
        if path.name == "__init__.py" or name.endswith(".cli"):
            continue
        for node in ast.parse(path.read_text()).body:
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
                names = [node.name]
            elif isinstance(node, ast.Assign):
                names = [t.id for t in node.targets if isinstance(t, ast.Name)]
            else:
                names = []
            for n in names:
                if not n.startswith("_") and n not in TASK_NAMES | {"logger"}:
                    where[n].append(name)
    assert not {n: m for n, m in where.items() if len(m) > 1}


def test_task_packages_follow_one_rule():
    import importlib

    for name in TASK_PACKAGES:
        assert (PACKAGE / name / "training.py").exists(), name
        training = importlib.import_module(f"physicsnemo_climax.{name}.training")
        assert callable(training.train)


@pytest.mark.slow
@pytest.mark.parametrize("order", ["forward", "reverse"])
def test_every_module_imports_in_a_fresh_interpreter(order):
    names = [n for n in modules() if n != "physicsnemo_climax"]
    names = names if order == "forward" else names[::-1]
    script = "\n".join(
        [
            "import importlib",
            "import physicsnemo_climax",
            "from physicsnemo.datapipes.registry import COMPONENT_REGISTRY",
            "assert {'ClimaXShardReader', 'ClimaXForecastBatches'} <= set(COMPONENT_REGISTRY.list())",
            "importlib.reload(physicsnemo_climax.data)  # registering again must not fail",
            *[f"importlib.import_module({n!r})" for n in names],
        ]
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
