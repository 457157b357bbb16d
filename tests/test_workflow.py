"""The Snakemake workflow: dry runs of the DAG, the data stage for real, the CoCLR chain and a transfer pair end to end."""

import json
import shutil
import statistics
import subprocess
import sys

import pandas as pd
import pytest
import torch
import yaml

from coclr import naming
from coclr.evaluation.ablation import cell as ablation_cell
from coclr.evaluation import records
from coclr.io import sha256
from conftest import REPO
import realdata
from realdata import ucf101_layout

TINY_CONFIG = REPO / "tests" / "fixtures" / "tiny_config.yaml"


def snakemake(workdir, *args, check=True, configfile=TINY_CONFIG):
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
               "--configfile", str(configfile), *map(str, args)]
    result = subprocess.run(command, capture_output=True, text=True)
    if check:
        assert result.returncode == 0, f"snakemake {' '.join(map(str, args))} failed:\n{result.stdout}\n{result.stderr}"
    return result


def write_config(path, datasets, videos_per_shard=None, seeds=None):
    """A --configfile with the fixture datasets merged over the tiny one."""
    config = yaml.safe_load(TINY_CONFIG.read_text())
    config["datasets"].update(datasets)
    if seeds:
        config["seeds"] = seeds
    if videos_per_shard:
        config["ingest"]["videos_per_shard"] = videos_per_shard
    path.write_text(yaml.safe_dump(config))
    return path


def planned_jobs(output: str) -> dict:
    """Job counts from a dry run's 'Job stats' table."""
    counts, in_table = {}, False
    for line in output.splitlines():
        if line.startswith("Job stats"):
            in_table, counts = True, {}
            continue
        parts = line.split()
        if in_table and len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
        elif in_table and counts and not parts:
            in_table = False
    return counts


def test_dry_run_of_the_default_target_plans_the_data_stage(tmp_path):
    result = snakemake(tmp_path, "-n")
    jobs = planned_jobs(result.stdout)
    assert jobs["synthesize"] == 1 and jobs["ingest"] == 1


def test_bad_config_stops_with_the_key_named(tmp_path):
    result = snakemake(tmp_path, "-n", "--config", "preset=gpu", check=False)
    assert result.returncode != 0
    assert "`preset`: 'gpu' is not one of the configured presets" in result.stdout + result.stderr


def test_missing_dataset_root_is_reported(tmp_path):
    result = snakemake(tmp_path, "-n", "results/ucf101/linear_probe.json", check=False)
    assert result.returncode != 0
    assert "datasets.ucf101.root" in result.stdout + result.stderr


def test_ucf101_dry_run_shows_the_coclr_schedule(tiny_dataset, tmp_path):
    """UCF101 layout (the synthetic set is written in it): InfoNCE for both views, then 2 cycles."""
    videos = tiny_dataset["videos"]
    config = [f"datasets={{ucf101: {{format: ucf101, root: {videos}, splits_dir: {videos}}}}}", "preset=paper"]
    snakemake(tmp_path, "--cores", 1, "data/ucf101/manifest.csv", "--config", *config)
    result = snakemake(tmp_path, "-n", "-p", "results/ucf101/ablation.json", "--config", *config)
    for model in ["infonce_rgb", "infonce_flow", "coclr_c1_rgb", "coclr_c1_flow", "coclr_c2_rgb", "coclr_c2_flow",
                  "ubernce_rgb", "ubernce_flow"]:
        assert f"models/ucf101/{model}.pt" in result.stdout
    jobs = planned_jobs(result.stdout)
    assert jobs["pretrain"] == 4 and jobs["cotrain"] == 4
    assert "--init models/ucf101/coclr_c1_flow.pt --miner models/ucf101/coclr_c2_rgb.pt" in result.stdout


def test_single_view_jobs_declare_only_their_view(tmp_path):
    """RGB InfoNCE (the head of the critical path) plans no flow job; flow InfoNCE reads no frame shard."""
    entry = ucf101_layout(tmp_path / "ucf101", groups=3, clips=1, frames=8, size=(64, 48))
    config = [f"datasets={{ucf101: {{format: ucf101, root: {entry['root']}, splits_dir: {entry['splits_dir']}}}}}"]
    snakemake(tmp_path, "--cores", 1, "data/ucf101/manifest.csv", "--config", *config)
    rgb = snakemake(tmp_path, "-n", "-p", "models/ucf101/infonce_rgb.pt", "models/ucf101/ubernce_rgb.pt",
                    "--config", *config)
    jobs = planned_jobs(rgb.stdout)
    assert jobs["pretrain"] == 2 and jobs["frames"] >= 1 and "flow" not in jobs
    commands = [line for line in rgb.stdout.splitlines() if " pretrain --view rgb" in line]
    assert len(commands) == 2 and all("/frames/shard_" in c and "/flow/" not in c for c in commands)
    flow = snakemake(tmp_path, "-n", "-p", "models/ucf101/infonce_flow.pt", "--config", *config)
    command = next(line for line in flow.stdout.splitlines() if " pretrain --view flow" in line)
    assert "--flow data/ucf101/flow/shard_" in command and "/frames/" not in command
    assert planned_jobs(flow.stdout)["flow"] >= 1


