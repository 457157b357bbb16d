# Shared helpers: config validation, paths, and the settings each entry point receives. The rule
# files hold rules only (`snakemake --lint`); every function and constant they use is defined here.
import json
import os
import shlex

import pandas as pd

from snakemake.exceptions import WorkflowError

from coclr import config as coclr_config
from coclr.ingest import folder as ingest_folder
from coclr import naming

coclr_config.validate(config)

# `--sdm conda`: envs/coclr.yaml holds the dependencies, not the package; the jobs run this
# workflow's own code (its folder first on PYTHONPATH, which jobs inherit, on SLURM too).
if "conda" in {str(getattr(m, "name", m)).lower() for m in workflow.deployment_settings.deployment_method}:
    coclr_config.put_on_pythonpath(workflow.basedir)
coclr_config.check_dataset_paths(config, config["dataset"])

DATASETS = list(config["datasets"])
VIEWS = list(naming.VIEWS)
# Each seed's models, runs, features and result records: `{seed_dir}` before their name, empty for
# seed 0 (naming.seed_dir).
SEED_DIRS = [naming.seed_dir(seed) for seed in config["seeds"]]


wildcard_constraints:
    dataset="|".join(DATASETS),
    # An evaluation pair (see scope()): `ucf101`, or `hmdb51/pretrained_ucf101`.
    scope=r"(?:{0})(?:/pretrained_(?:{0}))?".format("|".join(DATASETS)),
    split=r"[123]",
    view="rgb|flow",
    cycle=r"\d+",
    shard=r"\d{5}",
    seed_dir=naming.SEED_DIR_PATTERN,


def dataset_entry(dataset):
    coclr_config.check_dataset_paths(config, dataset)
    return config["datasets"][dataset]


def hparams(dataset):
    """The preset with the dataset's overrides: what training and evaluation use."""
    return coclr_config.resolve(config, dataset)


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


def latest_model(dataset, view, cycle, seed_dir):
    """The newest weights of `view` after `cycle` CoCLR cycles (0 = InfoNCE init) of one seed."""
    return model_file(dataset, naming.model_name(naming.latest_method(cycle), view), seed_dir)


def model_file(dataset, name, seed_dir):
    """`models/<dataset>/[seed<N>/]<method>_<view>.pt` (names: coclr/naming.py)."""
    return f"models/{dataset}/{seed_dir}{name}.pt"


def seed(wildcards):
    """The seed of a job, from its `{seed_dir}` (0 for none)."""
    return naming.seed_of(wildcards.seed_dir)


def methods(dataset):
    """Every pretrained model of the ablation, by name (random init needs no file)."""
    return naming.methods(cycles(dataset))


def launcher(gpus, history=None):
    """`python -m coclr.launch`: takes `gpus` devices of its own (CUDA_VISIBLE_DEVICES, coclr/launch.py),
    runs `torchrun` with one process per GPU when there are several, else one process; it and its
    command die with the job's shell. `history`: a file outside the outputs (a training run's
    `attempts.log`) that keeps the output of every attempt; Snakemake empties `{log}` on a retry."""
    keep = f" --history {history}" if history else ""
    return f"python -m coclr.launch --gpus {gpus}{keep} --"


def train_gpus():
    """GPUs of a training job (pretrain, cotrain): `resources.gpus`, torchrun when > 1."""
    return config["resources"]["gpus"]


def eval_gpus():
    """GPUs of a single-process job that uses one when there are any (features, finetune, embed)."""
    return min(config["resources"]["gpus"], 1)


def flow_gpus():
    return 1 if config["flow"]["device"] == "cuda" else 0


def job_threads(processes=1, loader=True):
    """CPUs a job uses: per process, its torch threads plus its DataLoader workers (SLURM's
    --cpus-per-task, Snakemake's share of --cores)."""
    per_process = config["resources"]["threads"] + (config["resources"]["workers"] if loader else 0)
    return max(processes, 1) * per_process


def gpu_resources(gpus):
    """A job's GPU resources: `gpu` (SLURM's --gpus, the local launcher's device count) and, only when
    it asks for GPUs, `resources.gpu_model` and `resources.gpu_partition` where set. A job without
    GPUs never asks for `--gpus=<model>:0` (which SLURM refuses) and keeps the profile's default
    partition."""
    wanted = {"gpu": gpus}
    if gpus > 0:
        for key, resource in (("gpu_model", "gpu_model"), ("gpu_partition", "slurm_partition")):
            if config["resources"][key]:
                wanted[resource] = config["resources"][key]
    return wanted


