"""The package's import graph has no cycle, and all its modules import in a fresh interpreter.

A cycle hidden by an import inside a function (as ``coclr.data`` and ``coclr.flow.shards``
once had) still ties two modules together, so the graph counts imports at any depth.
"""

import ast
import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "coclr"


def module_names() -> list:
    """Every module of the package, dotted (``coclr.flow.extract``; a package is its ``__init__``)."""
    names = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        names.append(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def path_of(name) -> Path:
    base = PACKAGE.parent.joinpath(*name.split("."))
    return base / "__init__.py" if base.is_dir() else base.with_suffix(".py")


def imported(source, modules) -> set:
    """The ``modules`` that ``source`` imports anywhere in it, each with the packages above it (Python
    runs their ``__init__`` first)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            targets = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            parts = target.split(".")
            found.update(".".join(parts[:i]) for i in range(2, len(parts) + 1) if ".".join(parts[:i]) in modules)
    return found


def find_cycle(graph) -> list:
    """One import cycle as a list of modules (first repeated at the end), or [] if there is none."""
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == "open":
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state and (cycle := visit(nxt)):
                return cycle
        state[node] = "done"
        stack.pop()
        return []

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return []


def test_the_cycle_finder_finds_a_cycle():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) == []


def test_the_graph_sees_imports_inside_functions_and_the_packages_above():
    modules = set(module_names())
    source = "import coclr.io\n\ndef f():\n    from coclr.flow.quantise import decode_flow\n"
    assert imported(source, modules) == {"coclr.io", "coclr.flow", "coclr.flow.quantise"}
    assert imported("from coclr import config, synthetic\n", modules) == {"coclr.config", "coclr.synthetic"}


def test_no_import_cycle_in_the_package():
    modules = set(module_names())
    graph = {name: imported(path_of(name).read_text(), modules) - {name} for name in modules}
    assert find_cycle(graph) == []


def test_every_module_imports_in_a_fresh_interpreter():
    names = [n for n in module_names() if n != "coclr.__main__"]  # __main__ would run the CLI
    code = "import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"
    result = subprocess.run([sys.executable, "-c", code, *names], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_every_module_has_its_row_in_the_layout_table():
    """docs/pipeline.md's table names the one thing each module owns: a new module gets a row there."""
    table = (PACKAGE.parent / "docs" / "pipeline.md").read_text()
    skipped = {"coclr/__init__.py", "coclr/__main__.py", "coclr/evaluation/__init__.py", "coclr/training/__init__.py"}
    modules = [str(path.relative_to(PACKAGE.parent)) for path in sorted(PACKAGE.rglob("*.py"))]
    missing = [m for m in modules if m not in skipped and f"| `{m}` |" not in table]
    assert not missing, f"docs/pipeline.md has no row for {missing}"


def test_job_entry_points_start_without_the_slow_optional_imports():
    """Every pipeline job is a fresh interpreter: torchvision (~2.5 s, it loads torch._dynamo),
    scikit-learn and Numba load only on the paths that need them (device JPEG decode, the t-SNE
    figure, the CPU flow and the CPU hue rotation)."""
    entry_points = ["coclr.training.pretrain", "coclr.training.cotrain", "coclr.evaluation.features",
                    "coclr.evaluation.linear_probe", "coclr.evaluation.finetune", "coclr.report"]
    code = ("import importlib, sys\nfor name in sys.argv[1:]:\n    importlib.import_module(name)\n"
            "print(sorted(m for m in ('torchvision', 'sklearn', 'numba') if m in sys.modules))\n")
    result = subprocess.run([sys.executable, "-c", code, *entry_points], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"
