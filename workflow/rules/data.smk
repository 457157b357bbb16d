# Data: generate the synthetic dataset, build the manifest, check the run (preflight), one table
# per official split, extract frames into shards (cut from the manifest: shared by every split and pair).

SYNTHETIC_SPLITS = "data/{dataset}/videos/{name}"
SPLIT_NAMES = ["classInd.txt", "trainlist01.txt", "testlist01.txt"]


def generate_args(wildcards):
    """Every generator parameter (the schema filled in its defaults)."""
    gen = dataset_entry(wildcards.dataset)["generate"]
    return " ".join(f"--{key.replace('_', '-')} {value}" for key, value in gen.items())


def split_files(wildcards):
    """What ingest reads: generated split files for synthetic data, a folder dataset's CSV list, else nothing to build."""
    entry = dataset_entry(wildcards.dataset)
    if entry["format"] == "synthetic":
        return expand(SYNTHETIC_SPLITS, dataset=wildcards.dataset, name=SPLIT_NAMES)
    if entry["format"] == "folder" and os.path.isfile(entry["root"]):
        return [entry["root"]]  # an edited list re-ingests
    return []


def listing_args(wildcards):
    """Where a dataset's videos and split files are: what ingest and split-table both read."""
    entry = dataset_entry(wildcards.dataset)
    args = ["--format", entry["format"], "--root", video_root(wildcards.dataset)]
    if "splits_dir" in entry:
        args += ["--splits-dir", entry["splits_dir"]]
    if "annotations" in entry:
        args += ["--annotations", *entry["annotations"]]
    if "pattern" in entry:
        args += ["--k400-pattern", entry["pattern"]]
    args += ingest_extra_args(wildcards.dataset)
    return " ".join(shlex.quote(str(a)) for a in args)


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


rule synthesize:
    output:
        # The split files are written last: their presence means the generation finished.
        expand(SYNTHETIC_SPLITS, dataset="{dataset}", name=SPLIT_NAMES),
    params:
        args=generate_args,
    threads: 2
    log:
        "logs/{dataset}/synthesize.log",
    conda:
        "../../envs/coclr.yaml"
    shell:
        "python -m coclr synthesize --out data/{wildcards.dataset}/videos {params.args} --workers {threads} > {log} 2>&1"


checkpoint ingest:
    input:
        split_files,
    output:
        # Every video of the configured splits, once: the shards are cut from it.
        manifest="data/{dataset}/manifest.csv",
    params:
        args=lambda w: f"{listing_args(w)} --split {' '.join(map(str, eval_splits(w.dataset)))}",
        per_shard=config["ingest"]["videos_per_shard"],
    threads: config["ingest"]["workers"]
    log:
        "logs/{dataset}/ingest.log",
    conda:
        "../../envs/coclr.yaml"
    shell:
        "python -m coclr ingest {params.args} --videos-per-shard {params.per_shard} "
        "--workers {threads} --out {output.manifest} > {log} 2>&1"


rule preflight:
    """`coclr check` on the manifest. `preflight.json` gates the frames (nothing is extracted before it
    passes) and checks what every use of the dataset needs; `preflight_pretraining.json` gates the
    pretraining jobs and adds what training on the dataset needs (batch, queue), so a dataset that is
    only evaluated (a transfer pair's) is not refused for it. Both run right after ingest. Their params
    are the whole config, so a changed setting is checked again (the jobs ask for them as ancient: they
    do not rerun because the check ran again)."""
    input:
        manifest="data/{dataset}/manifest.csv",
    output:
        "data/{dataset}/{check}.json",
    wildcard_constraints:
        check="preflight|preflight_pretraining",
    params:
        config=lambda w: shlex.quote(json.dumps(config, sort_keys=True)),
        scope=lambda w: "" if w.check == "preflight_pretraining" else "--evaluation-only",
    priority: 20
    log:
        "logs/{dataset}/{check}.log",
    conda:
        "../../envs/coclr.yaml"
    shell:
        "python -m coclr check --config-json {params.config} --dataset {wildcards.dataset} {params.scope} "
        "--manifest {input.manifest} --out {output} > {log} 2>&1"


rule split_table:
    input:
        split_files,
        manifest="data/{dataset}/manifest.csv",
    output:
        split_table("{dataset}", "{split}"),
    params:
        args=listing_args,
    log:
        "logs/{dataset}/split_table_{split}.log",
    conda:
        "../../envs/coclr.yaml"
    shell:
        "python -m coclr split-table {params.args} --split {wildcards.split} --manifest {input.manifest} "
        "--out {output} > {log} 2>&1"


rule frames:
    input:
        manifest="data/{dataset}/manifest.csv",
        preflight=ancient("data/{dataset}/preflight.json"),
    output:
        "data/{dataset}/frames/shard_{shard}.h5",
    params:
        fps=f"--fps {config['frames']['fps']}" if config["frames"]["fps"] else "",
        short_side=f"--short-side {config['frames']['short_side']}" if config["frames"]["short_side"] else "",
        strict="--strict" if config["frames"]["strict"] else "",
        quality=config["frames"]["jpeg_quality"],
    log:
        "logs/{dataset}/frames_{shard}.log",
    conda:
        "../../envs/coclr.yaml"
    shell:
        "python -m coclr frames --manifest {input.manifest} --shard {wildcards.shard} --out {output} "
        "{params.fps} {params.short_side} {params.strict} --jpeg-quality {params.quality} > {log} 2>&1"
