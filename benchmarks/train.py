"""Training benchmark (issue #4): training clips/s, and whether the data loader keeps up.

    python -m benchmarks.train [--steps 5] [--workers 0 2]

- Training: one MoCo step of the pipeline (pretrain's InfoNCE step: query and
  momentum-key encoders forward, loss, backward, Adam, enqueue) on random clips,
  for the RGB and the flow network: the `cpu` preset, and the `paper` preset
  (full S3D, 32x128x128) with its step time and peak memory per clip, each batch
  size in a fresh process (peak RSS only grows): memory per clip is the growth
  from batch 1 to 2. On a GPU also the paper's S3D in bf16 autocast (as the
  trainer), with and without channels_last_3d and torch.compile, with its peak
  allocated memory per clip.
- Loading: TwoClipDataset (two augmented windows per video) over real frame
  shards, alone, with N DataLoader workers.

The loader is not the bottleneck when its clips/s exceeds the training clips/s
at the same clip size. Figures go to benchmarks/measured.json (section "train").
"""

import argparse
import multiprocessing
import resource
import tempfile
import time
from itertools import product

import torch
from torch.utils.data import DataLoader

from benchmarks.data import machine, make_shards, print_table, record
from coclr import config as coclr_config
from coclr.augment import RandomColour, decode_clips
from coclr.batch import collate
from coclr.clips import ClipReader, TwoClipDataset, usable_videos
from coclr.shards import frame_store
from coclr.training.pretrain import contrastive_step
from coclr.training.stage import build_moco


def pipeline_threads() -> None:
    """Torch threads per process as the training jobs set them (config.yaml resources.threads).

    On a small CPU two threads made the main-process loader ~20x slower, not faster.
    """
    torch.set_num_threads(coclr_config.load()["resources"]["threads"])


def preset(name: str) -> dict:
    """The resolved settings of a preset of config.yaml, as the training jobs get them."""
    config = coclr_config.load()
    config["preset"] = name
    return coclr_config.resolve(config, "synthetic")


def random_batch(settings, view, batch) -> dict:
    """A batch shaped like the loader's: uint8 RGB (B, T, 3, S, S) or flow input (B, C, T, S, S), labels, groups."""
    clip = settings["clip"]
    frames, size = clip["frames"], clip["size"]

    def clips():
        if view == "rgb":
            return torch.randint(0, 256, (batch, frames, 3, size, size), dtype=torch.uint8)
        return torch.randn(batch, settings["model"]["flow_channels"], frames, size, size)

    return {"query": {view: clips()}, "key": {view: clips()}, "index": torch.arange(batch),
            "label": torch.randint(0, 10, (batch,)), "group": torch.randint(0, 100, (batch,))}


def train_clips_per_s(settings, view, device, batch=None, steps=5, warmup=2, channels_last=True,
                      compile=False) -> float:
    """Clips/s of full training steps (as Trainer.fit runs them, colour augmentation on ``device``
    included) after ``warmup`` steps. The pipeline's layout is channels_last_3d."""
    device = torch.device(device)
    batch = batch or settings["optim"]["batch_size"]
    model = build_moco(view, settings, device)
    if not channels_last:
        model = model.to(memory_format=torch.contiguous_format)
    if compile:
        model.encoder_q.compile()
        model.encoder_k.compile()
    optimizer = torch.optim.Adam(model.parameters(), lr=settings["optim"]["lr"])
    step = contrastive_step(model, view, "infonce", device, RandomColour.from_settings(settings["clip"]))
    data = random_batch(settings, view, batch)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
    for i in range(warmup + steps):
        if i == warmup:
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
        with autocast:
            loss = step(data).loss
        optimizer.zero_grad(set_to_none=True)
        loss.float().backward()
        optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return batch * steps / (time.perf_counter() - start)


def paper_cpu_step(view, batch, steps) -> tuple:
    """(seconds per step, peak RSS MiB) of the paper preset's training step on the CPU, in this process."""
    pipeline_threads()
    rate = train_clips_per_s(preset("paper"), view, "cpu", batch=batch, steps=steps, warmup=1)
    return batch / rate, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def paper_cpu_rows(steps, figures, rows) -> None:
    """Step time at batch 2 and memory per clip (peak at batch 2 minus batch 1), each in a fresh process."""
    with multiprocessing.get_context("spawn").Pool(1, maxtasksperchild=1) as pool:
        for view in ("rgb", "flow"):
            (_, peak1), (step2, peak2) = (pool.apply(paper_cpu_step, (view, b, steps)) for b in (1, 2))
            figures["train"][f"paper_preset_{view}_cpu"] = 2 / step2
            figures["memory"][f"paper_preset_{view}_cpu"] = {"step_s_batch2": step2, "peak_mib_batch1": peak1,
                                                             "peak_mib_batch2": peak2, "mib_per_clip": peak2 - peak1}
            rows.append([f"train {view}", "paper preset (S3D, 32x128x128)", "cpu fp32 cl3d", 2, f"{2 / step2:.2f}",
                         f"{step2:.1f}", f"{peak2:.0f}", f"{peak2 - peak1:.0f}"])


