# CoCLR cycles: each cycle trains RGB (positives mined by flow), then flow (mined by RGB).
# Every stage is its own job, so `snakemake -n` shows the alternation and a single
# stage can be rerun with `--forcerun models/<dataset>/coclr_c1_rgb.pt`.


rule cotrain:
    input:
        unpack(stage_inputs),
        manifest="data/{dataset}/manifest.csv",
        frames=frame_shards,
        flow=flow_shards,
    output:
        "models/{dataset}/{seed_dir}coclr_c{cycle}_{view}.pt",
    log:
        "logs/{dataset}/{seed_dir}coclr_c{cycle}_{view}.log",
    priority: 10  # the CoCLR chain is the critical path
    conda:
        "../../envs/coclr.yaml"
    threads: job_threads(processes=train_gpus())
    resources:
        **gpu_resources(train_gpus()),
    params:
        settings=lambda w: settings_json(
            w.dataset, "model", "clip", "moco", "optim", "cotrain", "knn_monitor", "linear_probe"
        ),
        launcher=launcher(train_gpus(), "runs/{dataset}/{seed_dir}coclr_c{cycle}_{view}/attempts.log"),
        run_dir="runs/{dataset}/{seed_dir}coclr_c{cycle}_{view}",
        seed=seed,
    shell:
        "{params.launcher} cotrain --view {wildcards.view} --init {input.init} --miner {input.miner} "
        "--manifest {input.manifest} --frames {input.frames} --flow {input.flow} "
        "--run-dir {params.run_dir} --seed {params.seed} --out {output} --settings {params.settings:q} >> {log} 2>&1"
