# Evaluation of one pair (see scope() in common.smk) on each official split of its evaluation
# dataset: per-model features, linear probe, retrieval and fine-tuning, two-stream fusion per
# method, then one summary per task (every split) and the ablation table (each split, and the mean).
#   features/{scope}/split{split}/{method}_{view}.pt           backbone features (random init: no model)
#   results/{scope}/split{split}/{task}/{method}_{view}.json    one model's result (view: rgb, flow, two_stream)
#   results/{scope}/{task}.json, ablation.{json,md}             the summaries `rule all` asks for
# {scope} is `ucf101` (pretrained on UCF101 itself) or `hmdb51/pretrained_ucf101` (a transfer pair).

FEATURES = "features/{scope}/split{split}/{method}_{view}.pt"
RUN = "results/{scope}/split{split}/{task}/{method}_{view}"


wildcard_constraints:
    method=naming.METHOD_PATTERN,
    task="linear_probe|retrieval|finetune",


def finetune_methods(dataset):
    """Fine-tuning is the costly evaluation: only the final CoCLR models by default."""
    return [naming.coclr_method(max(cycles(dataset)))]


def task_methods(dataset, task):
    """The methods a task evaluates, of models pretrained on `dataset`."""
    return finetune_methods(dataset) if task == "finetune" else methods(dataset)


def model_input(wildcards):
    """The model to evaluate, from the pretraining dataset; random init is built from the settings instead."""
    if wildcards.method == "random":
        return {}
    _, pretrained = scope_datasets(wildcards.scope)
    return {"model": model_file(pretrained, naming.model_name(wildcards.method, wildcards.view))}


def model_source(wildcards, input):
    return "--random --seed 0" if wildcards.method == "random" else f"--checkpoint {input.model}"


def view_shards(wildcards):
    """What a job of `view` reads of the evaluation dataset: its frame shards (RGB) or flow shards (flow)."""
    evaluated, _ = scope_datasets(wildcards.scope)
    kind = "frames" if wildcards.view == "rgb" else "flow"
    return expand("data/{dataset}/{kind}/shard_{shard}.h5", dataset=evaluated, kind=kind, shard=shards(evaluated))


def shard_option(wildcards):
    return "--frames" if wildcards.view == "rgb" else "--flow"


def eval_split_table(wildcards):
    return split_table(scope_datasets(wildcards.scope)[0], wildcards.split)


def task_runs(name, task, split):
    """Every per-model result of `task` on one split of the pair `name`."""
    _, pretrained = scope_datasets(name)
    return expand(RUN + ".json", scope=name, split=split, task=task, method=task_methods(pretrained, task),
                  view=naming.RESULT_VIEWS)


def collect_args(wildcards):
    """`--split K --runs ...` for each evaluated split, in the order of `datasets.<name>.splits`."""
    splits = eval_splits(scope_datasets(wildcards.scope)[0])
    return " ".join(f"--split {k} --runs {' '.join(task_runs(wildcards.scope, wildcards.task, k))}" for k in splits)


rule features:
    input:
        unpack(model_input),
        manifest=eval_split_table,
        shards=view_shards,
    output:
        FEATURES,
    params:
        source=model_source,
        shards=shard_option,
        settings=lambda w: pair_settings_json(w.scope, "model", "clip"),
    threads: config["resources"]["threads"]
    resources:
        gpu=min(config["resources"]["gpus"], 1),
    log:
        "logs/{scope}/split{split}/features_{method}_{view}.log",
    conda:
        "../../envs/coclr.yaml"
    shell:
        "python -m coclr features --view {wildcards.view} --method {wildcards.method} {params.source} "
        "--manifest {input.manifest} {params.shards} {input.shards} "
        "--out {output} --settings '{params.settings}' > {log} 2>&1"


