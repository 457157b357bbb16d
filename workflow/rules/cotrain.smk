# CoCLR cycles: each cycle trains RGB (positives mined by flow), then flow (mined by RGB).
# Every stage is its own job, so `snakemake -n` shows the alternation and a single
# stage can be rerun with `--forcerun models/<dataset>/coclr_c1_rgb.pt`.


def stage_inputs(wildcards):
    """A stage starts from its view's latest weights and mines with the other view's latest (the schedule:
    `stage_models` in coclr/naming.py)."""
    models = naming.stage_models(int(wildcards.cycle), wildcards.view)
    return {role: model_file(wildcards.dataset, name) for role, name in models.items()}


rule cotrain:
    input:
        unpack(stage_inputs),
        manifest="data/{dataset}/manifest.csv",
        frames=frame_shards,
        flow=flow_shards,
    output:
        "models/{dataset}/coclr_c{cycle}_{view}.pt",
    params:
        settings=lambda w: settings_json(w.dataset, "model", "clip", "moco", "optim", "cotrain", "knn_monitor",
                                          "linear_probe"),
        launcher=train_launcher(),
        run_dir="runs/{dataset}/coclr_c{cycle}_{view}",
    priority: 10  # the CoCLR chain is the critical path
    threads: config["resources"]["threads"]
    resources:
        gpu=config["resources"]["gpus"],
    log:
        "logs/{dataset}/coclr_c{cycle}_{view}.log",
    conda:
        "../../envs/coclr.yaml"
    shell:
        "{params.launcher} cotrain --view {wildcards.view} --init {input.init} --miner {input.miner} "
        "--manifest {input.manifest} --frames {input.frames} --flow {input.flow} "
        "--run-dir {params.run_dir} --out {output} --settings '{params.settings}' > {log} 2>&1"
