# Evaluation of one pair (see scope() in common.smk) on each official split of its evaluation
# dataset: per-model features, linear probe, retrieval and fine-tuning, two-stream fusion per
# method, then one summary per task (every split) and the ablation table (each split, and the mean).
#   features/{scope}/split{split}/{seed_dir}{method}_{view}.pt           backbone features (random init: no model)
#   results/{scope}/split{split}/{task}/{seed_dir}{method}_{view}.json    one model's result (view: rgb, flow, two_stream)
#   results/{scope}/{task}.json, ablation.{json,md}                       the summaries `rule all` asks for, over every seed
# {seed_dir} is empty for seed 0 and `seed<N>/` for seed N > 0 (`seeds`, coclr/naming.py).
# {scope} is `ucf101` (pretrained on UCF101 itself) or `hmdb51/pretrained_ucf101` (a transfer pair).
# The paths' helpers (FEATURES, run_file, ...) are in common.smk.


rule features:
    input:
        unpack(model_input),
        manifest=eval_split_table,
        shards=view_shards,
    output:
        FEATURES,
    log:
        "logs/{scope}/split{split}/{seed_dir}features_{method}_{view}.log",
    conda:
        "../../envs/coclr.yaml"
    threads: job_threads()
    resources:
        **gpu_resources(eval_gpus()),
    params:
        source=model_source,
        shards=shard_option,
        settings=lambda w: settings_json(w.scope, "model", "clip"),
        launcher=launcher(eval_gpus()),
    shell:
        "{params.launcher} features --view {wildcards.view} --method {wildcards.method} {params.source} "
        "--manifest {input.manifest} {params.shards} {input.shards} "
        "--out {output} --settings {params.settings:q} >> {log} 2>&1"


rule linear_probe:
    input:
        FEATURES,
    output:
        result=run_file(task="linear_probe"),
        probs=run_file(task="linear_probe", suffix=".probs.pt"),
    log:
        "logs/{scope}/split{split}/{seed_dir}linear_probe_{method}_{view}.log",
    conda:
        "../../envs/coclr.yaml"
    threads: config["resources"]["threads"]
    params:
        settings=lambda w: settings_json(w.scope, "linear_probe"),
        seed=seed,
    shell:
        "python -m coclr linear-probe --features {input} --seed {params.seed} --out {output.result} "
        "--probs {output.probs} --settings {params.settings:q} > {log} 2>&1"


rule retrieval:
    input:
        FEATURES,
    output:
        run_file(task="retrieval"),
    log:
        "logs/{scope}/split{split}/{seed_dir}retrieval_{method}_{view}.log",
    conda:
        "../../envs/coclr.yaml"
    shell:
        "python -m coclr retrieval --features {input} --out {output} > {log} 2>&1"


rule retrieval_two_stream:
    input:
        rgb=features_file(view="rgb"),
        flow=features_file(view="flow"),
    output:
        run_file(task="retrieval", view="two_stream"),
    log:
        "logs/{scope}/split{split}/{seed_dir}retrieval_{method}_two_stream.log",
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
        result=run_file(task="finetune"),
        probs=run_file(task="finetune", suffix=".probs.pt"),
    log:
        "logs/{scope}/split{split}/{seed_dir}finetune_{method}_{view}.log",
    conda:
        "../../envs/coclr.yaml"
    threads: job_threads()
    resources:
        **gpu_resources(eval_gpus()),
    params:
        shards=shard_option,
        settings=lambda w: settings_json(w.scope, "model", "clip", "finetune"),
        run_dir="runs/{scope}/split{split}/{seed_dir}finetune_{method}_{view}",
        launcher=launcher(eval_gpus(), "runs/{scope}/split{split}/{seed_dir}finetune_{method}_{view}/attempts.log"),
        seed=seed,
    shell:
        "{params.launcher} finetune --checkpoint {input.model} --method {wildcards.method} "
        "--manifest {input.manifest} {params.shards} {input.shards} --run-dir {params.run_dir} --seed {params.seed} "
        "--out {output.result} --probs {output.probs} --settings {params.settings:q} >> {log} 2>&1"


rule fuse_probabilities:
    input:
        rgb=run_file(view="rgb", suffix=".probs.pt"),
        flow=run_file(view="flow", suffix=".probs.pt"),
    output:
        run_file(view="two_stream"),
    log:
        "logs/{scope}/split{split}/{seed_dir}{task}_{method}_two_stream.log",
    wildcard_constraints:
        task="linear_probe|finetune",
    conda:
        "../../envs/coclr.yaml"
    params:
        command=lambda w: w.task.replace("_", "-"),
    shell:
        "python -m coclr {params.command} --fuse {input.rgb} {input.flow} --out {output} > {log} 2>&1"


rule collect:
    input:
        all_task_runs,
    output:
        "results/{scope}/{task}.json",
    log:
        "logs/{scope}/collect_{task}.log",
    conda:
        "../../envs/coclr.yaml"
    params:
        runs=collect_args,
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
