"""envs/coclr.yaml, the rules' conda environment, lists exactly pyproject.toml's dependencies, and
`--sdm conda` runs the workflow's own code (conda's channels are not reachable here, so the
environment itself is not built: docs/cluster.md)."""

import tomllib

import yaml

from conftest import REPO


def test_the_conda_env_lists_pyprojects_dependencies():
    env = yaml.safe_load((REPO / "envs" / "coclr.yaml").read_text())
    pip = next(item["pip"] for item in env["dependencies"] if isinstance(item, dict))
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    assert pip == project["dependencies"], "envs/coclr.yaml and pyproject.toml list other dependencies"
    python = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python="))
    floor = project["requires-python"].removeprefix(">=")
    assert tuple(map(int, python.split("=")[1].split("."))) >= tuple(map(int, floor.split(".")))


def test_every_rule_names_the_env_by_a_path_that_exists():
    for rule_file in (REPO / "workflow" / "rules").glob("*.smk"):
        for line in rule_file.read_text().splitlines():
            if line.strip().startswith('"') and "envs/" in line:
                assert (rule_file.parent / line.strip().strip('",')).resolve() == REPO / "envs" / "coclr.yaml"

