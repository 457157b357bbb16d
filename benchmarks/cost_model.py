"""Cost model: hours and disk for UCF101 and Kinetics-400 end to end, on N GPUs.

    python -m benchmarks.cost_model [--gpus 1 4 8 16] [--cpu-jobs 32]

Every rate comes from benchmarks/measured.json (written by the benchmark
scripts) when it was measured; the rest are ASSUMED below, and each row of the
output says which. GPU rates stay assumptions until `python -m benchmarks.gpu`
has run on a GPU (its section "gpu" then replaces them). The schedule (epochs,
cycles) is config.yaml's `paper` preset with each dataset's overrides.
"""

import argparse
import json

from benchmarks.data import MEASURED, print_table
from coclr import config as coclr_config

DATASETS = {
    # videos, training videos (one clip per video per epoch), mean seconds, fps
    "ucf101": {"videos": 13_320, "train": 9_537, "seconds": 7.2, "fps": 25},
    "k400": {"videos": 240_000, "train": 240_000, "seconds": 10.0, "fps": 27.5},  # 25-30 fps
}

# Figures nobody has measured for this pipeline yet. Replace them with measurements.
ASSUMED = {
    "flow_pairs_per_s_per_gpu": 200.0,  # PyTorch TV-L1 at 128x171 on one GPU
    "train_clips_per_s_per_gpu": 150.0,  # S3D 32x128x128, bf16, one view, MoCo step
    "cotrain_cost": 1.25,  # a CoCLR step also embeds the key with the frozen other view
    "scaling_efficiency": 0.9,  # of linear speed-up, with more than one GPU (DDP)
    "flow_bytes_per_rgb_byte": 0.6,  # a flow field (2 x uint8) vs an RGB frame, both compressed
    "train_clips_per_s_per_core": None,  # loader; None = use the measured CPU figure
    "flow_pairs_per_s_per_core": 2.0,  # PyTorch TV-L1 at 128x171, one CPU thread
}
SHORT_SIDE = (128, 171)  # frames as the paper's pipeline stores them (frames.short_side: 128)


def rates() -> tuple:
    """(rates, source of each): measured where measured.json has it, else ASSUMED."""
    measured = json.loads(MEASURED.read_text()) if MEASURED.exists() else {}
    got, source = dict(ASSUMED), {key: "assumed" for key in ASSUMED}
    if "data" in measured:
        data = measured["data"]
        size = int(data["extraction"]["frame_size"].split("x")[0])
        got["extract_frames_per_s_per_job"] = data["extraction"]["frames_per_s"]
        got["rgb_bytes_per_pixel"] = data["shards"]["bytes_per_frame"] / size ** 2
        for key in ("extract_frames_per_s_per_job", "rgb_bytes_per_pixel"):
            source[key] = f"measured, {data['machine']}, {data['date']} (synthetic video)"
    if "train" in measured:
        loader = measured["train"]["loader"]
        got["train_clips_per_s_per_core"] = loader["paper_preset_rgb_workers0"]
        source["train_clips_per_s_per_core"] = f"measured, {measured['train']['machine']}, {measured['train']['date']}"
        for preset in ("cpu", "paper"):  # training steps on a CPU, per preset (the preflight's estimate)
            if f"{preset}_preset_rgb_cpu" in measured["train"]["train"]:
                key = f"train_clips_per_s_{preset}_cpu"
                got[key] = measured["train"]["train"][f"{preset}_preset_rgb_cpu"]
                source[key] = source["train_clips_per_s_per_core"]
    if "gpu_script_cpu_fallback" in measured:  # benchmarks/gpu.py run on a CPU: TV-L1 per CPU job
        cpu = measured["gpu_script_cpu_fallback"]
        if "tvl1_171x128" in cpu.get("flow", {}):
            got["flow_pairs_per_s_per_core"] = cpu["flow"]["tvl1_171x128"]["pairs_per_s"]
            source["flow_pairs_per_s_per_core"] = f"measured, {cpu['machine']}, {cpu['date']}"
    if "gpu" in measured:
        gpu = measured["gpu"]
        flow = [v["pairs_per_s"] for k, v in gpu["flow"].items() if k.startswith("tvl1_171x128")]
        if flow:
            got["flow_pairs_per_s_per_gpu"] = max(flow)  # with or without compile, whichever is faster
            source["flow_pairs_per_s_per_gpu"] = f"measured, {gpu['machine']}, {gpu['date']}"
        best = [v for k, v in gpu["train"].items() if k.startswith("s3d_32x128x128_rgb")]
        if best:
            got["train_clips_per_s_per_gpu"] = max(best)  # the fastest variant
            source["train_clips_per_s_per_gpu"] = f"measured, {gpu['machine']}, {gpu['date']}"
    got["train_clips_per_s_paper_gpu"] = got["train_clips_per_s_per_gpu"]  # the paper's S3D is what the GPU rate is of
    source["train_clips_per_s_paper_gpu"] = source["train_clips_per_s_per_gpu"]
    return got, source