rule linear_probe:
    input:
        FEATURES,
    output:
        result=RUN.replace("{task}", "linear_probe") + ".json",
        probs=RUN.replace("{task}", "linear_probe") + ".probs.pt",
    params:
        settings=lambda w: pair_settings_json(w.scope, "linear_probe"),
    threads: config["resources"]["threads"]
    log:
        "logs/{scope}/split{split}/linear_probe_{method}_{view}.log",
    conda:
        "../../envs/coclr.yaml"
    shell:
        "python -m coclr linear-probe --features {input} --out {output.result} --probs {output.probs} "
        "--settings '{params.settings}' > {log} 2>&1"


rule retrieval:
    input:
        FEATURES,
    output:
        RUN.replace("{task}", "retrieval") + ".json",
    log:
        "logs/{scope}/split{split}/retrieval_{method}_{view}.log",
    conda:
        "../../envs/coclr.yaml"
    shell:
        "python -m coclr retrieval --features {input} --out {output} > {log} 2>&1"


rule retrieval_two_stream:
    input:
        rgb=FEATURES.replace("{view}", "rgb"),
        flow=FEATURES.replace("{view}", "flow"),
    output:
        RUN.replace("{task}", "retrieval").replace("{view}", "two_stream") + ".json",
    log:
        "logs/{scope}/split{split}/retrieval_{method}_two_stream.log",
    conda:
        "../../envs/coclr.yaml"
    shell:
        "python -m coclr retrieval --features {input.rgb} {input.flow} --out {output} > {log} 2>&1"


rule finetune:
    input:
        unpack(model_input),
        manifest=eval_split_table,
        shards=view_shards,
    output:
        result=RUN.replace("{task}", "finetune") + ".json",
        probs=RUN.replace("{task}", "finetune") + ".probs.pt",
    params:
        shards=shard_option,
        settings=lambda w: pair_settings_json(w.scope, "model", "clip", "finetune"),
        run_dir="runs/{scope}/split{split}/finetune_{method}_{view}",
    threads: config["resources"]["threads"]
    resources:
        gpu=min(config["resources"]["gpus"], 1),
    log:
        "logs/{scope}/split{split}/finetune_{method}_{view}.log",
    conda:
        "../../envs/coclr.yaml"
    shell:
        "python -m coclr finetune --checkpoint {input.model} --method {wildcards.method} "
        "--manifest {input.manifest} {params.shards} {input.shards} --run-dir {params.run_dir} "
        "--out {output.result} --probs {output.probs} --settings '{params.settings}' > {log} 2>&1"


rule fuse_probabilities:
    input:
        rgb=RUN.replace("{view}", "rgb") + ".probs.pt",
        flow=RUN.replace("{view}", "flow") + ".probs.pt",
    output:
        RUN.replace("{view}", "two_stream") + ".json",
    wildcard_constraints:
        task="linear_probe|finetune",
    params:
        command=lambda w: w.task.replace("_", "-"),
    log:
        "logs/{scope}/split{split}/{task}_{method}_two_stream.log",
    conda:
        "../../envs/coclr.yaml"
    shell:
        "python -m coclr {params.command} --fuse {input.rgb} {input.flow} --out {output} > {log} 2>&1"


rule collect:
    input:
        lambda w: [run for k in eval_splits(scope_datasets(w.scope)[0]) for run in task_runs(w.scope, w.task, k)],
    output:
        "results/{scope}/{task}.json",
    params:
        runs=collect_args,
    log:
        "logs/{scope}/collect_{task}.log",
    conda:
        "../../envs/coclr.yaml"
    shell:
        "python -m coclr ablation collect {params.runs} --out {output} > {log} 2>&1"


rule ablation:
    input:
        linear_probe="results/{scope}/linear_probe.json",
        retrieval="results/{scope}/retrieval.json",
        finetune="results/{scope}/finetune.json",
    output:
        json="results/{scope}/ablation.json",
        markdown="results/{scope}/ablation.md",
    log:
        "logs/{scope}/ablation.log",
    conda:
        "../../envs/coclr.yaml"
    shell:
        "python -m coclr ablation table --linear-probe {input.linear_probe} --retrieval {input.retrieval} "
        "--finetune {input.finetune} --out {output.json} --markdown {output.markdown} > {log} 2>&1"
