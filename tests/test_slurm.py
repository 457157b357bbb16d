"""The SLURM tier: the shipped profile on a real scheduler (`.ci/slurm.sh` starts one).

Run by `.ci/run` after the suite: `python -m pytest -v -m slurm -n 0` (the suite's
default `-m "not slurm"` leaves these out: they take minutes of a scheduler, one at a time).
Without a SLURM whose node is up they skip, naming the script that starts one.

- The tiny DAG through `workflow/profiles/slurm`, only its placeholders filled in: every job
  but the `localrules` is submitted with sbatch (a logging `sbatch` on PATH records the
  plugin's real calls before running the real one), runs, and its results equal a local
  run's, models bit for bit.
- A training stage with a time limit shorter than itself stops before the limit, is
  resubmitted by Snakemake's retry and resumes at the step it saved; its log keeps every
  attempt. `scontrol requeue` in the middle of a stage resumes it exactly.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from conftest import REPO

pytestmark = [pytest.mark.slurm, pytest.mark.timeout(1800)]
TINY_CONFIG = REPO / "tests" / "fixtures" / "tiny_config.yaml"
PROFILE = REPO / "workflow" / "profiles" / "slurm"
START_SCRIPT = ".ci/slurm.sh"


def slurm_partition():
    """The default partition of a SLURM whose node is up, or skip naming the script that starts one."""
    if shutil.which("sinfo") is None or shutil.which("sbatch") is None:
        pytest.skip(f"no SLURM on this machine: start a single-node one with `sudo {START_SCRIPT}`")
    out = subprocess.run(["sinfo", "-h", "-o", "%P %t"], capture_output=True, text=True)
    up = [line.split() for line in out.stdout.splitlines() if line.split()[-1] in ("idle", "mix", "alloc")]
    if out.returncode != 0 or not up:
        pytest.skip(f"SLURM does not answer or has no node up ({out.stderr.strip() or out.stdout.strip()}): "
                    f"start it with `sudo {START_SCRIPT}`")
    default = [p for p, _ in up if p.endswith("*")]
    return (default or [up[0][0]])[0].rstrip("*")


def node_memory_mb() -> int:
    out = subprocess.run(["sinfo", "-h", "-N", "-o", "%m"], capture_output=True, text=True, check=True).stdout
    return min(int(line.strip().rstrip("+")) for line in out.splitlines() if line.strip())


def overlay_profile(folder: Path, partition: str) -> Path:
    """The shipped profile with its placeholders filled in for the test cluster; every other key as shipped.
    The test cluster has no accounting, so the plugin asks squeue (docs/cluster.md)."""
    text = (PROFILE / "config.yaml").read_text()
    assert "<your_account>" in text and "<cpu_partition>" in text
    text = text.replace("<your_account>", "coclr-ci").replace("<cpu_partition>", partition)
    text = text.replace("# slurm-status-command: squeue", "slurm-status-command: squeue")
    profile = yaml.safe_load(text)
    # The test node has a few GB, not the profile's 32-128 GB per GPU job: sbatch refuses a job whose
    # --mem no node has. Fitted to half the node (two jobs at once), every other value as shipped.
    half = node_memory_mb() // 2
    for entry in [profile["default-resources"], *profile["set-resources"].values()]:
        if "mem_mb" in entry:
            entry["mem_mb"] = min(entry["mem_mb"], half)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    (folder / "pipeline_settings.yaml").write_text((PROFILE / "pipeline_settings.yaml").read_text())
    return folder


def sbatch_logger(folder: Path) -> tuple:
    """A `sbatch` first on PATH that appends its arguments (one JSON list a line) to a file, then runs
    the real one: the plugin's submissions, as made."""
    real = shutil.which("sbatch")
    folder.mkdir(parents=True, exist_ok=True)
    log = folder / "sbatch_calls.jsonl"
    script = folder / "sbatch"
    script.write_text(f"#!{sys.executable}\nimport json, os, sys\n"
                      f"with open({str(log)!r}, 'a') as f:\n    f.write(json.dumps(sys.argv[1:]) + '\\n')\n"
                      f"os.execv({real!r}, [{real!r}, *sys.argv[1:]])\n")
    script.chmod(0o755)
    return folder, log


def run_snakemake(workdir, *args, configfiles=(TINY_CONFIG,), env=None, timeout=1500):
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
               "--configfile", *map(str, configfiles), *map(str, args)]
    start = time.monotonic()
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
    return result, time.monotonic() - start


