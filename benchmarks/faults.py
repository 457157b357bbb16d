"""Fault injection (issue #14): kill jobs and the workflow itself, rerun, and check nothing was lost.

    python -m benchmarks.faults [--seed 0] [--cores 2] [--target FILE ...] [--stages frames flow ...]

Runs the embedded default workflow on the tiny test config twice in scratch
directories: once uninterrupted (the reference), once under faults. For every
stage type it waits for one of that stage's jobs (``python -m coclr <command>``)
to be running, lets it run for a random part of its reference CPU time, and kills
it with SIGKILL or SIGTERM (the seeded draw decides); a job that ends before
its moment passes the fault on to the stage's next job, and jobs running beside a
killed one can take their own stage's fault in the same run. Between stages it also
kills the whole workflow, Snakemake and every job under it with SIGKILL, as the
loss of the node running Snakemake does. After each fault it runs ``snakemake
--unlock`` when Snakemake left its lock, then the same command again.

At the end it compares the faulted results with the reference (model weights,
result JSON without timings and file hashes, the ablation table) and checks that
no output existing before a rerun was rewritten by it (inode and mtime of every
file under data/, models/ and results/). Prints one line per fault and the table
of faults injected, survived, results identical and jobs recomputed.
"""

import argparse
import json
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil
import torch

from benchmarks.data import machine, print_table, record

REPO = Path(__file__).resolve().parents[1]
TINY_CONFIG = REPO / "tests" / "fixtures" / "tiny_config.yaml"
# Stage types and the entry point their jobs run.
STAGES = {"frames": "frames", "flow": "flow", "pretrain": "pretrain", "cotrain": "cotrain", "features": "features",
          "probe": "linear-probe", "fine-tune": "finetune", "report": "report-figures"}
WORKFLOW_KILLS = ("frames", "flow", "pretrain", "cotrain")  # whole-workflow kills in the middle of these
OUTPUTS = ("data", "models", "results")
VOLATILE = {"wall_s", "seconds", "clips_per_s", "sha256", "path"}  # timings and per-file identities


def snakemake_command(workdir, targets, cores) -> list:
    return [sys.executable, "-m", "snakemake", "--snakefile", str(REPO / "Snakefile"), "--directory", str(workdir),
            "--cores", str(cores), *targets, f"--configfile={TINY_CONFIG}"]


def stage_of(proc):
    """The stage type of a running ``python -m coclr <command>`` process, or None."""
    try:
        argv = proc.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
    for i in range(len(argv) - 2):
        if argv[i] == "-m" and argv[i + 1] == "coclr":
            return next((stage for stage, command in STAGES.items() if command == argv[i + 2]), None)
    return None


def running_jobs(root: psutil.Process) -> list:
    """(stage, process) of every coclr job under Snakemake."""
    try:
        children = root.children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [(stage, p) for p in children if (stage := stage_of(p)) is not None]


def cpu_seconds(proc):
    """User plus system CPU seconds of a job so far, or None once it is gone."""
    try:
        times = proc.cpu_times()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return None
    return times.user + times.system


def kill_tree(root: psutil.Process) -> None:
    """SIGKILL Snakemake and everything under it at once, as a lost node does."""
    try:
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for p in procs:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(procs, timeout=30)


def snapshot(workdir: Path) -> dict:
    """Identity (inode, mtime) of every output file: a rewrite changes both."""
    files = {}
    for top in OUTPUTS:
        for path in (workdir / top).rglob("*"):
            if path.is_file() and not path.name.startswith("."):
                stat = path.stat()
                files[str(path.relative_to(workdir))] = (stat.st_ino, stat.st_mtime_ns)
    return files


