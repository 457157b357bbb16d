# CoCLR: videos -> frames -> TV-L1 flow -> InfoNCE init -> CoCLR cycles -> evaluation.
# `snakemake --cores 4` builds every result of the configured dataset (default: the
# embedded synthetic one); `snakemake --cores 4 results/hmdb51/pretrained_ucf101/finetune.json
# --configfile=my_datasets.yaml` one result of a pair (README, "Real datasets").
# Stages live in workflow/rules/, one file each.

import os

from snakemake.utils import min_version

# Snakemake 8 brought the executor plugins (the SLURM profile) and `--sdm`.
min_version("8.0")


configfile: os.path.join(workflow.basedir, "config.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/flow.smk"
include: "workflow/rules/pretrain.smk"
include: "workflow/rules/cotrain.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/embed.smk"


report: "workflow/report/workflow.rst"


# Light jobs run where Snakemake runs, never as cluster jobs: the preflight, split tables, fusing
# two probabilities, retrieval, the summaries and the report's figures (seconds each).
localrules:
    all,
    preflight,
    split_table,
    retrieval,
    retrieval_two_stream,
    fuse_probabilities,
    collect,
    ablation,
    figure_curves,
    figure_purity,
    figure_tsne,
    figure_retrieval,
    figure_flow,
    ablation_html,


# An unlabelled dataset (folder format) cannot be evaluated: it gets its models and embeddings.
rule all:
    input:
        all_results(config["dataset"]) if dataset_labelled(config["dataset"]) else unlabelled_targets(config["dataset"]),
        report_outputs(config["dataset"]) if dataset_labelled(config["dataset"]) else [],