def all_results(scope):
    """The summaries of one evaluation pair (a dataset name: pretrained and evaluated on it)."""
    names = ["linear_probe", "retrieval", "finetune", "ablation"]
    return expand("results/{scope}/{name}.json", scope=scope, name=names) + [f"results/{scope}/ablation.md"]


def dataset_labelled(dataset):
    """False for a folder dataset without class folders or a `label` column: it pretrains, nothing is evaluated."""
    entry = dataset_entry(dataset)
    return entry["format"] != "folder" or ingest_folder.has_labels(entry["root"])


# -- Evaluation pairs: models pretrained on one dataset, evaluated on another ------------------
# The one home of the naming rule. Features, results, runs and logs of a pair live under
# scope(evaluated, pretrained); the same-dataset pair keeps the dataset's own name.


def scope(evaluated, pretrained):
    """`ucf101` for models pretrained on UCF101 itself, `hmdb51/pretrained_ucf101` for a transfer pair."""
    return evaluated if evaluated == pretrained else f"{evaluated}/pretrained_{pretrained}"


def scope_datasets(name):
    """(evaluation dataset, pretraining dataset) of a scope: the inverse of scope()."""
    evaluated, _, rest = name.partition(os.sep)
    pretrained = rest.removeprefix("pretrained_")
    if pretrained == evaluated:
        raise WorkflowError(
            f"results/{name}: models pretrained on {evaluated} and evaluated on it live under "
            f"results/{evaluated}/ (ask for that target instead)"
        )
    return evaluated, pretrained or evaluated


def eval_splits(dataset):
    """The official splits a dataset is evaluated on (`datasets.<name>.splits`)."""
    return dataset_entry(dataset)["splits"]


def split_table(dataset, split):
    """One split's train/test table over the dataset's manifest (and so over its shards)."""
    return f"data/{dataset}/split{split}.csv"


def settings_json(name, *sections):
    """The sections of the resolved settings a job needs (and `resources`), as one JSON argument (the rules
    shell-quote it: `{params.settings:q}`). `name` is a scope (see scope()): a dataset for its own training
    and evaluation jobs, `<evaluated>/pretrained_<pretrained>` for a transfer pair's, whose `model` comes
    from the pretraining dataset (the architecture its models were trained with, which random init
    rebuilds) and the other sections (`clip`, `linear_probe`, `finetune`, `optim`) from the evaluation
    dataset, whose videos the job reads."""
    evaluated, pretrained = scope_datasets(name)
    resolved = hparams(evaluated)
    resolved["model"] = hparams(pretrained)["model"]
    resolved["resources"] = config["resources"]
    return json.dumps({key: resolved[key] for key in (*sections, "resources")}, sort_keys=True)


# -- Data (data.smk) ----------------------------------------------------------------------------

SYNTHETIC_SPLITS = "data/{dataset}/videos/{name}"
SPLIT_NAMES = ["classInd.txt", "trainlist01.txt", "testlist01.txt"]


def generate_args(wildcards):
    """Every generator parameter (the schema filled in its defaults)."""
    gen = dataset_entry(wildcards.dataset)["generate"]
    return " ".join(f"--{key.replace('_', '-')} {shlex.quote(str(value))}" for key, value in gen.items())


def split_files(wildcards):
    """What ingest reads: generated split files for synthetic data, a folder dataset's CSV list, else nothing to build."""
    entry = dataset_entry(wildcards.dataset)
    if entry["format"] == "synthetic":
        return expand(SYNTHETIC_SPLITS, dataset=wildcards.dataset, name=SPLIT_NAMES)
    if entry["format"] == "folder" and os.path.isfile(entry["root"]):
        return [entry["root"]]  # an edited list re-ingests
    return []


def listing_args(wildcards):
    """Where a dataset's videos and split files are: what ingest and split-table both read (shell-quoted)."""
    entry = dataset_entry(wildcards.dataset)
    args = ["--format", entry["format"], "--root", video_root(wildcards.dataset)]
    if "splits_dir" in entry:
        args += ["--splits-dir", entry["splits_dir"]]
    if "annotations" in entry:
        args += ["--annotations", *entry["annotations"]]
    if "pattern" in entry:
        args += ["--k400-pattern", entry["pattern"]]
    args += ingest_extra_args(wildcards.dataset)
    return shlex.join(map(str, args))


