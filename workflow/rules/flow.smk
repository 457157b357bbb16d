# Optical flow: one TV-L1 job per frame shard, on the configured device. The launcher gives a CUDA
# job a GPU of its own (coclr/launch.py); logs are appended to, so a retried job's log keeps the
# attempt before it.


rule flow:
    input:
        "data/{dataset}/frames/shard_{shard}.h5",
    output:
        "data/{dataset}/flow/shard_{shard}.h5",
    log:
        "logs/{dataset}/flow_{shard}.log",
    # Flow InfoNCE, the miner of the first CoCLR stage, waits for every shard: flow goes before the
    # oracle (6, 5) and the evaluations, and beside RGB InfoNCE (10), which no longer waits for it.
    priority: 9
    conda:
        "../../envs/coclr.yaml"
    threads: job_threads(loader=False)
    resources:
        **gpu_resources(flow_gpus()),
    params:
        args=flow_args,
        launcher=launcher(flow_gpus()),
    shell:
        # Idle OpenMP threads must sleep, or they steal the other job's core (docs/flow.md).
        "OMP_WAIT_POLICY=PASSIVE {params.launcher} flow --frames {input} --out {output} {params.args} "
        "--threads {threads} >> {log} 2>&1"