def test_data_stage_runs_for_real(tmp_path):
    snakemake(tmp_path, "--cores", 2, "data/synthetic/flow/shard_00000.h5")
    manifest = pd.read_csv(tmp_path / "data/synthetic/manifest.csv")
    assert len(manifest) == 4 * 5 * 3 and set(manifest.split) == {"train", "test"}
    assert (tmp_path / "data/synthetic/frames/shard_00000.h5").exists()


def check_records(workdir, results, *, split, models, pretrained, train_videos, test_videos, probe_epochs, seeds=(0,)):
    """Per-model records of one evaluation pair: one schema, values in range, checkpoints (of
    ``models/<models>/``, each seed's own) and epochs (``pretrained``: method -> epochs) that match the models."""
    methods = naming.methods([1, 2])
    for task, evaluated in (("linear_probe", methods), ("retrieval", methods), ("finetune", ["coclr_c2"])):
        collected = json.loads((results / f"{task}.json").read_text())
        assert collected["task"] == task and collected["splits"] == [split] and collected["seeds"] == list(seeds)
        runs = {(run["seed"], run["method"], run["view"]): run for run in collected["runs"]}
        assert set(runs) == {(s, m, v) for s in seeds for m in evaluated for v in naming.RESULT_VIEWS}
        for (seed, method, view), run in runs.items():
            # `seed` and `split` are added by `ablation collect`; the rest is the record as written
            assert run.pop("split") == split and run.pop("seed") == seed
            assert set(records.KEYS) <= set(run) <= {*records.KEYS, *records.FIELDS}, (task, method, view)
            assert run["metrics"] and all(0 <= value <= 100 for value in run["metrics"].values())
            assert collected["per_seed"][str(seed)][method][view] == run["metrics"]  # one split: its mean is itself
            views = naming.VIEWS if view == naming.TWO_STREAM else [view]
            files = [] if method == "random" else [
                f"models/{models}/{naming.seeded(naming.model_name(method, v), seed)}.pt" for v in views]
            assert [(c["path"], c["sha256"]) for c in run["checkpoints"]] == [(f, sha256(workdir / f)) for f in files]
            if task == "linear_probe" and view != naming.TWO_STREAM:
                assert 1 <= run["probe_epochs"] == run["selection"]["epochs"] <= probe_epochs
                assert run["train_videos"] == train_videos and run["test_videos"] == test_videos
                assert run["settings"]["seed"] == seed
            if task == "retrieval":
                assert run["pretraining_epochs"] == [pretrained.get(method, 0)] * len(views)
                assert run["queries"] == test_videos and run["gallery"] == train_videos
            if task == "finetune" and view != naming.TWO_STREAM:
                assert run["chosen_epoch"] == run["trained_epochs"] == 1
    return methods


def check_ablation(results, methods):
    """The ablation's numbers are the records' headline metrics, averaged over the seeds (each seed the
    mean over the splits), with their spread over the seeds; the Markdown table shows them."""
    ablation = json.loads((results / "ablation.json").read_text())
    assert [row["method"] for row in ablation["rows"]] == methods
    runs = {task: json.loads((results / f"{task}.json").read_text())["runs"] for task in ablation["tasks"]}
    lines = (results / "ablation.md").read_text().splitlines()
    first = lines.index(next(line for line in lines if line.startswith("| method |"))) + 2
    for row, line in zip(ablation["rows"], lines[first:first + len(methods)], strict=True):
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        assert cells[0] == row["title"]
        expected = []
        for task in ablation["tasks"]:
            metric = ablation["metrics"][task]
            for view in naming.RESULT_VIEWS:
                per_seed = {}
                for run in runs[task]:
                    if (run["method"], run["view"]) == (row["method"], view):
                        per_seed.setdefault(run["seed"], []).append(run["metrics"][metric])
                if not per_seed:
                    assert row[task][view] is None
                    expected.append("-")
                    continue
                values = [statistics.mean(splits) for splits in per_seed.values()]
                assert sorted(per_seed) == ablation["seeds"] and row[task][view] == pytest.approx(statistics.mean(values))
                spread = row["spread"][task][view]
                assert spread == pytest.approx({"std": statistics.stdev(values) if len(values) > 1 else 0.0,
                                                "min": min(values), "max": max(values), "n": len(values)})
                expected.append(ablation_cell(row[task][view], spread))
        assert cells[1:] == expected


@pytest.fixture(scope="module")
def transfer_pipeline(tmp_path_factory):
    """The CoCLR chain on the tiny synthetic set (every model) with two seeds, and their models evaluated
    on real footage in UCF101's layout, split 2: a transfer pair end to end. The evaluation of a dataset
    on its own models, the report and its figures run end to end in tests/test_paper_preset.py (the same rules)."""
    workdir = tmp_path_factory.mktemp("pipeline")
    ucf101 = {**realdata.ucf101_layout(workdir.parent / f"{workdir.name}_ucf101", **realdata.SMALL), "splits": [2]}
    configfile = write_config(workdir.parent / f"{workdir.name}.yaml", {"ucf101": ucf101}, seeds=[0, 1])
    snakemake(workdir, "--cores", 2, "results/ucf101/pretrained_synthetic/ablation.md", configfile=configfile)
    return workdir


