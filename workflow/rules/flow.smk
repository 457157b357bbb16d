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
        tvl1=json.dumps(FLOW["params"]),
    resources:
        gpu=1 if FLOW["device"] == "cuda" else 0,
    log:
        "logs/{dataset}/flow_{shard}.log",
    shell:
        "python -m coclr flow --frames {input} --out {output} --method {params.method} "
        "--device {params.device} --batch-size {params.batch_size} --params '{params.tvl1}' > {log} 2>&1"