def schedule(dataset: str) -> dict:
    """Training epochs of the pipeline's stages for a dataset, from config.yaml's paper preset."""
    config = coclr_config.load()
    config["preset"] = "paper"
    settings = coclr_config.resolve(config, dataset)
    cotrain = settings["cotrain"]
    return {"infonce": 2 * settings["infonce"]["epochs"],  # both views
            "coclr": 2 * cotrain["cycles"] * cotrain["epochs"],  # RGB and flow stage per cycle
            "ubernce": 2 * settings["ubernce"]["epochs"]}  # the ablation's oracle, both views


def costs(dataset: str, gpus: int, cpu_jobs: int, r: dict) -> dict:
    facts, epochs = DATASETS[dataset], schedule(dataset)
    frames = facts["videos"] * facts["seconds"] * facts["fps"]
    speed = gpus * (r["scaling_efficiency"] if gpus > 1 else 1.0)
    clips = facts["train"] * (epochs["infonce"] + r["cotrain_cost"] * epochs["coclr"])
    rgb_bytes = frames * SHORT_SIDE[0] * SHORT_SIDE[1] * r["rgb_bytes_per_pixel"]
    return {
        "frames": frames,
        "extract_h": frames / (r["extract_frames_per_s_per_job"] * cpu_jobs) / 3600,
        "flow_h": (frames - facts["videos"]) / (r["flow_pairs_per_s_per_gpu"] * gpus) / 3600,
        "train_h": clips / (r["train_clips_per_s_per_gpu"] * speed) / 3600,
        "ubernce_h": facts["train"] * epochs["ubernce"] / (r["train_clips_per_s_per_gpu"] * speed) / 3600,
        "loader_cores": r["train_clips_per_s_per_gpu"] * gpus / r["train_clips_per_s_per_core"],
        "frames_gb": rgb_bytes / 1e9,
        "flow_gb": rgb_bytes * r["flow_bytes_per_rgb_byte"] / 1e9,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gpus", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--cpu-jobs", type=int, default=32, help="frame-extraction jobs running at once")
    args = parser.parse_args()
    r, source = rates()
    print("Rates (per GPU / per CPU job):")
    print_table([[k, f"{v:.4g}" if isinstance(v, float) else v, source[k]] for k, v in sorted(r.items())],
                ["rate", "value", "source"])
    for dataset in DATASETS:
        epochs = schedule(dataset)
        print(f"\n{dataset}: {DATASETS[dataset]}, epochs {epochs}")
        rows = []
        for gpus in args.gpus:
            c = costs(dataset, gpus, args.cpu_jobs, r)
            total = c["extract_h"] + c["flow_h"] + c["train_h"]
            rows.append([gpus, f"{c['extract_h']:.2f}", f"{c['flow_h']:.1f}", f"{c['train_h']:.0f}",
                         f"{total:.0f} h = {total / 24:.1f} d", f"{c['ubernce_h']:.0f}", f"{c['loader_cores']:.0f}",
                         f"{c['frames_gb']:.0f} + {c['flow_gb']:.0f}"])
        print_table(rows, ["GPUs", f"frames h ({args.cpu_jobs} CPU jobs)", "flow h", "InfoNCE+CoCLR h",
                           "end to end", "+UberNCE h", "loader cores needed", "disk GB frames + flow"])


if __name__ == "__main__":
    main()