def ingest_extra_args(dataset):
    """The folder format's hold-out and class list; for every format, the clip length that counts short videos."""
    entry, clip = dataset_entry(dataset), hparams(dataset)["clip"]
    args = ["--clip-frames", clip["frames"] * clip["stride"]]
    if config["frames"]["fps"]:
        args += ["--fps", config["frames"]["fps"]]
    if entry["format"] == "folder":
        args += ["--test-fraction", config["ingest"]["test_fraction"]]
        if "classes" in entry:
            args += ["--classes", entry["classes"]]
    return args


def frames_args(wildcards):
    """The frame decoder's settings (`frames.*`), shell-quoted."""
    frames = config["frames"]
    args = ["--jpeg-quality", frames["jpeg_quality"]]
    if frames["fps"]:
        args += ["--fps", frames["fps"]]
    if frames["short_side"]:
        args += ["--short-side", frames["short_side"]]
    if frames["strict"]:
        args += ["--strict"]
    return shlex.join(map(str, args))


# -- Flow (flow.smk) ----------------------------------------------------------------------------

FLOW = config["flow"]


def flow_args(wildcards):
    """`coclr flow`'s settings (`flow.*`), shell-quoted."""
    args = ["--method", FLOW["method"], "--device", FLOW["device"], "--batch-size", FLOW["batch_size"]]
    args += ["--compile", str(FLOW["compile"]).lower(), "--compile-cache", FLOW["compile_cache"]]
    for name, value in FLOW["params"].items():
        args += ["--param", f"{name}={value}"]
    return shlex.join(map(str, args))


# -- Single-view pretraining (pretrain.smk) and every job that reads one view ------------------


def view_shards(wildcards):
    """The shards a single-view job reads: frames for RGB, flow fields for flow; of its dataset
    (pretraining) or of its pair's evaluation dataset (evaluation)."""
    dataset = wildcards.dataset if "dataset" in wildcards.keys() else scope_datasets(wildcards.scope)[0]
    kind = "frames" if wildcards.view == "rgb" else "flow"
    return expand("data/{dataset}/{kind}/shard_{shard}.h5", dataset=dataset, kind=kind, shard=shards(dataset))


def shard_option(wildcards):
    return "--frames" if wildcards.view == "rgb" else "--flow"


def pretrain_priority(wildcards):
    """InfoNCE starts the CoCLR chain (the critical path); the oracle runs beside the chain, its longer
    RGB job first, before any evaluation job."""
    if wildcards.loss == "infonce":
        return 10
    return 6 if wildcards.view == "rgb" else 5


# -- CoCLR stages (cotrain.smk) -----------------------------------------------------------------


def stage_inputs(wildcards):
    """A stage starts from its view's latest weights and mines with the other view's latest (the schedule:
    `stage_models` in coclr/naming.py)."""
    models = naming.stage_models(int(wildcards.cycle), wildcards.view)
    return {role: model_file(wildcards.dataset, name, wildcards.seed_dir) for role, name in models.items()}


# -- Evaluation (evaluate.smk) ------------------------------------------------------------------


def run_file(task="{task}", view="{view}", suffix=".json"):
    """One model's result of a task, with the task and view filled in or kept as wildcards."""
    return f"results/{{scope}}/split{{split}}/{task}/{{seed_dir}}{{method}}_{view}{suffix}"


def features_file(view="{view}"):
    return f"features/{{scope}}/split{{split}}/{{seed_dir}}{{method}}_{view}.pt"


FEATURES = features_file()


wildcard_constraints:
    method=naming.METHOD_PATTERN,
    task="linear_probe|retrieval|finetune",


def finetune_methods(dataset):
    """Fine-tuning is the costly evaluation: only the final CoCLR models by default."""
    return [naming.coclr_method(max(cycles(dataset)))]


def task_methods(dataset, task):
    """The methods a task evaluates, of models pretrained on `dataset`."""
    return finetune_methods(dataset) if task == "finetune" else methods(dataset)


def model_input(wildcards):
    """The model to evaluate, from the pretraining dataset; random init is built from the settings instead."""
    if wildcards.method == "random":
        return {}
    _, pretrained = scope_datasets(wildcards.scope)
    return {"model": model_file(pretrained, naming.model_name(wildcards.method, wildcards.view), wildcards.seed_dir)}


def model_source(wildcards, input):
    """Random init is seeded by the job's seed, as training's initialisation is."""
    if wildcards.method == "random":
        return f"--random --seed {seed(wildcards)}"
    return f"--checkpoint {shlex.quote(input.model)}"


def eval_split_table(wildcards):
    return split_table(scope_datasets(wildcards.scope)[0], wildcards.split)


