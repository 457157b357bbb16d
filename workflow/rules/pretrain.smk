# Single-view pretraining: InfoNCE initialisation and the UberNCE oracle, per view.
# Training state (resumable checkpoints, logs) lives in runs/, outside the declared
# outputs, so a failed or preempted job resumes instead of starting over; the log is
# appended to, so every attempt (its stop signal, its resume) stays on record.
# A single-view job reads its view's shards only: RGB InfoNCE, which starts the CoCLR
# chain (the critical path), and the RGB oracle never wait for optical flow.


rule pretrain:
    input:
        manifest="data/{dataset}/manifest.csv",
        preflight=ancient("data/{dataset}/preflight_pretraining.json"),
        shards=view_shards,
    output:
        "models/{dataset}/{seed_dir}{loss}_{view}.pt",
    log:
        "logs/{dataset}/{seed_dir}{loss}_{view}.log",
    wildcard_constraints:
        loss="infonce|ubernce",
    priority: pretrain_priority
    conda:
        "../../envs/coclr.yaml"
    threads: job_threads(processes=train_gpus())
    resources:
        **gpu_resources(train_gpus()),
    params:
        settings=lambda w: settings_json(
            w.dataset, "model", "clip", "moco", "optim", w.loss, "knn_monitor", "linear_probe"
        ),
        launcher=launcher(train_gpus(), "runs/{dataset}/{seed_dir}{loss}_{view}/attempts.log"),
        run_dir="runs/{dataset}/{seed_dir}{loss}_{view}",
        seed=seed,
        shards=shard_option,
    shell:
        "{params.launcher} pretrain --view {wildcards.view} --loss {wildcards.loss} "
        "--manifest {input.manifest} {params.shards} {input.shards} "
        "--run-dir {params.run_dir} --seed {params.seed} --out {output} --settings {params.settings:q} >> {log} 2>&1"
