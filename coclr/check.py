"""``python -m coclr check``: the preflight, before any expensive job.

    python -m coclr check --configfile my.yaml [--dataset ucf101] [--manifest data/ucf101/manifest.csv]

The configuration is merged as Snakemake merges it (config.yaml, then each
``--configfile`` in order). With the dataset's manifest (``snakemake --cores 4
data/<dataset>/manifest.csv`` builds it in minutes: it only reads video
headers) the check also counts videos per split and class and compares them
with the clip, the batch and the queue. It prints what a run will cost (disk,
wall time per stage from the measured rates of benchmarks/measured.json) and
exits non-zero naming the config key for anything that cannot work; what only
wastes time is a warning. The workflow runs it right after ingest: no frame is
extracted before it passes.
"""

import json
import math
import sys
from pathlib import Path

import pandas as pd
import yaml

from coclr import config as coclr_config
from coclr.config import REPO, ConfigError
from coclr.errors import CoclrError
from coclr.ingest import UNLABELLED
from coclr.io import write_json
from coclr.video import resized_shape

def reference_minimum(frames: int) -> int:
    """The reference drops videos of at most T/2 + 1 frames: at most half of a clip is padding."""
    return frames // 2 + 1


class Report:
    """Findings of the check: facts (printed), warnings (wasteful) and problems (cannot work)."""

    def __init__(self, pretraining=True):
        """``pretraining``: the dataset is pretrained on. A dataset only evaluated (the evaluation side of
        a transfer pair) never trains on its own videos, so what would stop pretraining is only a warning."""
        self.facts, self.warnings, self.problems = [], [], []
        self.pretraining = pretraining

    def fact(self, text):
        self.facts.append(text)

    def warn(self, text):
        self.warnings.append(text)

    def refuse(self, text):
        self.problems.append(text)

    def refuse_pretraining(self, text):
        """A problem for pretraining on this dataset only."""
        if self.pretraining:
            self.refuse(text)
        else:
            self.warn(f"pretraining on this dataset would fail (it is checked again before any pretraining job): {text}")

    def text(self) -> str:
        lines = [*self.facts]
        lines += [f"WARNING: {w}" for w in self.warnings]
        lines += [f"PROBLEM: {p}" for p in self.problems]
        verdict = f"{len(self.problems)} problem(s): fix the keys named above" if self.problems else "ok"
        return "\n".join(lines + [f"preflight: {verdict}, {len(self.warnings)} warning(s)"])


def merged_config(configfiles=(), config_json=None) -> dict:
    """config.yaml, then each file over it (Snakemake's --configfile order); or the workflow's own config."""
    if config_json is not None:
        config = json.loads(config_json)
    else:
        config = yaml.safe_load(coclr_config.DEFAULT_CONFIG.read_text())
        for path in configfiles:
            if not Path(path).is_file():
                raise ConfigError(f"--configfile {path} not found")
            config = coclr_config.deep_merge(config, yaml.safe_load(Path(path).read_text()) or {})
    coclr_config.validate(config, source=" + ".join(["config.yaml", *map(str, configfiles)]))
    return config


def cost_rates() -> dict:
    """Measured (or assumed) rates of benchmarks/cost_model.py. They live beside the benchmark
    scripts in the source tree the workflow runs from, as the config schema does."""
    if str(REPO) not in sys.path:
        sys.path.insert(0, str(REPO))
    from benchmarks.cost_model import rates
    return rates()


def check_devices(config, report, cuda_available, cuda_count) -> None:
    gpus, flow_device = config["resources"]["gpus"], config["flow"]["device"]
    if gpus or flow_device == "cuda":
        report.fact(f"CUDA: {'available, ' + str(cuda_count) + ' GPU(s)' if cuda_available else 'not available'}")
    if gpus and not cuda_available:
        report.refuse(f"resources.gpus is {gpus} but this machine has no CUDA device: set resources.gpus: 0, "
                      "or run the check where the jobs will run (a GPU node)")
    elif gpus > cuda_count and cuda_available:
        report.refuse(f"resources.gpus is {gpus} but only {cuda_count} GPU(s) are visible: lower resources.gpus")
    if flow_device == "cuda" and not cuda_available:
        report.refuse("flow.device is cuda but this machine has no CUDA device: set flow.device: cpu")


