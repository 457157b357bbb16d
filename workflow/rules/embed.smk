# Embeddings: backbone features of every video of a dataset, for work outside the pipeline.
#   embeddings/{dataset}/{seed_dir}{method}_{stream}.parquet   stream: rgb, flow or two_stream
# `coclr embed` decodes the videos listed in the manifest itself (frames and flow as the
# shards hold them), so the same command serves videos that are no dataset at all.


rule embed:
    input:
        models=embed_models,
        manifest="data/{dataset}/manifest.csv",
    output:
        "embeddings/{dataset}/{seed_dir}{method}_{stream}.parquet",
    log:
        "logs/{dataset}/{seed_dir}embed_{method}_{stream}.log",
    wildcard_constraints:
        method=naming.TRAINED_METHOD_PATTERN,
        stream="|".join(naming.RESULT_VIEWS),
    conda:
        "../../envs/coclr.yaml"
    threads: job_threads()
    resources:
        **gpu_resources(eval_gpus()),
    params:
        settings=lambda w: embed_settings(w.dataset),
        launcher=launcher(eval_gpus()),
    shell:
        "{params.launcher} embed --view {wildcards.stream} --checkpoint {input.models} --videos {input.manifest} "
        "--out {output} --settings {params.settings:q} >> {log} 2>&1"