def gpu_peak_mib_per_clip(settings, view, channels_last, compile, steps) -> float:
    """Peak allocated CUDA memory per clip: batch 2 minus batch 1, as on the CPU."""
    peaks = []
    for batch in (1, 2):
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        train_clips_per_s(settings, view, "cuda", batch=batch, steps=steps, channels_last=channels_last,
                          compile=compile)
        peaks.append(torch.cuda.max_memory_allocated() / 2 ** 20)
    return peaks[1] - peaks[0]


def loader_clips_per_s(shards, manifest, settings, workers, batches=10, decode_on=None) -> float:
    """Clips/s of the training DataLoader alone (RGB view), after its first batch.

    ``decode_on`` (a device): the loader reads JPEG bytes and each batch is decoded
    and cropped there (``resources.jpeg_decode: device``), included in the time.
    """
    store = frame_store(shards, encoded=decode_on is not None)
    videos = usable_videos(manifest, "train", [store])
    dataset = TwoClipDataset(videos, ClipReader(frames=store), settings["clip"], settings["model"]["flow_channels"])
    batch = min(settings["optim"]["batch_size"], len(dataset))
    loader = DataLoader(dataset, batch_size=batch, shuffle=True, drop_last=True, num_workers=workers,
                        persistent_workers=workers > 0, prefetch_factor=4 if workers else None, collate_fn=collate)
    clips, seen = 0, 0
    while seen < batches + 1:  # the first batch pays for starting the workers
        for item in loader:
            if seen == 1:
                start = time.perf_counter()
            if decode_on is not None:
                for side in ("query", "key"):
                    decode_clips(item[side]["rgb"], decode_on)
                if torch.device(decode_on).type == "cuda":
                    torch.cuda.synchronize()
            if seen > 1:
                clips += len(item["index"])
            seen += 1
            if seen == batches + 1:
                break
    return clips / (time.perf_counter() - start)


def gpu_variants():
    """(channels_last, compile) combinations measured on a GPU."""
    return list(product([False, True], [False, True]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=5, help="timed training steps per row")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="DataLoader workers to try")
    args = parser.parse_args()
    pipeline_threads()
    cpu = preset("cpu")
    rows, figures = [], {"train": {}, "loader": {}, "memory": {}}
    model, clip = cpu["model"], cpu["clip"]
    described = f"cpu preset (S3D w{model['width']} d{model['depth']}, {clip['frames']}x{clip['size']}x{clip['size']})"
    for view in ("rgb", "flow"):
        for channels_last in (True, False):
            rate = train_clips_per_s(cpu, view, "cpu", steps=args.steps, channels_last=channels_last)
            figures["train"][f"cpu_preset_{view}_cpu" + "_contiguous" * (not channels_last)] = rate
            rows.append([f"train {view}", described, "cpu fp32 " + ("cl3d" if channels_last else "contiguous"),
                         cpu["optim"]["batch_size"], f"{rate:.1f}", f"{cpu['optim']['batch_size'] / rate:.2f}", "",
                         ""])
    paper_cpu_rows(args.steps, figures, rows)
    if torch.cuda.is_available():
        paper = preset("paper")
        for view in ("rgb", "flow"):
            for channels_last, compile in gpu_variants():
                rate = train_clips_per_s(paper, view, "cuda", steps=args.steps, channels_last=channels_last,
                                         compile=compile)
                key = f"s3d_32x128_{view}_cuda_bf16" + "_cl3d" * channels_last + "_compile" * compile
                figures["train"][key] = rate
                per_clip = gpu_peak_mib_per_clip(paper, view, channels_last, compile, args.steps)
                figures["memory"][key] = {"mib_per_clip": per_clip}
                batch = paper["optim"]["batch_size"]
                rows.append([f"train {view}", "paper S3D 32x128x128", "cuda bf16" + " cl3d" * channels_last
                             + " compile" * compile, batch, f"{rate:.1f}", f"{batch / rate:.2f}", "",
                             f"{per_clip:.0f}"])
    with tempfile.TemporaryDirectory() as tmp:
        made = make_shards(tmp, size=128)
        for name, settings, batches in (("cpu", cpu, 10), ("paper", preset("paper"), 3)):
            clip = settings["clip"]
            for workers in args.workers:
                rate = loader_clips_per_s(made["shards"], made["manifest"], settings, workers, batches)
                figures["loader"][f"{name}_preset_rgb_workers{workers}"] = rate
                rows.append(["loader rgb", f"{name} preset clips ({clip['frames']}x{clip['size']}x{clip['size']}) "
                             "from 128x128 shards", f"cpu, {workers} workers", settings["optim"]["batch_size"],
                             f"{rate:.1f}", "", "", ""])
    record("train", figures)
    print(f"{machine()}\n")
    print_table(rows, ["what", "model / data", "device", "batch", "clips/s", "s/step", "peak MiB", "MiB per clip"])


if __name__ == "__main__":
    main()
