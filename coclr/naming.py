"""The names of models and results, and which models start and mine each CoCLR stage.

One home for the rules that the entry points and the Snakemake rules (through
common.smk) share: a model is one method trained on one view and is called
``{method}_{view}`` (``models/ucf101/coclr_c2_rgb.pt``, ``runs/ucf101/infonce_flow/``);
a result also has the ``two_stream`` view, the RGB and flow models of one method
combined. Methods: ``random`` (random init), ``infonce``, ``coclr_c1`` ..
``coclr_cN`` (after each CoCLR cycle) and ``ubernce`` (the label oracle).

Seeds (the ``seeds`` setting) repeat the whole chain: the models, training runs, features and
result records of seed N > 0 sit in a ``seedN/`` folder just before their name
(``models/ucf101/seed1/infonce_rgb.pt``, ``results/ucf101/split1/linear_probe/seed1/infonce_rgb.json``);
seed 0 has no folder, so a single-seed run keeps the paths it always had.
"""

import re
from pathlib import PurePath

VIEWS = ("rgb", "flow")  # a network's input: each method trains one model per view
TWO_STREAM = "two_stream"
RESULT_VIEWS = (*VIEWS, TWO_STREAM)  # what a result (probe, retrieval, fine-tune, embedding) evaluates
TRAINED_METHOD_PATTERN = r"infonce|ubernce|coclr_c\d+"  # the methods that have model files
METHOD_PATTERN = rf"random|{TRAINED_METHOD_PATTERN}"
SEED_DIR_PATTERN = r"(?:seed[1-9]\d*/)?"  # what seed_dir() returns: empty for seed 0


def seed_dir(seed) -> str:
    """The folder of a seed's models, runs and results: ``""`` for seed 0, ``seed3/`` for seed 3."""
    if int(seed) < 0:
        raise ValueError(f"a seed is a non-negative integer, got {seed!r}")
    return f"seed{int(seed)}/" if int(seed) else ""


def seed_of(folder) -> int:
    """The inverse of :func:`seed_dir`: ``seed3/`` (or ``seed3``) -> 3, ``""`` -> 0."""
    match = re.fullmatch(r"seed([1-9]\d*)/?", folder)
    if folder and not match:
        raise ValueError(f"{folder!r} is not a seed folder (seed<N>/, N > 0)")
    return int(match.group(1)) if match else 0


def seed_of_path(path) -> int:
    """The seed of a model, run or result path: N below a ``seedN`` folder (``runs/ucf101/seed2/infonce_rgb``), else 0."""
    match = re.fullmatch(r"seed([1-9]\d*)", PurePath(path).parent.name)
    return int(match.group(1)) if match else 0


def seeded(name, seed) -> str:
    """``("infonce_rgb", 1)`` -> ``seed1/infonce_rgb``: a model's or result's name with its seed's folder."""
    return seed_dir(seed) + name


def other(view) -> str:
    """The view that mines positives for ``view`` in CoCLR (and the one it mines for)."""
    if view not in VIEWS:
        raise ValueError(f"view must be one of {VIEWS}, got {view!r}")
    return "flow" if view == "rgb" else "rgb"


def model_name(method, view) -> str:
    """``("coclr_c2", "rgb")`` -> ``coclr_c2_rgb``: the file and run name of a model, the name of a result."""
    return f"{method}_{view}"


def parse_model_name(name) -> tuple:
    """``coclr_c2_rgb`` -> ``("coclr_c2", "rgb")``; ``coclr_c2_two_stream`` -> ``("coclr_c2", "two_stream")``."""
    for view in RESULT_VIEWS:
        method = name.removesuffix(f"_{view}")
        if method and method != name:
            return method, view
    raise ValueError(f"{name!r} is not a model name <method>_<view> (view: {', '.join(RESULT_VIEWS)})")


def coclr_method(cycle) -> str:
    return f"coclr_c{cycle}"


def cycle_of(method):
    """``coclr_c2`` -> 2; None for a method that is not a CoCLR cycle."""
    match = re.fullmatch(r"coclr_c(\d+)", method)
    return int(match.group(1)) if match else None


def methods(cycles) -> list:
    """Every method of the ablation, in its row order, for CoCLR cycles ``cycles`` (1 .. N)."""
    return ["random", "infonce", *(coclr_method(c) for c in cycles), "ubernce"]


def latest_method(cycle) -> str:
    """The method whose weights of a view are newest after ``cycle`` CoCLR cycles (0: the InfoNCE init)."""
    return "infonce" if cycle == 0 else coclr_method(cycle)


def stage_models(cycle, view) -> dict:
    """The CoCLR stage training ``view`` in ``cycle``: the model it starts from (``init``) and the frozen one
    that mines its positives (``miner``).

    Each cycle trains RGB (mined by flow), then flow (mined by the RGB just trained): a stage starts
    from its view's latest weights and mines with the other view's latest.
    """
    miner_cycle = cycle - 1 if view == "rgb" else cycle
    return {"init": model_name(latest_method(cycle - 1), view),
            "miner": model_name(latest_method(miner_cycle), other(view))}