def slurm_node_cpus():
    """The most CPUs of one node of this machine's SLURM (`sinfo`), or None without SLURM."""
    import shutil
    import subprocess

    if shutil.which("sinfo") is None:
        return None
    try:
        out = subprocess.run(["sinfo", "-h", "-o", "%c"], capture_output=True, text=True, timeout=30).stdout
        return max(int(line.strip().rstrip("+")) for line in out.splitlines() if line.strip())
    except (OSError, subprocess.SubprocessError, ValueError):
        return None


def job_cpus(config) -> dict:
    """CPUs each kind of job asks for (the rules' threads: workflow/rules/common.smk, job_threads)."""
    res = config["resources"]
    per_process = res["threads"] + res["workers"]
    return {"training (pretrain, cotrain: ranks x (resources.threads + resources.workers))":
                max(res["gpus"], 1) * per_process,
            "evaluation (features, finetune, embed: resources.threads + resources.workers)": per_process,
            "ingest (ingest.workers)": config["ingest"]["workers"]}


def check_node_cpus(config, report, node_cpus) -> None:
    """Warn about jobs that ask SLURM for more CPUs than its largest node has: they pend for ever
    (reason PartitionConfig)."""
    if node_cpus is None:
        return
    for job, cpus in job_cpus(config).items():
        if cpus > node_cpus:
            report.warn(f"{job} asks for {cpus} CPUs but the largest node of this SLURM has {node_cpus}: submitted "
                        "through the SLURM profile such a job stays pending (reason PartitionConfig); lower the keys "
                        "named")


def usable_frames(manifest, config) -> pd.Series:
    """Frames each video gives after resampling to frames.fps (native rate when null)."""
    fps = config["frames"]["fps"]
    if not fps:
        return manifest["num_frames"]
    return (manifest["num_frames"] * fps / manifest["fps"]).round().astype(int)