def submitted(log: Path) -> list:
    """(rule, sbatch options) of every submission, the rule read from the plugin's --comment."""
    calls = []
    for line in log.read_text().splitlines():
        args = json.loads(line)
        comment = args[args.index("--comment") + 1]
        rule = re.match(r"rule_(\w+?)(_wildcards_.*)?$", comment).group(1)
        calls.append((rule, args))
    return calls


def option(args, name):
    """The value of `--name=V` or `--name V` in an sbatch call, or None."""
    for i, arg in enumerate(args):
        if arg.startswith(name + "="):
            return arg.split("=", 1)[1]
        if arg == name:
            return args[i + 1]
    return None


def same_tensors(a: Path, b: Path) -> bool:
    x, y = torch.load(a, map_location="cpu", weights_only=False), torch.load(b, map_location="cpu", weights_only=False)

    def equal(u, v):
        if isinstance(u, torch.Tensor):
            return isinstance(v, torch.Tensor) and u.dtype == v.dtype and torch.equal(u, v)
        if isinstance(u, dict):
            return isinstance(v, dict) and u.keys() == v.keys() and all(equal(u[k], v[k]) for k in u)
        if isinstance(u, (list, tuple)):
            return len(u) == len(v) and all(equal(p, q) for p, q in zip(u, v))
        return True  # metadata (times, paths) need not match

    return equal(x, y)


def deterministic(record):
    """A result record without what differs between two runs of one recipe: wall times, and the files'
    checksums (a model file also records its training's wall time and clips/s; its tensors are compared
    by same_tensors)."""
    if isinstance(record, dict):
        return {k: deterministic(v) for k, v in record.items() if not (k.endswith("_s") or k == "sha256")}
    if isinstance(record, list):
        return [deterministic(v) for v in record]
    return record


@pytest.fixture(scope="module")
def partition():
    return slurm_partition()


@pytest.fixture(scope="module")
def cluster_run(partition, tmp_path_factory):
    """The tiny DAG through the shipped profile on the real SLURM, and the same DAG run locally."""
    base = tmp_path_factory.mktemp("slurm_dag")
    profile = overlay_profile(base / "profile", partition)
    bin_dir, calls = sbatch_logger(base / "bin")
    # The test cluster's node: a CPU job of 1 thread + 1 DataLoader worker asks for 2 CPUs.
    settings = base / "cluster_settings.yaml"
    settings.write_text(yaml.safe_dump({"resources": {"workers": 1, "gpu_partition": partition}}))
    env = {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}"}
    workdir = base / "cluster"
    result, seconds = run_snakemake(workdir, "--profile", profile, *FAST_POLL, configfiles=(TINY_CONFIG, settings),
                                    env=env)
    assert result.returncode == 0, f"snakemake through the SLURM profile failed:\n{result.stdout[-6000:]}\n{result.stderr[-6000:]}"
    local, local_seconds = run_snakemake(base / "local", "--cores", 2, configfiles=(TINY_CONFIG, settings))
    assert local.returncode == 0, local.stderr[-6000:]
    print(f"SLURM run: {len(submitted(calls))} sbatch jobs, {seconds:.0f} s; local run {local_seconds:.0f} s")
    return {"workdir": workdir, "local": base / "local", "calls": submitted(calls), "stderr": result.stderr,
            "seconds": seconds}


LOCAL_RULES = {"all", "preflight", "split_table", "retrieval", "retrieval_two_stream", "fuse_probabilities",
               "collect", "ablation", "figure_curves", "figure_purity", "figure_tsne", "figure_retrieval",
               "figure_flow", "ablation_html"}