@pytest.mark.slow
@pytest.mark.timeout(1800)  # the DAG (fixture) included: ~6 minutes idle, ~9 beside the rest of the suite
def test_the_coclr_chain_and_a_transfer_pair_end_to_end(transfer_pipeline):
    workdir = transfer_pipeline
    model = torch.load(workdir / "models/synthetic/coclr_c2_rgb.pt", weights_only=True)
    assert model["meta"]["epochs"] == 2
    purity = pd.read_csv(workdir / "runs/synthetic/coclr_c1_rgb/metrics.csv")["mining_purity"]
    assert purity.notna().any() and purity.dropna().between(0, 1).all()
    results = workdir / "results" / "ucf101" / "pretrained_synthetic"
    classes, groups = len(realdata.CLASSES), realdata.SMALL["groups"]
    methods = check_records(workdir, results, split=2, models="synthetic",
                            pretrained={"infonce": 1, "coclr_c1": 2, "coclr_c2": 2, "ubernce": 1},  # tiny_config.yaml
                            train_videos=classes * (groups - 1), test_videos=classes, probe_epochs=5, seeds=(0, 1))
    check_ablation(results, methods)
    text = (results / "ablation.md").read_text()
    assert text.startswith("Mean over seeds 0, 1") and "Seed 1:" in text and "- CoCLR beats InfoNCE" in text
    features = torch.load(workdir / "features/ucf101/pretrained_synthetic/split2/coclr_c2_rgb.pt", weights_only=True)
    assert features["checkpoint"]["path"] == "models/synthetic/coclr_c2_rgb.pt"
    test_ids = set(features["test"]["video_ids"])
    assert test_ids and all("_g02_" in v for v in test_ids)  # split 2 tests group 2
    assert not (workdir / "models" / "ucf101").exists()  # nothing was pretrained on the evaluation dataset
    shards = pd.read_csv(workdir / "data/ucf101/manifest.csv")["shard"].nunique()
    assert len(list((workdir / "data/ucf101/frames").glob("*.h5"))) == shards


def model_tensors(path):
    return torch.load(path, weights_only=True)["state_dict"]


@pytest.mark.slow
@pytest.mark.timeout(1800)
def test_each_seed_trains_its_own_chain_and_a_seed_rerun_is_bit_identical(transfer_pipeline, tmp_path):
    models = transfer_pipeline / "models" / "synthetic"
    for name in ("infonce_rgb", "coclr_c2_flow", "ubernce_rgb"):
        zero = torch.load(models / f"{name}.pt", weights_only=True)
        one = torch.load(models / f"seed1/{name}.pt", weights_only=True)
        assert zero["meta"]["seed"] == 0 and one["meta"]["seed"] == 1
        assert any(not torch.equal(zero["state_dict"][k], one["state_dict"][k]) for k in zero["state_dict"]), name
    assert (transfer_pipeline / "runs/synthetic/seed1/coclr_c1_rgb/metrics.csv").exists()
    # Seed 1 again, in another folder where it is the only seed: the same path, the same models bit for bit.
    shutil.copytree(transfer_pipeline / "data" / "synthetic", tmp_path / "data" / "synthetic")
    configfile = write_config(tmp_path / "seed1.yaml", {}, seeds=[1])
    snakemake(tmp_path, "--cores", 2, "models/synthetic/seed1/coclr_c1_rgb.pt", configfile=configfile)
    for name in ("infonce_rgb", "infonce_flow", "coclr_c1_rgb"):
        again, first = model_tensors(tmp_path / f"models/synthetic/seed1/{name}.pt"), model_tensors(models / f"seed1/{name}.pt")
        assert again.keys() == first.keys() and all(torch.equal(again[k], first[k]) for k in first), name


def test_timeline_reads_a_run_log():
    from benchmarks.timeline import parse, table

    log = """[Tue Dec  1 09:47:59 2026]
localrule synthesize:
    jobid: 5
    wildcards: dataset=synthetic
[Tue Dec  1 09:48:08 2026]
Finished jobid: 5 (Rule: synthesize)
[Tue Dec  1 09:48:09 2026]
rule flow:
    jobid: 3
    wildcards: dataset=synthetic, shard=00000
[Tue Dec  1 09:48:09 2026]
rule pretrain:
    jobid: 7
[Tue Dec  1 09:49:09 2026]
Finished jobid: 3 (Rule: flow)
"""
    jobs = parse(log.splitlines())
    assert [(rule, wildcards) for rule, wildcards, *_ in jobs] == [("synthesize", "dataset=synthetic"),
                                                                  ("flow", "dataset=synthetic, shard=00000")]
    text = table(jobs, width=10)
    assert "| flow | dataset=synthetic, shard=00000 | 10 | 70 | 60 | `.#########` |" in text
    assert "wall 70 s, 69 job-seconds; per rule: flow 60 s, synthesize 9 s" in text