def task_runs(name, task, split, seed_dir):
    """Every per-model result of `task` of one seed on one split of the pair `name`."""
    _, pretrained = scope_datasets(name)
    methods_ = task_methods(pretrained, task)
    return expand(
        run_file(), scope=name, split=split, task=task, seed_dir=seed_dir, method=methods_, view=naming.RESULT_VIEWS
    )


def task_groups(name):
    """(seed, split) of every group of results of the pair `name`: each seed on each evaluated split."""
    return [(seed_dir, k) for seed_dir in SEED_DIRS for k in eval_splits(scope_datasets(name)[0])]


def all_task_runs(wildcards):
    """Every per-model result of a task, of every seed on every evaluated split of the pair."""
    return [
        run
        for seed_dir, k in task_groups(wildcards.scope)
        for run in task_runs(wildcards.scope, wildcards.task, k, seed_dir)
    ]


def collect_args(wildcards):
    """`--seed S --split K --runs ...` for each seed and evaluated split (`seeds`, `datasets.<name>.splits`)."""
    return shlex.join(
        str(arg)
        for seed_dir, k in task_groups(wildcards.scope)
        for arg in [
            "--seed",
            naming.seed_of(seed_dir),
            "--split",
            k,
            "--runs",
            *task_runs(wildcards.scope, wildcards.task, k, seed_dir),
        ]
    )


# -- Report (report.smk) ------------------------------------------------------------------------


def training_stages(dataset):
    """Every trained model of every seed: the stages that wrote runs/{dataset}/{stage}/metrics.csv
    (`seed<N>/coclr_c1_rgb` for seed N > 0)."""
    trained = [naming.model_name(method, view) for method in methods(dataset) if method != "random" for view in VIEWS]
    return [seed_dir + stage for seed_dir in SEED_DIRS for stage in trained]


def coclr_stages(dataset):
    return [
        stage
        for stage in training_stages(dataset)
        if naming.cycle_of(naming.parse_model_name(os.path.basename(stage))[0])
    ]


def stage_files(pattern, stages):
    """Input function: ``pattern`` for each of ``stages(dataset)``. The training figures ask for the
    models (declared outputs) and read the metrics.csv their training wrote to runs/ (not an output)."""
    return lambda w: expand(pattern, dataset=w.dataset, stage=stages(w.dataset))


def first_split_features(dataset, method, view):
    """The report draws features of the first seed on the first evaluated split."""
    return expand(
        FEATURES, scope=dataset, split=eval_splits(dataset)[0], seed_dir=SEED_DIRS[0], method=method, view=view
    )[0]


def tsne_features(wildcards):
    return [first_split_features(wildcards.dataset, m, v) for m in methods(wildcards.dataset) for v in VIEWS]


def final_rgb_features(wildcards):
    return first_split_features(wildcards.dataset, naming.coclr_method(max(cycles(wildcards.dataset))), "rgb")


def report_outputs(dataset):
    """What `rule all` asks for, so the first run builds the report's contents."""
    figures = ["curves", "purity", "tsne", "retrieval", "flow"]
    return expand("results/{dataset}/figures/{figure}.png", dataset=dataset, figure=figures) + [
        f"results/{dataset}/ablation.html"
    ]


# -- Embeddings (embed.smk) ---------------------------------------------------------------------


def embed_models(wildcards):
    views = VIEWS if wildcards.stream == naming.TWO_STREAM else [wildcards.stream]
    return [
        model_file(wildcards.dataset, naming.model_name(wildcards.method, view), wildcards.seed_dir) for view in views
    ]


def embed_settings(dataset):
    """What `coclr embed` needs: the clip windows, and how the frames and flow are made."""
    resolved = hparams(dataset)
    return json.dumps(
        {
            "model": resolved["model"],
            "clip": resolved["clip"],
            "frames": config["frames"],
            "flow": config["flow"],
            "resources": config["resources"],
        },
        sort_keys=True,
    )


def unlabelled_targets(dataset):
    """An unlabelled dataset's results, of every seed: every pretrained model and the final CoCLR models' embeddings."""
    final = naming.model_name(naming.coclr_method(max(cycles(dataset))), naming.TWO_STREAM)
    return [
        target
        for seed_dir in SEED_DIRS
        for target in [
            latest_model(dataset, view, cycle, seed_dir) for cycle in [0, *cycles(dataset)] for view in VIEWS
        ]
        + [f"embeddings/{dataset}/{seed_dir}{final}.parquet"]
    ]
