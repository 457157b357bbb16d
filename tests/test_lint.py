"""The workflow passes Snakemake's linter and snakefmt (CI runs both before the tests, .ci/run)."""

import shutil
import subprocess
import sys

import pytest

from conftest import REPO


def test_snakemake_lint_reports_nothing():
    result = subprocess.run([sys.executable, "-m", "snakemake", "--lint", "--snakefile", str(REPO / "Snakefile")],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    out = result.stdout + result.stderr
    assert result.returncode == 0 and "Lints for" not in out, out
    assert "Congratulations, your workflow is in a good condition!" in out


@pytest.mark.skipif(shutil.which("snakefmt") is None, reason="snakefmt is not installed (pip install -e '.[test]')")
def test_snakefmt_leaves_every_file_unchanged():
    result = subprocess.run(["snakefmt", "--check", "Snakefile", "workflow/"], cwd=REPO, capture_output=True,
                            text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr


def test_one_definition_of_each_helper():
    """Helpers live in common.smk only (a second `def` of one name would depend on the include order)."""
    import re

    names = {}
    for path in [REPO / "Snakefile", *sorted((REPO / "workflow" / "rules").glob("*.smk"))]:
        for name in re.findall(r"^def (\w+)\(", path.read_text(), flags=re.M):
            names.setdefault(name, []).append(path.name)
    assert {n: f for n, f in names.items() if len(f) > 1} == {}
    assert {f for files in names.values() for f in files} == {"common.smk"}
