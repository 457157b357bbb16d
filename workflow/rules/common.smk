# Shared helpers: config validation, paths, and the settings each entry point receives.
import json
import shlex

import pandas as pd

from coclr import config as coclr_config
from coclr import ingest as coclr_ingest

coclr_config.validate(config)
coclr_config.check_dataset_paths(config, config["dataset"])

DATASETS = list(config["datasets"])
VIEWS = ["rgb", "flow"]


wildcard_constraints:
    dataset="|".join(DATASETS),
    view="rgb|flow",
    cycle=r"\d+",
    shard=r"\d{5}",


def dataset_entry(dataset):
    coclr_config.check_dataset_paths(config, dataset)
    return config["datasets"][dataset]


def hparams(dataset):
    """The preset with the dataset's overrides: what training and evaluation use."""
    return coclr_config.resolve(config, dataset)


def settings_json(dataset, *sections):
    """The sections of the resolved settings an entry point needs, as one JSON argument."""
    resolved = hparams(dataset)
    resolved["resources"] = config["resources"]
    return json.dumps({key: resolved[key] for key in (*sections, "resources")}, sort_keys=True)


def video_root(dataset):
    entry = dataset_entry(dataset)
    return f"data/{dataset}/videos" if entry["format"] == "synthetic" else entry["root"]


def shards(dataset):
    """Shard ids of a dataset, known once its manifest exists (ingest is a checkpoint)."""
    manifest = checkpoints.ingest.get(dataset=dataset).output.manifest
    return [f"{s:05d}" for s in sorted(pd.read_csv(manifest, usecols=["shard"])["shard"].unique())]


def frame_shards(wildcards):
    return expand("data/{dataset}/frames/shard_{shard}.h5", dataset=wildcards.dataset, shard=shards(wildcards.dataset))


def flow_shards(wildcards):
    return expand("data/{dataset}/flow/shard_{shard}.h5", dataset=wildcards.dataset, shard=shards(wildcards.dataset))


def cycles(dataset):
    return range(1, hparams(dataset)["cotrain"]["cycles"] + 1)


def latest_model(dataset, view, cycle):
    """The newest weights of `view` after `cycle` CoCLR cycles (0 = InfoNCE init)."""
    return f"models/{dataset}/infonce_{view}.pt" if cycle == 0 else f"models/{dataset}/coclr_c{cycle}_{view}.pt"


def methods(dataset):
    """Every pretrained model of the ablation, by name (random init needs no file)."""
    names = ["random", "infonce"] + [f"coclr_c{c}" for c in cycles(dataset)] + ["ubernce"]
    return names


def train_launcher():
    """`torchrun` with one process per GPU when a job asks for several, else plain python."""
    gpus = config["resources"]["gpus"]
    if gpus > 1:
        return f"torchrun --standalone --nproc_per_node={gpus} -m coclr"
    return "python -m coclr"


def all_results(dataset):
    names = ["linear_probe", "retrieval", "finetune", "ablation"]
    return expand("results/{dataset}/{name}.json", dataset=dataset, name=names) + [
        f"results/{dataset}/ablation.md"
    ]


def dataset_labelled(dataset):
    """False for a folder dataset without class folders or a `label` column: it pretrains, nothing is evaluated."""
    entry = dataset_entry(dataset)
    return entry["format"] != "folder" or coclr_ingest.has_labels(entry["root"])
