# Report: figures and the ablation table for `snakemake --report report.html`, drawn from
# outputs the other stages already made (captions in workflow/report/).
#   results/{dataset}/figures/{curves,purity,tsne,retrieval,flow}.png
#   results/{dataset}/ablation.html


def training_stages(dataset):
    """Every trained model: the stages that wrote runs/{dataset}/{stage}/metrics.csv."""
    return [naming.model_name(method, view) for method in methods(dataset) if method != "random" for view in VIEWS]


def coclr_stages(dataset):
    return [stage for stage in training_stages(dataset) if naming.cycle_of(naming.parse_model_name(stage)[0])]


def stage_files(pattern, stages):
    """Input function: ``pattern`` for each of ``stages(dataset)``. The training figures ask for the
    models (declared outputs) and read the metrics.csv their training wrote to runs/ (not an output)."""
    return lambda w: expand(pattern, dataset=w.dataset, stage=stages(w.dataset))


def first_split_features(dataset, method, view):
    """The report draws features of the first evaluated split."""
    return expand(FEATURES, scope=dataset, split=eval_splits(dataset)[0], method=method, view=view)[0]


def report_outputs(dataset):
    """What `rule all` asks for, so the first run builds the report's contents."""
    figures = ["curves", "purity", "tsne", "retrieval", "flow"]
    return expand("results/{dataset}/figures/{figure}.png", dataset=dataset, figure=figures) + [
        f"results/{dataset}/ablation.html"
    ]


rule figure_curves:
    input:
        stage_files("models/{dataset}/{stage}.pt", training_stages),
    output:
        report("results/{dataset}/figures/curves.png", caption="../report/curves.rst", category="Training",
               subcategory="{dataset}"),
    params:
        metrics=stage_files("runs/{dataset}/{stage}/metrics.csv", training_stages),
    log:
        "logs/{dataset}/figure_curves.log",
    conda:
        "../../envs/coclr.yaml"
    shell:
        "python -m coclr report-figures curves --metrics {params.metrics} --out {output} > {log} 2>&1"


rule figure_purity:
    input:
        stage_files("models/{dataset}/{stage}.pt", coclr_stages),
    output:
        report("results/{dataset}/figures/purity.png", caption="../report/purity.rst", category="Training",
               subcategory="{dataset}"),
    params:
        metrics=stage_files("runs/{dataset}/{stage}/metrics.csv", coclr_stages),
    log:
        "logs/{dataset}/figure_purity.log",
    conda:
        "../../envs/coclr.yaml"
    shell:
        "python -m coclr report-figures purity --metrics {params.metrics} --out {output} > {log} 2>&1"


rule figure_tsne:
    input:
        lambda w: [first_split_features(w.dataset, m, v) for m in methods(w.dataset) for v in VIEWS],
    output:
        report("results/{dataset}/figures/tsne.png", caption="../report/tsne.rst", category="Features",
               subcategory="{dataset}"),
    log:
        "logs/{dataset}/figure_tsne.log",
    conda:
        "../../envs/coclr.yaml"
    shell:
        "python -m coclr report-figures tsne --features {input} --out {output} > {log} 2>&1"


rule figure_retrieval:
    input:
        final=lambda w: first_split_features(w.dataset, naming.coclr_method(max(cycles(w.dataset))), "rgb"),
        baseline=lambda w: first_split_features(w.dataset, "infonce", "rgb"),
        manifest="data/{dataset}/manifest.csv",
        frames=frame_shards,
    output:
        report("results/{dataset}/figures/retrieval.png", caption="../report/retrieval.rst", category="Features",
               subcategory="{dataset}"),
    log:
        "logs/{dataset}/figure_retrieval.log",
    conda:
        "../../envs/coclr.yaml"
    shell:
        "python -m coclr report-figures retrieval --features {input.final} {input.baseline} "
        "--frames {input.frames} --manifest {input.manifest} --out {output} > {log} 2>&1"


rule figure_flow:
    input:
        frames=frame_shards,
        flow=flow_shards,
    output:
        report("results/{dataset}/figures/flow.png", caption="../report/flow.rst", category="Data",
               subcategory="{dataset}"),
    log:
        "logs/{dataset}/figure_flow.log",
    conda:
        "../../envs/coclr.yaml"
    shell:
        "python -m coclr report-figures flow --frames {input.frames} --flow {input.flow} --out {output} > {log} 2>&1"


rule ablation_html:
    input:
        "results/{dataset}/ablation.json",
    output:
        report("results/{dataset}/ablation.html", caption="../report/ablation.rst", category="Ablation",
               subcategory="{dataset}"),
    log:
        "logs/{dataset}/ablation_html.log",
    conda:
        "../../envs/coclr.yaml"
    shell:
        "python -m coclr report-figures table --ablation {input} --out {output} > {log} 2>&1"
