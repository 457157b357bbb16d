# Data: generate the synthetic dataset, build the manifest, check the run (preflight), one table
# per official split, extract frames into shards (cut from the manifest: shared by every split and pair).


rule synthesize:
    output:
        # The split files are written last: their presence means the generation finished.
        expand(SYNTHETIC_SPLITS, dataset="{dataset}", name=SPLIT_NAMES),
    log:
        "logs/{dataset}/synthesize.log",
    conda:
        "../../envs/coclr.yaml"
    threads: 2
    params:
        args=generate_args,
    shell:
        "python -m coclr synthesize --out data/{wildcards.dataset}/videos {params.args} --workers {threads} > {log} 2>&1"


checkpoint ingest:
    input:
        split_files,
    output:
        # Every video of the configured splits, once: the shards are cut from it.
        manifest="data/{dataset}/manifest.csv",
    log:
        "logs/{dataset}/ingest.log",
    conda:
        "../../envs/coclr.yaml"
    threads: config["ingest"]["workers"]
    params:
        args=listing_args,
        splits=lambda w: eval_splits(w.dataset),
        per_shard=config["ingest"]["videos_per_shard"],
    shell:
        "python -m coclr ingest {params.args} --split {params.splits} --videos-per-shard {params.per_shard} "
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
    log:
        "logs/{dataset}/{check}.log",
    wildcard_constraints:
        check="preflight|preflight_pretraining",
    priority: 20
    conda:
        "../../envs/coclr.yaml"
    params:
        config=lambda w: json.dumps(config, sort_keys=True),
        scope=lambda w: "" if w.check == "preflight_pretraining" else "--evaluation-only",
    shell:
        "python -m coclr check --config-json {params.config:q} --dataset {wildcards.dataset} {params.scope} "
        "--manifest {input.manifest} --out {output} > {log} 2>&1"


rule split_table:
    input:
        split_files,
        manifest="data/{dataset}/manifest.csv",
    output:
        split_table("{dataset}", "{split}"),
    log:
        "logs/{dataset}/split_table_{split}.log",
    conda:
        "../../envs/coclr.yaml"
    params:
        args=listing_args,
    shell:
        "python -m coclr split-table {params.args} --split {wildcards.split} --manifest {input.manifest} "
        "--out {output} > {log} 2>&1"


rule frames:
    input:
        manifest="data/{dataset}/manifest.csv",
        preflight=ancient("data/{dataset}/preflight.json"),
    output:
        "data/{dataset}/frames/shard_{shard}.h5",
    log:
        "logs/{dataset}/frames_{shard}.log",
    conda:
        "../../envs/coclr.yaml"
    params:
        args=frames_args,
    shell:
        "python -m coclr frames --manifest {input.manifest} --shard {wildcards.shard} --out {output} "
        "{params.args} > {log} 2>&1"