def test_every_cluster_job_is_submitted_with_what_its_rule_needs(cluster_run, partition):
    calls = cluster_run["calls"]
    rules = {rule for rule, _ in calls}
    assert rules == {"synthesize", "ingest", "frames", "flow", "pretrain", "cotrain", "features",
                     "linear_probe", "finetune"}, rules
    assert not rules & LOCAL_RULES
    # Every job Snakemake ran on the cluster was one of these submissions, and nothing was resubmitted.
    finished = re.findall(r"Finished jobid: \d+ \(Rule: (\w+)\)", cluster_run["stderr"])
    remote = [rule for rule in finished if rule not in LOCAL_RULES]
    assert sorted(remote) == sorted(rule for rule, _ in calls)
    for rule, args in calls:
        line = " ".join(args)
        assert option(args, "-p") in (partition, f"'{partition}'"), line
        assert option(args, "-A") in ("coclr-ci", "'coclr-ci'"), line
        assert "--gpus" not in line and "gres" not in line, f"{rule} asks for a GPU on a CPU-only flow: {line}"
        # CPUs: torch threads plus DataLoader workers for the jobs with a loader, else their threads.
        cpus = {"synthesize": 2, "ingest": 1, "frames": 1, "flow": 1, "linear_probe": 1}.get(rule, 2)
        assert option(args, "--cpus-per-task") == str(cpus), line
        if rule in ("flow", "pretrain", "cotrain", "finetune"):
            assert "--signal=USR1@120" in line, line
        shipped = {"ingest": 8000, "flow": 32000, "pretrain": 128000, "cotrain": 128000,
                   "finetune": 64000, "features": 64000}.get(rule, 4000)
        assert int(option(args, "--mem")) == min(shipped, node_memory_mb() // 2), line
        assert option(args, "-t") == str({"synthesize": 30, "frames": 120, "flow": 240, "features": 240,
                                          "pretrain": 1440, "cotrain": 1440, "finetune": 1440}.get(rule, 60)), line


def test_cluster_results_equal_a_local_run(cluster_run):
    cluster, local = cluster_run["workdir"], cluster_run["local"]
    models = sorted(p.relative_to(local) for p in (local / "models").rglob("*.pt"))
    assert len(models) == 8  # InfoNCE, UberNCE and two CoCLR cycles, per view
    for model in models:
        assert same_tensors(cluster / model, local / model), f"{model} differs between the SLURM and the local run"
    results = sorted(p.relative_to(local) for p in (local / "results").rglob("*.json"))
    assert results
    for path in results:
        assert deterministic(json.loads((cluster / path).read_text())) == \
            deterministic(json.loads((local / path).read_text())), path
    assert (cluster / "results/synthetic/ablation.md").read_text() == (local / "results/synthetic/ablation.md").read_text()


# -- Preemption on the scheduler -----------------------------------------------------------------

STOP = re.compile(r"(received a stop signal|the job's end time is \d+ s away \(no stop signal came\)): "
                  r"saved \S+ at epoch (\d+), step (\d+), exiting")
RESUME = re.compile(r"resumed from \S+ at epoch (\d+), step (\d+)")


@pytest.fixture(scope="module")
def long_stage(partition, tmp_path_factory):
    """A workdir whose RGB InfoNCE stage lasts minutes (many epochs of the tiny set), its data made
    locally, and that stage's model from an uninterrupted local run."""
    base = tmp_path_factory.mktemp("slurm_preempt")
    settings = base / "long_stage.yaml"
    settings.write_text(yaml.safe_dump({"presets": {"cpu": {"infonce": {"epochs": 300}}},
                                        "resources": {"stop_margin_minutes": 0.25, "gpu_partition": partition}}))
    configs = (TINY_CONFIG, settings)
    reference = base / "reference"
    result, seconds = run_snakemake(reference, "--cores", 1, "models/synthetic/infonce_rgb.pt", configfiles=configs)
    assert result.returncode == 0, result.stderr[-6000:]
    print(f"uninterrupted stage, locally: {seconds:.0f} s")
    return {"base": base, "configs": configs, "reference": reference, "profile": overlay_profile(base / "profile", partition)}


def prepared(long_stage, name):
    """A workdir with the stage's inputs made locally (frames, preflight), ready for the cluster job."""
    workdir = long_stage["base"] / name
    result, _ = run_snakemake(workdir, "--cores", 2, "data/synthetic/preflight_pretraining.json",
                              configfiles=long_stage["configs"])
    assert result.returncode == 0, result.stderr[-6000:]
    shards = sorted(pd.read_csv(workdir / "data/synthetic/manifest.csv")["shard"].unique())
    frames = [f"data/synthetic/frames/shard_{shard:05d}.h5" for shard in shards]
    result, _ = run_snakemake(workdir, "--cores", 2, *frames, configfiles=long_stage["configs"])
    assert result.returncode == 0, result.stderr[-6000:]
    return workdir


def stops_and_resumes(log_text):
    stops = [(m.group(1), int(m.group(2)), int(m.group(3))) for m in STOP.finditer(log_text)]
    resumes = [(int(m.group(1)), int(m.group(2))) for m in RESUME.finditer(log_text)]
    return stops, resumes


FAST_POLL = ["--slurm-init-seconds-before-status-checks", 5, "--seconds-between-status-checks", 5]


def test_a_time_limited_stage_stops_before_the_limit_and_resumes_in_the_retries(long_stage):
    """A 1-minute limit, no signal asked for (the command line's --set-resources replaces the profile's
    whole pretrain entry, its --signal too): the trainer stops 0.25 min before the end time it reads from
    SLURM, Snakemake resubmits, each attempt resumes where the last saved; the run's attempts.log keeps
    every attempt (Snakemake empties the job's log at each)."""
    workdir = prepared(long_stage, "time_limit")
    result, seconds = run_snakemake(workdir, "--profile", long_stage["profile"], "models/synthetic/infonce_rgb.pt",
                                    "--set-resources", "pretrain:runtime=1", "--retries", 12, *FAST_POLL,
                                    configfiles=long_stage["configs"])
    assert result.returncode == 0, result.stderr[-8000:]
    log = (workdir / "runs/synthetic/infonce_rgb/attempts.log").read_text()
    attempts = log.count("coclr.launch: start")
    stops, resumes = stops_and_resumes(log)
    print(f"time-limited stage on SLURM: {attempts} attempts, {seconds:.0f} s; stops {stops}")
    assert attempts >= 2 and len(stops) == attempts - 1 and len(resumes) == attempts - 1, log
    assert all(why.startswith("the job's end time") for why, _, _ in stops), log
    for (_, epoch, step), resumed in zip(stops, resumes):
        assert resumed == (epoch - 1, step), log  # the stop names the epoch 1-based, the resume 0-based
    assert len(set(re.findall(r"SLURM job (\d+)", log))) == attempts  # each retry a new submission
    assert same_tensors(workdir / "models/synthetic/infonce_rgb.pt",
                        long_stage["reference"] / "models/synthetic/infonce_rgb.pt")


def test_scontrol_requeue_mid_stage_resumes_exactly(long_stage):
    """`scontrol requeue` (what preemption with requeue does): SLURM sends SIGTERM, the trainer saves and
    exits; the same SLURM job runs again and resumes at the saved step; the model equals an
    uninterrupted run's bit for bit."""
    workdir = prepared(long_stage, "requeue")
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
               "--configfile", *map(str, long_stage["configs"]), "--profile", str(long_stage["profile"]),
               "models/synthetic/infonce_rgb.pt", *map(str, FAST_POLL)]
    start = time.monotonic()
    run = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    metrics = workdir / "runs/synthetic/infonce_rgb/metrics.csv"
    deadline = time.time() + 600
    while (not metrics.exists() or len(metrics.read_text().splitlines()) < 20) and time.time() < deadline:
        assert run.poll() is None, run.stdout.read()
        time.sleep(1)
    job = subprocess.run(["squeue", "-h", "-o", "%i", "-t", "R"], capture_output=True, text=True).stdout
    jobs = [j for j in job.split() if j]
    assert len(jobs) == 1, jobs
    subprocess.run(["scontrol", "requeue", jobs[0]], check=True)
    # SLURM holds a requeued job for a while (BeginTime); let it start again at once.
    for _ in range(30):
        state = subprocess.run(["squeue", "-h", "-j", jobs[0], "-o", "%T"], capture_output=True, text=True).stdout
        if "PENDING" in state:
            subprocess.run(["scontrol", "update", f"jobid={jobs[0]}", "StartTime=now"], check=False)
            break
        time.sleep(1)
    output, _ = run.communicate(timeout=900)
    seconds = time.monotonic() - start
    assert run.returncode == 0, output[-8000:]
    log = (workdir / "runs/synthetic/infonce_rgb/attempts.log").read_text()
    stops, resumes = stops_and_resumes(log)
    print(f"requeued stage on SLURM: {seconds:.0f} s; stops {stops}, resumes {resumes}")
    starts = re.findall(r"coclr.launch: start \S+ on \S+, SLURM job (\d+)", log)
    assert starts == [jobs[0], jobs[0]], log  # one SLURM job, run twice
    assert len(stops) == 1 and stops[0][0] == "received a stop signal", log
    assert resumes == [(stops[0][1] - 1, stops[0][2])], log
    assert same_tensors(workdir / "models/synthetic/infonce_rgb.pt",
                        long_stage["reference"] / "models/synthetic/infonce_rgb.pt")
