# Optical flow: one TV-L1 job per frame shard, on the configured device.

FLOW = config["flow"]


rule flow:
    input:
        "data/{dataset}/frames/shard_{shard}.h5",
    output:
        "data/{dataset}/flow/shard_{shard}.h5",
    params:
        method=FLOW["method"],
        device=FLOW["device"],
        batch_size=FLOW["batch_size"],
        compile=str(FLOW["compile"]).lower(),  # YAML reads true/false as booleans
        cache=FLOW["compile_cache"],
        tvl1=" ".join(f"--param {name}={value}" for name, value in FLOW["params"].items()),
    # Flow InfoNCE, the miner of the first CoCLR stage, waits for every shard: flow goes before the
    # oracle (6, 5) and the evaluations, and beside RGB InfoNCE (10), which no longer waits for it.
    priority: 9
    threads: config["resources"]["threads"]
    resources:
        gpu=1 if FLOW["device"] == "cuda" else 0,
    log:
        "logs/{dataset}/flow_{shard}.log",
    conda:
        "../../envs/coclr.yaml"
    shell:
        # Idle OpenMP threads must sleep, or they steal the other job's core (docs/flow.md).
        "OMP_WAIT_POLICY=PASSIVE python -m coclr flow --frames {input} --out {output} --method {params.method} "
        "--device {params.device} --batch-size {params.batch_size} --threads {threads} --compile {params.compile} "
        "--compile-cache {params.cache} {params.tvl1} > {log} 2>&1"
