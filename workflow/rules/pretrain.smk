# Single-view pretraining: InfoNCE initialisation and the UberNCE oracle, per view.
# Training state (resumable checkpoints, logs) lives in runs/, outside the declared
# outputs, so a failed or preempted job resumes instead of starting over.
# A single-view job reads its view's shards only: RGB InfoNCE, which starts the CoCLR
# chain (the critical path), and the RGB oracle never wait for optical flow.


def view_shards(wildcards):
    """The shards a single-view job reads: frames for RGB, flow fields for flow."""
    return frame_shards(wildcards) if wildcards.view == "rgb" else flow_shards(wildcards)


rule pretrain:
    input:
        manifest="data/{dataset}/manifest.csv",
        preflight=ancient("data/{dataset}/preflight_pretraining.json"),
        shards=view_shards,
    output:
        "models/{dataset}/{loss}_{view}.pt",
    wildcard_constraints:
        loss="infonce|ubernce",
    params:
        settings=lambda w: settings_json(w.dataset, "model", "clip", "moco", "optim", w.loss, "knn_monitor",
                                          "linear_probe"),
        launcher=train_launcher(),
        run_dir="runs/{dataset}/{loss}_{view}",
        shards_arg=lambda w: "--frames" if w.view == "rgb" else "--flow",
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
        "--manifest {input.manifest} {params.shards_arg} {input.shards} "
        "--run-dir {params.run_dir} --out {output} --settings '{params.settings}' > {log} 2>&1"
