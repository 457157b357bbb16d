"""Library code raises CoclrError; only an executable's one boundary ends the process."""

import ast
import subprocess
import sys
import types
from pathlib import Path

import pytest

from coclr import cli
from coclr.errors import CoclrError
from coclr.training.trainer import PREEMPTED_EXIT, Preempted

PACKAGE = Path(__file__).resolve().parents[1] / "coclr"
# The one place per executable that may end the process: python -m coclr, python -m coclr.launch.
BOUNDARIES = {"coclr/cli.py": "def main", "coclr/launch.py": "if __name__ == '__main__'"}


def exits(tree) -> list:
    """(line, enclosing scope) of every ``SystemExit`` and ``sys.exit`` (also ``from sys import exit``)."""
    found = []

    def visit(node, scope):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            scope = scope or f"{'class' if isinstance(node, ast.ClassDef) else 'def'} {node.name}"
        elif isinstance(node, ast.If) and ast.unparse(node.test) in ("__name__ == '__main__'",):
            scope = scope or f"if {ast.unparse(node.test)}"
        if (isinstance(node, ast.Name) and node.id == "SystemExit"
                or isinstance(node, ast.Attribute) and node.attr == "exit" and ast.unparse(node.value) == "sys"
                or isinstance(node, ast.ImportFrom) and node.module == "sys" and any(a.name == "exit" for a in node.names)):
            found.append((node.lineno, scope))
        for child in ast.iter_child_nodes(node):
            visit(child, scope)

    visit(tree, None)
    return found


def test_the_walker_finds_every_way_to_exit():
    source = ("import sys\nfrom sys import exit\n\ndef f():\n    raise SystemExit(1)\n\n"
              "class Stop(SystemExit):\n    pass\n\nif __name__ == '__main__':\n    sys.exit(0)\n")
    assert exits(ast.parse(source)) == [(2, None), (5, "def f"), (7, "class Stop"), (11, "if __name__ == '__main__'")]


def test_no_module_below_the_boundaries_ends_the_process():
    outside = []
    for path in sorted(PACKAGE.rglob("*.py")):
        name = str(path.relative_to(PACKAGE.parent))
        for line, scope in exits(ast.parse(path.read_text())):
            if scope != BOUNDARIES.get(name):
                outside.append(f"{name}:{line} ({scope or 'module level'})")
    assert outside == [], "raise coclr.errors.CoclrError instead (the entry point ends the process): " + ", ".join(outside)


@pytest.fixture
def command(monkeypatch):
    """A command ``fake`` whose run raises what the test sets."""
    module = types.ModuleType("coclr_fake_command")
    module.add_arguments = lambda parser: None
    monkeypatch.setitem(sys.modules, module.__name__, module)
    monkeypatch.setitem(cli.COMMANDS, "fake", (module.__name__, "raises"))
    return module


@pytest.mark.parametrize("error, code", [
    (CoclrError("data/x.csv line 3: no `path` column; add one"), "data/x.csv line 3: no `path` column; add one"),
    (CoclrError(), 1),  # the command has said why already (the preflight's report)
    (Preempted(), PREEMPTED_EXIT),
])
def test_the_cli_turns_a_coclr_error_into_its_exit(command, error, code):
    def run(args):
        raise error

    command.run = run
    with pytest.raises(SystemExit) as stop:
        cli.main(["fake"])
    assert stop.value.code == code


def test_a_library_error_ends_the_process_with_its_message_and_no_traceback(tmp_path):
    result = subprocess.run([sys.executable, "-m", "coclr", "check", "--configfile", str(tmp_path / "absent.yaml")],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.strip() == f"preflight: --configfile {tmp_path / 'absent.yaml'} not found"
