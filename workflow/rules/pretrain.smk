# Single-view pretraining: InfoNCE initialisation and the UberNCE oracle, per view.
# Training state (resumable checkpoints, logs) lives in runs/, outside the declared
# outputs, so a failed or preempted job resumes instead of starting over.


rule pretrain:
    input:
        manifest="data/{dataset}/manifest.csv",
        frames=frame_shards,
        flow=flow_shards,
    output:
        "models/{dataset}/{loss}_{view}.pt",
    wildcard_constraints:
        loss="infonce|ubernce",
    params:
        settings=lambda w: settings_json(w.dataset, "model", "clip", "moco", "optim", w.loss),
        launcher=train_launcher(),
        run_dir="runs/{dataset}/{loss}_{view}",
    # InfoNCE starts the CoCLR chain (the critical path); the oracle runs beside the chain,
    # its longer RGB job first, before any evaluation job.
    priority: lambda w: 10 if w.loss == "infonce" else (6 if w.view == "rgb" else 5)
    threads: config["resources"]["threads"]
    resources:
        gpu=config["resources"]["gpus"],
    log:
        "logs/{dataset}/{loss}_{view}.log",
    conda:
        "../../envs/coclr.yaml"
    shell:
        "{params.launcher} pretrain --view {wildcards.view} --loss {wildcards.loss} "
        "--manifest {input.manifest} --frames {input.frames} --flow {input.flow} "
        "--run-dir {params.run_dir} --out {output} --settings '{params.settings}' > {log} 2>&1"
