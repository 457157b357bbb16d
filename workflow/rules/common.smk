# Shared helpers: config validation, paths, and the settings each entry point receives.
import json
import shlex

import pandas as pd

from snakemake.exceptions import WorkflowError

from coclr import config as coclr_config
from coclr import ingest as coclr_ingest
from coclr import naming

coclr_config.validate(config)
coclr_config.check_dataset_paths(config, config["dataset"])

DATASETS = list(config["datasets"])
VIEWS = list(naming.VIEWS)


wildcard_constraints:
    dataset="|".join(DATASETS),
    # An evaluation pair (see scope()): `ucf101`, or `hmdb51/pretrained_ucf101`.
    scope=r"(?:{0})(?:/pretrained_(?:{0}))?".format("|".join(DATASETS)),
    split=r"[123]",
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
    return pair_settings_json(dataset, *sections)


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
    return model_file(dataset, naming.model_name(naming.latest_method(cycle), view))


def model_file(dataset, name):
    """`models/<dataset>/<method>_<view>.pt` (names: coclr/naming.py)."""
    return f"models/{dataset}/{name}.pt"


def methods(dataset):
    """Every pretrained model of the ablation, by name (random init needs no file)."""
    return naming.methods(cycles(dataset))


def train_launcher():
    """`torchrun` with one process per GPU when a job asks for several, else plain python."""
    gpus = config["resources"]["gpus"]
    if gpus > 1:
        return f"torchrun --standalone --nproc_per_node={gpus} -m coclr"
    return "python -m coclr"


def all_results(scope):
    """The summaries of one evaluation pair (a dataset name: pretrained and evaluated on it)."""
    names = ["linear_probe", "retrieval", "finetune", "ablation"]
    return expand("results/{scope}/{name}.json", scope=scope, name=names) + [f"results/{scope}/ablation.md"]


def dataset_labelled(dataset):
    """False for a folder dataset without class folders or a `label` column: it pretrains, nothing is evaluated."""
    entry = dataset_entry(dataset)
    return entry["format"] != "folder" or coclr_ingest.has_labels(entry["root"])


# -- Evaluation pairs: models pretrained on one dataset, evaluated on another ------------------
# The one home of the naming rule. Features, results, runs and logs of a pair live under
# scope(evaluated, pretrained); the same-dataset pair keeps the dataset's own name.


def scope(evaluated, pretrained):
    """`ucf101` for models pretrained on UCF101 itself, `hmdb51/pretrained_ucf101` for a transfer pair."""
    return evaluated if evaluated == pretrained else f"{evaluated}/pretrained_{pretrained}"


def scope_datasets(name):
    """(evaluation dataset, pretraining dataset) of a scope: the inverse of scope()."""
    evaluated, _, pretrained = name.partition("/pretrained_")
    if pretrained == evaluated:
        raise WorkflowError(f"results/{name}: models pretrained on {evaluated} and evaluated on it live under "
                            f"results/{evaluated}/ (ask for that target instead)")
    return evaluated, pretrained or evaluated


def eval_splits(dataset):
    """The official splits a dataset is evaluated on (`datasets.<name>.splits`)."""
    return dataset_entry(dataset)["splits"]


def split_table(dataset, split):
    """One split's train/test table over the dataset's manifest (and so over its shards)."""
    return f"data/{dataset}/split{split}.csv"


def pair_settings_json(name, *sections):
    """Settings of an evaluation job of a pair: `model` from the pretraining dataset (the architecture
    its models were trained with, which random init rebuilds), the others (`clip`, `linear_probe`,
    `finetune`, `optim`) from the evaluation dataset, whose videos the job reads."""
    evaluated, pretrained = scope_datasets(name)
    resolved = hparams(evaluated)
    resolved["model"] = hparams(pretrained)["model"]
    resolved["resources"] = config["resources"]
    return json.dumps({key: resolved[key] for key in (*sections, "resources")}, sort_keys=True)
