"""Every `snakemake` command written in README.md and docs/*.md dry-runs as pasted.

Commands are read from the fenced code blocks (with `\\` continuations, `&&` chains and
trailing `# comments`) and from inline code spans of the prose. Each runs with `-n` in
a copy of the workflow (what a clone is), against fixture trees cut from real footage
in the official UCF101, HMDB51 and Kinetics-400 layouts. A config file a command names
(`--configfile my_datasets.yaml`) is the docs' own YAML block that starts with
`# my_datasets.yaml`, its dataset folders pointed at the fixtures.
"""

import os
import re
import shlex
import shutil
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

import pytest
import yaml
from snakemake.cli import get_argument_parser

import realdata
from conftest import REPO

DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
FENCE = re.compile(r"^(\s*)```(\w*)\s*$")
INLINE = re.compile(r"`(snakemake [^`]+)`")
SEPARATORS = {"&&", "||", ";", "|"}
TARGET = re.compile(r"^(results|models|features|data|runs)/")
# Commands that need what a dry run cannot give, and what the test does instead:
# `--report` collects finished results, so the command is dry-run without it (the run that
# builds what the report shows).
NEEDS_RESULTS = {"--report"}
# Exactly the commands of the docs that are dry-run in that reduced form (kept in step with the docs).
REDUCED = {
    "snakemake --report report.html",
    "snakemake --report",
}


def fenced_lines(text):
    """(line number, line) of every line inside a fenced code block, continuations joined."""
    inside, pending, start = False, "", 0
    for number, line in enumerate(text.splitlines(), 1):
        if FENCE.match(line):
            inside, pending = not inside, ""
            continue
        if not inside:
            continue
        stripped = line.strip()
        if not pending:
            start = number
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        yield start, pending + stripped
        pending = ""


def prose(text):
    """The text outside fenced code blocks."""
    inside, kept = False, []
    for line in text.splitlines():
        if FENCE.match(line):
            inside = not inside
        elif not inside:
            kept.append(line)
    return "\n".join(kept)


def snakemake_segments(line):
    """Token lists of the `snakemake` commands of one shell line (comments dropped)."""
    lexer = shlex.shlex(line, posix=True, punctuation_chars=";&|")
    lexer.whitespace_split, lexer.commenters = True, "#"
    segments, current = [], []
    for token in lexer:
        if token in SEPARATORS:
            segments.append(current)
            current = []
        else:
            current.append(token)
    segments.append(current)
    return [s for s in segments if s and s[0] == "snakemake"]


def documented_commands():
    """(where, tokens) of every `snakemake` command in the docs."""
    found = []
    for path in DOCS:
        text = path.read_text()
        for number, line in fenced_lines(text):
            for tokens in snakemake_segments(line):
                found.append((f"{path.relative_to(REPO)}:{number}", tokens))
        for match in INLINE.finditer(prose(text)):
            for tokens in snakemake_segments(match.group(1)):
                found.append((f"{path.relative_to(REPO)} `{match.group(1)}`", tokens))
    return found


COMMANDS = documented_commands()


def test_the_docs_hold_snakemake_commands():
    """Zero commands means the extraction broke, not that the docs are clean."""
    assert len(COMMANDS) >= 10, f"only {len(COMMANDS)} snakemake commands found in {[str(d) for d in DOCS]}"
    assert any("--configfile" in " ".join(t) or any(a.startswith("--configfile=") for a in t) for _, t in COMMANDS)


def test_the_reduced_commands_are_exactly_the_listed_ones():
    reduced = {" ".join(tokens) for _, tokens in COMMANDS if NEEDS_RESULTS & {t.split("=")[0] for t in tokens}}
    assert reduced == REDUCED, "update REDUCED (and say why) when a command that needs results is added or removed"


def swallowed_targets(tokens):
    """Targets that an option taking several values ate (`--configfile a.yaml results/x.json`)."""
    parser = get_argument_parser()
    args = parser.parse_args(tokens[1:])
    multi = {a.dest: a.option_strings for a in parser._actions if a.nargs in ("*", "+") and a.option_strings}
    eaten = []
    for dest, options in multi.items():
        values = getattr(args, dest, None)
        if not values or isinstance(values, (str, bool)):
            continue
        written_with_space = any(t in options for t in tokens)
        eaten += [str(v) for v in values if written_with_space and TARGET.match(str(v))]
    configfiles = [str(c) for c in (args.configfile or [])]
    eaten += [c for c in configfiles if not c.endswith((".yaml", ".yml"))]
    return list(dict.fromkeys(eaten))


