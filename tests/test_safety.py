"""Package-wide scans: checkpoints load without unpickling code; outputs are written atomically."""

import ast
from pathlib import Path

from conftest import REPO

PACKAGE = REPO / "coclr"


def calls(path: Path):
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Call):
            yield node


def name_of(func) -> str:
    return func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")


def test_every_torch_load_is_weights_only_or_the_trusted_import():
    found, unsafe = 0, []
    for path in sorted(PACKAGE.rglob("*.py")):
        for call in calls(path):
            func = call.func
            if not (isinstance(func, ast.Attribute) and func.attr == "load" and getattr(func.value, "id", "") == "torch"):
                continue
            found += 1
            flag = {k.arg: ast.unparse(k.value) for k in call.keywords}.get("weights_only")
            trusted = path.name == "importer.py" and flag == "not args.trust_pickle"  # `--trust-pickle`
            if flag != "True" and not trusted:
                unsafe.append(f"{path.relative_to(REPO)}:{call.lineno} weights_only={flag}")
    assert found >= 5 and not unsafe, unsafe


def test_every_file_writer_writes_a_temporary_name():
    """Writers get the temporary path of ``coclr.io.atomic_path`` (named ``tmp`` by convention), so a
    killed job never leaves a file under its final name."""
    direct = []
    for path in sorted(PACKAGE.rglob("*.py")):
        for call in calls(path):
            func, args = call.func, call.args
            name = name_of(func)
            if name == "open" and len(args) > 1 and isinstance(args[1], ast.Constant) and "w" in str(args[1].value):
                target = args[0]
            elif name == "File" and len(args) > 1 and ast.unparse(args[1]) == "'w'":  # h5py
                target = args[0]
            elif name in ("write_text", "write_bytes") and isinstance(func, ast.Attribute):  # Path methods
                target = func.value
            elif name == "save" and getattr(func, "value", None) and ast.unparse(func.value) == "torch":
                target = args[1]
            elif name in ("to_csv", "savefig", "create_shard", "imwrite") and args:
                target = args[0]
            else:
                continue
            target = ast.unparse(target)
            if "tmp" not in target and not (path.name == "shards.py" and name == "File"):  # create_shard(tmp)
                direct.append(f"{path.relative_to(REPO)}:{call.lineno} {name}({target})")
    assert not direct, direct