def check_videos(manifest, config, settings, report) -> dict:
    """Counts per split and class; short videos; the batch, the queue and the steps they give."""
    clip, optim, moco = settings["clip"], settings["optim"], settings["moco"]
    span = (clip["frames"] - 1) * clip["stride"] + 1
    labelled = bool((manifest["label"] != UNLABELLED).all())
    classes = manifest["class_name"].fillna("(unlabelled)")  # pivot_table would drop rows without a class
    counts = manifest.assign(class_name=classes).pivot_table(index="class_name", columns="split", values="video_id",
                                                             aggfunc="count", fill_value=0)
    counts = counts.reindex(columns=["train", "test"], fill_value=0)
    train, test = int(counts["train"].sum()), int(counts["test"].sum())
    report.fact(f"videos: {train} train, {test} test, {len(counts)} classes "
                f"(per class: train {counts['train'].min()}-{counts['train'].max()}, "
                f"test {counts['test'].min()}-{counts['test'].max()})")
    if not labelled:
        report.fact("unlabelled videos: they pretrain (InfoNCE, CoCLR) and get embeddings; nothing is evaluated")
    for split, total in [("train", train)] + ([("test", test)] if labelled else []):
        if total == 0:
            report.refuse(f"no {split} videos: check datasets.<name>.split and the split files")
    untested = list(counts.index[counts["test"] == 0])
    if untested and test:
        report.warn(f"{len(untested)} class(es) have no test videos ({', '.join(untested[:5])}): they are trained "
                    "on but never scored")
    untrained = list(counts.index[counts["train"] == 0])
    if untrained and train:
        report.warn(f"{len(untrained)} class(es) have test but no training videos ({', '.join(untrained[:5])}): "
                    "the probe and fine-tuning can never predict them")
    lengths = usable_frames(manifest, config) - 1  # flow fields bound a window (clips.py)
    report.fact(f"shortest video: {lengths.min() + 1} frames (median {int(lengths.median()) + 1}); "
                f"a clip spans {span} frames")
    short = int((lengths < span).sum())
    if short:
        dropped = int((lengths + 1 <= reference_minimum(clip["frames"])).sum())
        report.warn(f"{short} video(s) are shorter than a clip ({span} frames): each gives one window padded on the "
                    f"left with its first frame, as the reference pads; {dropped} of them have at most "
                    f"{reference_minimum(clip['frames'])} frames, which the reference drops")
    if len(manifest) and (lengths < 1).any():
        report.warn(f"{int((lengths < 1).sum())} video(s) have fewer than 2 frames: they give no flow and are left out")
    if config["frames"]["fps"] is None and manifest["fps"].round(2).nunique() > 1:
        report.warn(f"frame rates differ ({manifest['fps'].min():g}-{manifest['fps'].max():g} fps) and frames.fps is "
                    "null: clips cover different durations; set frames.fps (the paper: 30 fps clips of ~1 s)")

    processes = max(1, config["resources"]["gpus"])
    batch = optim["batch_size"]
    global_batch = batch * processes
    steps = train // global_batch
    report.fact(f"batch {batch} per process x {processes} = {global_batch}: {steps} steps per epoch "
                f"({train // processes} training videos per process)")
    if steps == 0:
        report.refuse_pretraining(f"the {train} training videos are fewer than one global batch ({global_batch}): lower "
                      "optim.batch_size (presets.<preset>.optim or datasets.<name>.overrides.optim)")
    queue = moco["queue_size"]
    fill_steps = math.ceil(queue / global_batch)
    cotrain = settings["cotrain"]
    stage_steps = steps * cotrain["epochs"]
    report.fact(f"queue {queue} keys: full after {fill_steps} steps; a CoCLR stage has {stage_steps} steps "
                f"({cotrain['epochs']} epochs x {steps})")
    if steps and stage_steps <= fill_steps:
        report.refuse_pretraining(f"CoCLR never trains: it mines positives, and steps, only once the queue is full (as the "
                      f"reference), after {fill_steps} steps of {global_batch} clips, but a stage has only "
                      f"{stage_steps}; lower moco.queue_size to at most {(stage_steps - 1) * global_batch} or raise "
                      "cotrain.epochs")
    elif steps and fill_steps > 0.1 * stage_steps:
        report.warn(f"CoCLR waits {fill_steps} of its {stage_steps} steps for a full queue "
                    f"({100 * fill_steps / stage_steps:.0f}% of each stage): lower moco.queue_size or raise cotrain.epochs")
    if queue > train:
        report.warn(f"the queue ({queue} keys) is larger than the training set ({train} videos): it holds older keys "
                    "of the anchor's own video as negatives; the paper's UCF101 queue (2048) is a fifth of its set")
    for task in ("finetune", "linear_probe") if labelled else ():
        if settings[task]["batch_size"] > train:
            report.warn(f"{task}.batch_size ({settings[task]['batch_size']}) is larger than the training split "
                        f"({train}): every epoch is one smaller batch")
    return {"train": train, "test": test, "steps_per_epoch": steps, "lengths": lengths}


def check_costs(manifest, config, settings, report, found, rates) -> None:
    """Disk for frames and flow, and wall time per stage at the measured rates."""
    frames = usable_frames(manifest, config)
    short_side = config["frames"]["short_side"]
    pixels = sum(w * h * n for (w, h), n in zip(
        (resized_shape(w, h, short_side) if short_side else (w, h) for w, h in zip(manifest["width"], manifest["height"])),
        frames))
    rgb_gb = pixels * rates["rgb_bytes_per_pixel"] / 1e9
    report.fact(f"disk: frames {rgb_gb:.2f} GB + flow {rgb_gb * rates['flow_bytes_per_rgb_byte']:.2f} GB "
                f"({int(frames.sum())} frames)")
    gpus = config["resources"]["gpus"]
    pairs = int((frames - 1).clip(lower=0).sum())
    on_gpu = config["flow"]["device"] == "cuda"
    flow_rate = rates["flow_pairs_per_s_per_gpu"] if on_gpu else rates["flow_pairs_per_s_per_core"]
    train_rate = rates.get(f"train_clips_per_s_{config['preset']}_{'gpu' if gpus else 'cpu'}")
    hours = [("frames", int(frames.sum()) / rates["extract_frames_per_s_per_job"], "one job"),
             ("flow", pairs / flow_rate, "one GPU" if on_gpu else "one CPU job")]
    if train_rate:
        speed = train_rate * max(1, gpus) * (rates["scaling_efficiency"] if gpus > 1 else 1)
        clips = found["steps_per_epoch"] * settings["optim"]["batch_size"] * max(1, gpus)
        where = f"{gpus} GPU(s)" if gpus else "CPU"
        for stage, epochs, cost in (("infonce (each view)", settings["infonce"]["epochs"], 1.0),
                                    ("coclr stage (each of 2 x cycles)", settings["cotrain"]["epochs"],
                                     rates["cotrain_cost"]),
                                    ("ubernce (each view)", settings["ubernce"]["epochs"], 1.0)):
            hours.append((stage, clips * epochs * cost / speed, where))
    else:
        report.fact(f"training time: no rate measured for the {config['preset']} preset on this kind of device "
                    "(run python -m benchmarks.train)")
    for stage, seconds, where in hours:
        report.fact(f"time {stage}: {seconds / 3600:.2f} h on {where}")
    seeds = len(config["seeds"])
    if seeds > 1 and train_rate:
        report.fact(f"seeds: {seeds}, so each training stage (and every evaluation) runs {seeds} times; "
                    "frames and flow once")