class Run:
    """One Snakemake invocation, watched: job lifetimes per stage, and an optional fault."""

    def __init__(self, workdir, targets, cores, log):
        self.workdir, self.command = workdir, snakemake_command(workdir, targets, cores)
        self.log = log

    def start(self):
        self.out = open(self.log, "a")
        self.proc = subprocess.Popen(self.command, stdout=self.out, stderr=subprocess.STDOUT, cwd=REPO)
        self.root = psutil.Process(self.proc.pid)

    def watch(self, on_job=None, poll=0.05) -> int:
        """Poll until Snakemake exits; ``on_job(stage, process, cpu_s)`` may inject a fault, and returns True
        to stop watching for more. Returns Snakemake's exit status. Records each job's CPU seconds: unlike
        its wall time, a job's CPU time hardly depends on what else loads the machine, so a moment drawn
        from the reference run's CPU times falls inside the faulted run's job too."""
        seen, self.durations = {}, {}
        armed = on_job is not None
        while self.proc.poll() is None:
            jobs = [(stage, p, cpu) for stage, p in running_jobs(self.root) if (cpu := cpu_seconds(p)) is not None]
            for stage, p, cpu in jobs:
                seen[p.pid] = (stage, cpu)
            alive = {p.pid for _, p, _ in jobs}
            for pid, (stage, cpu) in list(seen.items()):
                if pid not in alive:
                    self.durations.setdefault(stage, []).append(cpu)
                    del seen[pid]
            if armed:
                for stage, p, cpu in jobs:
                    if on_job(stage, p, cpu):
                        armed = False
                        break
            time.sleep(poll)
        self.out.close()
        return self.proc.returncode


def snakemake_once(workdir, args, log) -> subprocess.CompletedProcess:
    with open(log, "a") as out:
        return subprocess.run(snakemake_command(workdir, args, 1), stdout=out, stderr=subprocess.STDOUT, cwd=REPO)


def locked(log: Path, since: int) -> bool:
    """Whether Snakemake stopped on its lock after byte ``since`` of the log."""
    with open(log) as f:
        f.seek(since)
        return "cannot be locked" in f.read()