@pytest.fixture(scope="module")
def fixture_datasets(tmp_path_factory):
    """UCF101, HMDB51 and Kinetics-400 trees in their official layouts and a folder of own videos, cut from real footage."""
    root = tmp_path_factory.mktemp("layouts")
    small = dict(frames=12, size=(80, 60))
    return {"ucf101": realdata.ucf101_layout(root / "ucf101", groups=3, clips=1, **small),
            "hmdb51": realdata.hmdb51_layout(root / "hmdb51", groups=3, clips=1, **small),
            "k400": realdata.k400_layout(root / "k400", clips_per_class=2, frames=12, size=(80, 60)),
            "folder": realdata.folder_layout(root / "folder", clips=2, **small)}


def docs_config(name):
    """The YAML block of the docs whose first line is `# <name>`."""
    for path in DOCS:
        text = path.read_text()
        for block in re.findall(r"```ya?ml\n(.*?)```", text, flags=re.S):
            if block.splitlines()[0].strip() == f"# {name}":
                return yaml.safe_load(block)
    raise AssertionError(f"a documented command uses --configfile {name}, but no ```yaml block of the docs starts "
                         f"with '# {name}': show the file where the command is")


@pytest.fixture(scope="module")
def clone(tmp_path_factory, fixture_datasets):
    """A copy of the workflow as a clone has it, with the config files the commands name."""
    root = tmp_path_factory.mktemp("clone")
    for name in ("Snakefile", "config.yaml"):
        shutil.copy(REPO / name, root / name)
    shutil.copytree(REPO / "workflow", root / "workflow", ignore=shutil.ignore_patterns(".snakemake"))
    names = set()
    for _, tokens in COMMANDS:
        args = get_argument_parser().parse_args(tokens[1:])
        names |= {str(c) for c in (args.configfile or [])}
    for name in names:
        if (REPO / name).is_file():  # a config file the repository keeps, e.g. the tests' tiny one
            (root / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(REPO / name, root / name)
            continue
        config = docs_config(name)
        for dataset, entry in config.get("datasets", {}).items():
            fixture = fixture_datasets[entry["format"]]
            entry.update({key: fixture[key] for key in ("root", "splits_dir", "annotations") if key in fixture})
        (root / name).write_text(yaml.safe_dump(config))
    return root


def dry_run_args(tokens):
    """The command's arguments as dry-run: without what needs results (see REDUCED)."""
    args = list(tokens[1:])
    for option in NEEDS_RESULTS:
        if option in args:
            i = args.index(option)
            del args[i:i + (2 if i + 1 < len(args) and not args[i + 1].startswith("-") else 1)]
    return tuple(args)


@pytest.fixture(scope="module")
def dry_runs(clone):
    """Each distinct command dry-run once (several pages repeat `snakemake --cores all`), one per core at a
    time: dry runs take no lock and write nothing, and each one is mostly Snakemake's start-up."""
    distinct = list(dict.fromkeys(dry_run_args(tokens) for _, tokens in COMMANDS))

    def dry_run(args):
        return subprocess.run([sys.executable, "-m", "snakemake", *args, "-n"], cwd=clone, capture_output=True,
                              text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)

    with ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
        return dict(zip(distinct, pool.map(dry_run, distinct)))


@pytest.mark.parametrize("where,tokens", COMMANDS, ids=[w for w, _ in COMMANDS])
def test_documented_command_dry_runs(where, tokens, dry_runs):
    assert not swallowed_targets(tokens), (
        f"{where}: {' '.join(tokens)}\n  option(s) taking several values swallow {swallowed_targets(tokens)}: "
        "put targets before them, or write --option=VALUE")
    result = dry_runs[dry_run_args(tokens)]
    assert result.returncode == 0, f"{where}: {' '.join(tokens)} -n failed:\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
