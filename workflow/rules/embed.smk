# Embeddings: backbone features of every video of a dataset, for work outside the pipeline.
#   embeddings/{dataset}/{method}_{stream}.parquet   stream: rgb, flow or two_stream
# `coclr embed` decodes the videos listed in the manifest itself (frames and flow as the
# shards hold them), so the same command serves videos that are no dataset at all.


def embed_models(wildcards):
    views = VIEWS if wildcards.stream == naming.TWO_STREAM else [wildcards.stream]
    return [model_file(wildcards.dataset, naming.model_name(wildcards.method, view)) for view in views]


def embed_settings(dataset):
    """What `coclr embed` needs: the clip windows, and how the frames and flow are made."""
    resolved = hparams(dataset)
    return json.dumps({"model": resolved["model"], "clip": resolved["clip"], "frames": config["frames"],
                       "flow": config["flow"], "resources": config["resources"]}, sort_keys=True)


def unlabelled_targets(dataset):
    """An unlabelled dataset's results: every pretrained model and the final CoCLR models' embeddings."""
    final = naming.coclr_method(max(cycles(dataset)))
    models = [latest_model(dataset, view, cycle) for cycle in [0, *cycles(dataset)] for view in VIEWS]
    return models + [f"embeddings/{dataset}/{naming.model_name(final, naming.TWO_STREAM)}.parquet"]


rule embed:
    input:
        models=embed_models,
        manifest="data/{dataset}/manifest.csv",
    output:
        "embeddings/{dataset}/{method}_{stream}.parquet",
    wildcard_constraints:
        method=naming.TRAINED_METHOD_PATTERN,
        stream="|".join(naming.RESULT_VIEWS),
    params:
        settings=lambda w: embed_settings(w.dataset),
    threads: config["resources"]["threads"]
    resources:
        gpu=min(config["resources"]["gpus"], 1),
    log:
        "logs/{dataset}/embed_{method}_{stream}.log",
    conda:
        "../../envs/coclr.yaml"
    shell:
        "python -m coclr embed --view {wildcards.stream} --checkpoint {input.models} --videos {input.manifest} "
        "--out {output} --settings '{params.settings}' > {log} 2>&1"
