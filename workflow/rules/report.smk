# Report: figures and the ablation table for `snakemake --report report.html`, drawn from
# outputs the other stages already made (captions in workflow/report/).
#   results/{dataset}/figures/{curves,purity,tsne,retrieval,flow}.png
#   results/{dataset}/ablation.html
# Light jobs: run on the machine that runs Snakemake (`localrules` in the Snakefile).


rule figure_curves:
    input:
        stage_files("models/{dataset}/{stage}.pt", training_stages),
    output:
        report(
            "results/{dataset}/figures/curves.png",
            caption="../report/curves.rst",
            category="Training",
            subcategory="{dataset}",
        ),
    log:
        "logs/{dataset}/figure_curves.log",
    conda:
        "../../envs/coclr.yaml"
    params:
        metrics=stage_files("runs/{dataset}/{stage}/metrics.csv", training_stages),
    shell:
        "python -m coclr report-figures curves --metrics {params.metrics} --out {output} > {log} 2>&1"


rule figure_purity:
    input:
        stage_files("models/{dataset}/{stage}.pt", coclr_stages),
    output:
        report(
            "results/{dataset}/figures/purity.png",
            caption="../report/purity.rst",
            category="Training",
            subcategory="{dataset}",
        ),
    log:
        "logs/{dataset}/figure_purity.log",
    conda:
        "../../envs/coclr.yaml"
    params:
        metrics=stage_files("runs/{dataset}/{stage}/metrics.csv", coclr_stages),
    shell:
        "python -m coclr report-figures purity --metrics {params.metrics} --out {output} > {log} 2>&1"


rule figure_tsne:
    input:
        tsne_features,
    output:
        report(
            "results/{dataset}/figures/tsne.png",
            caption="../report/tsne.rst",
            category="Features",
            subcategory="{dataset}",
        ),
    log:
        "logs/{dataset}/figure_tsne.log",
    conda:
        "../../envs/coclr.yaml"
    shell:
        "python -m coclr report-figures tsne --features {input} --out {output} > {log} 2>&1"


rule figure_retrieval:
    input:
        final=final_rgb_features,
        baseline=lambda w: first_split_features(w.dataset, "infonce", "rgb"),
        manifest="data/{dataset}/manifest.csv",
        frames=frame_shards,
    output:
        report(
            "results/{dataset}/figures/retrieval.png",
            caption="../report/retrieval.rst",
            category="Features",
            subcategory="{dataset}",
        ),
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
        report(
            "results/{dataset}/figures/flow.png",
            caption="../report/flow.rst",
            category="Data",
            subcategory="{dataset}",
        ),
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
        report(
            "results/{dataset}/ablation.html",
            caption="../report/ablation.rst",
            category="Ablation",
            subcategory="{dataset}",
        ),
    log:
        "logs/{dataset}/ablation_html.log",
    conda:
        "../../envs/coclr.yaml"
    shell:
        "python -m coclr report-figures table --ablation {input} --out {output} > {log} 2>&1"