def check(config, dataset=None, manifest_path=None, cuda=None, rates=None, pretraining=True,
          node_cpus="sinfo") -> Report:
    """The findings for ``dataset`` (default: config's) and, when given, its manifest.
    ``cuda`` (available, count) and ``rates`` default to this machine's and measured.json's;
    ``pretraining``: see :class:`Report`. ``node_cpus``: the CPUs of the largest SLURM node
    (default: asked of `sinfo`; None: no SLURM)."""
    report = Report(pretraining)
    dataset = dataset or config["dataset"]
    coclr_config.check_dataset_paths(config, dataset)
    settings = coclr_config.resolve(config, dataset)
    report.fact(f"dataset {dataset}, preset {config['preset']}: S3D width {settings['model']['width']} depth "
                f"{settings['model']['depth']}, {settings['clip']['frames']}x{settings['clip']['size']}^2 clips")
    if cuda is None:
        import torch  # only here: the rest of the check does not need it
        cuda = (torch.cuda.is_available(), torch.cuda.device_count())
    check_devices(config, report, *cuda)
    check_node_cpus(config, report, slurm_node_cpus() if node_cpus == "sinfo" else node_cpus)
    if manifest_path is None or not Path(manifest_path).is_file():
        report.fact(f"no manifest at {manifest_path}: build it with `snakemake --cores 4 data/{dataset}/manifest.csv` "
                    "(reads video headers only) to check the videos too")
        return report
    manifest = pd.read_csv(manifest_path)
    found = check_videos(manifest, config, settings, report)
    check_costs(manifest, config, settings, report, found, rates or cost_rates()[0])
    return report


def add_arguments(parser) -> None:
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--configfile", nargs="+", default=[], metavar="FILE",
                        help="config files merged over config.yaml, in order (as snakemake --configfile)")
    source.add_argument("--config-json", help="the whole merged configuration as JSON (what the workflow passes)")
    parser.add_argument("--dataset", help="dataset to check (default: the config's `dataset`)")
    parser.add_argument("--manifest", help="the dataset's manifest (default: data/<dataset>/manifest.csv)")
    parser.add_argument("--out", help="also write the findings as JSON (the workflow's record that the check passed)")
    parser.add_argument("--evaluation-only", action="store_true",
                        help="the dataset is only evaluated on: what would stop pretraining on it is a warning "
                             "(the workflow checks again, without this flag, before pretraining on it)")


def run(args) -> None:
    try:
        config = merged_config(args.configfile, args.config_json)
        dataset = args.dataset or config["dataset"]
        report = check(config, dataset, args.manifest or f"data/{dataset}/manifest.csv",
                       pretraining=not args.evaluation_only)
    except ConfigError as error:
        raise ConfigError(f"preflight: {error}") from None
    print(report.text())
    if report.problems:
        raise CoclrError()  # the report above names each problem and its key: nothing to add
    if args.out:
        write_json(args.out, {"dataset": dataset, "facts": report.facts, "warnings": report.warnings})
