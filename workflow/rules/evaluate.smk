# Evaluation: per-model features, linear probe, retrieval and fine-tuning, two-stream
# fusion per method, then one summary file per task and the ablation table.
#   features/{dataset}/{method}_{view}.pt            backbone features (random init: no model)
#   results/{dataset}/{task}/{method}_{view}.json     one model's result (view: rgb, flow, two_stream)
#   results/{dataset}/{task}.json, ablation.{json,md} the summaries `rule all` asks for


wildcard_constraints:
    method=r"random|infonce|ubernce|coclr_c\d+",
    task="linear_probe|retrieval|finetune",


def finetune_methods(dataset):
    """Fine-tuning is the costly evaluation: only the final CoCLR models by default."""
    return [f"coclr_c{max(cycles(dataset))}"]


def task_methods(dataset, task):
    return finetune_methods(dataset) if task == "finetune" else methods(dataset)


def model_input(wildcards):
    """The model to evaluate; random init is built from the settings instead."""
    if wildcards.method == "random":
        return {}
    return {"model": f"models/{wildcards.dataset}/{wildcards.method}_{wildcards.view}.pt"}


def model_source(wildcards, input):
    return "--random --seed 0" if wildcards.method == "random" else f"--checkpoint {input.model}"


rule features:
    input:
        unpack(model_input),
        manifest="data/{dataset}/manifest.csv",
        frames=frame_shards,
        flow=flow_shards,
    output:
        "features/{dataset}/{method}_{view}.pt",
    params:
        source=model_source,
        settings=lambda w: settings_json(w.dataset, "model", "clip"),
    threads: config["resources"]["threads"]
    resources:
        gpu=min(config["resources"]["gpus"], 1),
    log:
        "logs/{dataset}/features_{method}_{view}.log",
    conda:
        "../../envs/coclr.yaml"
    shell:
        "python -m coclr features --view {wildcards.view} --method {wildcards.method} {params.source} "
        "--manifest {input.manifest} --frames {input.frames} --flow {input.flow} "
        "--out {output} --settings '{params.settings}' > {log} 2>&1"


rule linear_probe:
    input:
        "features/{dataset}/{method}_{view}.pt",
    output:
        result="results/{dataset}/linear_probe/{method}_{view}.json",
        probs="results/{dataset}/linear_probe/{method}_{view}.probs.pt",
    params:
        settings=lambda w: settings_json(w.dataset, "linear_probe"),
    threads: config["resources"]["threads"]
    log:
        "logs/{dataset}/linear_probe_{method}_{view}.log",
    conda:
        "../../envs/coclr.yaml"
    shell:
        "python -m coclr linear-probe --features {input} --out {output.result} --probs {output.probs} "
        "--settings '{params.settings}' > {log} 2>&1"


rule retrieval:
    input:
        "features/{dataset}/{method}_{view}.pt",
    output:
        "results/{dataset}/retrieval/{method}_{view}.json",
    log:
        "logs/{dataset}/retrieval_{method}_{view}.log",
    conda:
        "../../envs/coclr.yaml"
    shell:
        "python -m coclr retrieval --features {input} --out {output} > {log} 2>&1"


rule retrieval_two_stream:
    input:
        rgb="features/{dataset}/{method}_rgb.pt",
        flow="features/{dataset}/{method}_flow.pt",
    output:
        "results/{dataset}/retrieval/{method}_two_stream.json",
    log:
        "logs/{dataset}/retrieval_{method}_two_stream.log",
    conda:
        "../../envs/coclr.yaml"
    shell:
        "python -m coclr retrieval --features {input.rgb} {input.flow} --out {output} > {log} 2>&1"


rule finetune:
    input:
        model="models/{dataset}/{method}_{view}.pt",
        manifest="data/{dataset}/manifest.csv",
        frames=frame_shards,
        flow=flow_shards,
    output:
        result="results/{dataset}/finetune/{method}_{view}.json",
        probs="results/{dataset}/finetune/{method}_{view}.probs.pt",
    params:
        settings=lambda w: settings_json(w.dataset, "model", "clip", "optim", "finetune"),
        run_dir="runs/{dataset}/finetune_{method}_{view}",
    threads: config["resources"]["threads"]
    resources:
        gpu=min(config["resources"]["gpus"], 1),
    log:
        "logs/{dataset}/finetune_{method}_{view}.log",
    conda:
        "../../envs/coclr.yaml"
    shell:
        "python -m coclr finetune --checkpoint {input.model} --method {wildcards.method} "
        "--manifest {input.manifest} --frames {input.frames} --flow {input.flow} --run-dir {params.run_dir} "
        "--out {output.result} --probs {output.probs} --settings '{params.settings}' > {log} 2>&1"


rule fuse_probabilities:
    input:
        rgb="results/{dataset}/{task}/{method}_rgb.probs.pt",
        flow="results/{dataset}/{task}/{method}_flow.probs.pt",
    output:
        "results/{dataset}/{task}/{method}_two_stream.json",
    wildcard_constraints:
        task="linear_probe|finetune",
    params:
        command=lambda w: w.task.replace("_", "-"),
    log:
        "logs/{dataset}/{task}_{method}_two_stream.log",
    conda:
        "../../envs/coclr.yaml"
    shell:
        "python -m coclr {params.command} --fuse {input.rgb} {input.flow} --out {output} > {log} 2>&1"


rule collect:
    input:
        lambda w: expand("results/{dataset}/{task}/{method}_{view}.json", dataset=w.dataset, task=w.task,
                         method=task_methods(w.dataset, w.task), view=VIEWS + ["two_stream"]),
    output:
        "results/{dataset}/{task}.json",
    log:
        "logs/{dataset}/collect_{task}.log",
    conda:
        "../../envs/coclr.yaml"
    shell:
        "python -m coclr ablation collect --runs {input} --out {output} > {log} 2>&1"


rule ablation:
    input:
        linear_probe="results/{dataset}/linear_probe.json",
        retrieval="results/{dataset}/retrieval.json",
        finetune="results/{dataset}/finetune.json",
    output:
        json="results/{dataset}/ablation.json",
        markdown="results/{dataset}/ablation.md",
    log:
        "logs/{dataset}/ablation.log",
    conda:
        "../../envs/coclr.yaml"
    shell:
        "python -m coclr ablation table --linear-probe {input.linear_probe} --retrieval {input.retrieval} "
        "--finetune {input.finetune} --out {output.json} --markdown {output.markdown} > {log} 2>&1"