def comparable(value):
    if isinstance(value, dict):
        return {k: comparable(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [comparable(v) for v in value]
    return value


def differences(reference: Path, faulted: Path) -> list:
    """Result files that differ: model weights, result JSON (timings left out), the ablation table."""
    different = []
    for path in sorted((reference / "models").rglob("*.pt")):
        a = torch.load(path, weights_only=True)["state_dict"]
        b = torch.load(faulted / path.relative_to(reference), weights_only=True)["state_dict"]
        if a.keys() != b.keys() or not all(torch.equal(a[k], b[k]) for k in a):
            different.append(str(path.relative_to(reference)))
    for path in sorted((reference / "results").rglob("*")):
        other = faulted / path.relative_to(reference)
        if path.suffix == ".json":
            same = comparable(json.loads(path.read_text())) == comparable(json.loads(other.read_text()))
        elif path.suffix == ".md":
            same = path.read_text() == other.read_text()
        else:
            continue
        if not same:
            different.append(str(path.relative_to(reference)))
    return different


def plan_faults(stages, workflow_kills, rng) -> list:
    """(stage, how) in pipeline order: a job fault per stage type, whole-workflow kills among them."""
    faults = []
    for stage in STAGES:
        if stage in stages:
            faults.append((stage, rng.choice(["SIGKILL", "SIGTERM"])))
        if stage in workflow_kills:
            faults.append((stage, "workflow"))
    return faults


def run_faults(workdir, targets, cores, faults, durations, rng, log, max_runs=40) -> dict:
    """Inject ``faults``, rerunning until the workflow completes. Several job faults may land in one
    Snakemake run (a probe job running beside a killed flow job is still fair game); a whole-workflow
    kill ends its run."""
    pending, records, recomputed, runs = list(faults), [], [], 0
    delays = {}  # fault -> its random moment, drawn when a job of its stage is first seen
    while True:
        runs += 1
        if runs > max_runs:
            raise RuntimeError(f"the workflow did not finish after {max_runs} runs: see {log}")
        before, log_start = snapshot(workdir), log.stat().st_size if log.exists() else 0
        run = Run(workdir, targets, cores, log)
        injected, signalled = [], set()

        def on_job(stage, proc, cpu_s):
            fault = next((f for f in pending if f[0] == stage), None)
            if fault is None or proc.pid in signalled:
                return False
            if fault not in delays:
                # A random moment within the shortest reference job of the stage, in CPU seconds.
                delays[fault] = rng.uniform(0.05, 0.8) * min(durations.get(stage, [2.0]))
            if cpu_s < delays[fault]:
                return False
            if fault[1] == "workflow":
                kill_tree(run.root)
            else:
                try:
                    proc.send_signal(getattr(signal, fault[1]))
                except psutil.NoSuchProcess:
                    return False  # it finished first: try the next job of this stage
                signalled.add(proc.pid)
            pending.remove(fault)
            injected.append(fault)
            records.append({"stage": stage, "fault": fault[1], "after_cpu_s": round(cpu_s, 2)})
            return fault[1] == "workflow"

        run.start()
        status = run.watch(on_job if pending else None)
        after = snapshot(workdir)
        # Anything that existed before this run and is not the same file afterwards was recomputed.
        recomputed += [path for path, identity in before.items() if after.get(path) != identity]
        if status == 0 and not injected:
            break
        if locked(log, log_start) or any(how == "workflow" for _, how in injected):
            snakemake_once(workdir, ["--unlock"], log)
    for fault in records:
        fault["survived"] = True  # the loop only ends once the workflow has completed
    return {"records": records, "not_injected": pending, "recomputed": sorted(set(recomputed)), "runs": runs}


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cores", type=int, default=2)
    parser.add_argument("--target", nargs="*", default=[], help="Snakemake targets (default: `rule all`)")
    parser.add_argument("--stages", nargs="*", default=list(STAGES), choices=list(STAGES),
                        help="stage types to fault (default: all)")
    parser.add_argument("--workflow-kills", nargs="*", default=list(WORKFLOW_KILLS), choices=list(STAGES),
                        help="stages during which the whole workflow is killed")
    parser.add_argument("--keep", help="work in this directory and keep it (default: a temporary one)")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    base = Path(args.keep or tempfile.mkdtemp(prefix="coclr-faults-"))
    reference, faulted = base / "reference", base / "faulted"
    for d in (reference, faulted):
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
    start = time.time()
    clean = Run(reference, args.target, args.cores, base / "reference.log")
    clean.start()
    if clean.watch() != 0:
        raise SystemExit(f"the uninterrupted run failed: see {base / 'reference.log'}")
    reference_s = time.time() - start
    faults = plan_faults(args.stages, args.workflow_kills, rng)
    result = run_faults(faulted, args.target, args.cores, faults, clean.durations, rng, base / "faulted.log")
    different = differences(reference, faulted)
    for fault in result["records"]:
        print(f"{fault['stage']:>9}: {fault['fault']:<8} after {fault['after_cpu_s']:5.2f} CPU-s of the job -> survived")
    for stage, how in result["not_injected"]:
        print(f"{stage:>9}: {how:<8} not injected (no job of this stage ran after the earlier faults)")
    summary = {"faults injected": len(result["records"]),
               "survived": sum(r["survived"] for r in result["records"]),
               "results identical": "yes" if not different else f"no: {', '.join(different)}",
               "jobs recomputed": len(result["recomputed"]), "snakemake runs": result["runs"],
               "reference s": round(reference_s), "total s": round(time.time() - start)}
    print(f"{machine()}; targets: {' '.join(args.target) or 'rule all'}\n")
    print_table([list(summary.values())], list(summary))
    if result["recomputed"]:
        print("recomputed:", ", ".join(result["recomputed"]))
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)
    return {**summary, "different": different, **result}


if __name__ == "__main__":
    figures = main()
    record("faults", {key: figures[key] for key in ("faults injected", "survived", "results identical",
                                                   "jobs recomputed", "snakemake runs", "reference s", "total s",
                                                   "records", "not_injected")})
