"""``python -m coclr embed``: backbone features of any videos, to take the representation elsewhere.

Videos come from folders (every file with a video suffix, recursively), CSV
lists with a ``path`` column (a manifest is one) or paths given directly. Each
video is prepared as the pipeline prepares a dataset: decoded at
``frames.fps`` / ``frames.short_side``, sent through the same JPEG round trip
as the frame shards, its flow estimated with the pipeline's TV-L1 (on CUDA when
``flow.device`` asks and there is a GPU) and quantised as the flow shards store
it. The backbone then sees the dense windows of ``coclr features`` through the
same code (:func:`coclr.evaluation.features.video_features`), so on the videos of a dataset
``embed`` and ``features`` agree.

Output, by the suffix of ``--out``: Parquet (columns ``path``, then ``window``,
``start_s``, ``end_s`` with ``--per-window``, and ``feature``, a list of
floats; the run record as JSON in the schema metadata under ``coclr``) or NPZ
(``paths``, ``features`` (N, D), with ``--per-window`` ``window``, ``start_s``
and ``end_s``, and ``record``, the same JSON). ``path`` is absolute. The
two-stream feature is the L2-normalised RGB feature followed by the
L2-normalised flow feature: its dot products are the summed cosine
similarities that two-stream retrieval ranks by.
"""

import dataclasses
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset
from tqdm import tqdm

from coclr import logs
from coclr.clips import ClipReader, DenseClipDataset
from coclr.config import add_settings_arguments, settings_from_args
from coclr.shards import decode_jpegs, encode_jpegs
from coclr.distributed import set_threads
from coclr.errors import CoclrError
from coclr.evaluation.common import device
from coclr.evaluation.features import video_features
from coclr.flow.extract import BatchSize, chunk_flow, flow_gray
from coclr.flow.quantise import decode_flow
from coclr.flow.tvl1 import TVL1Params
from coclr.ingest import IngestError
from coclr.ingest.folder import VIDEO_SUFFIXES, csv_paths
from coclr.io import atomic_path, file_record
from coclr.models import load_backbone, load_model, place
from coclr.naming import RESULT_VIEWS
from coclr.video import VideoError, decode, probe

log = logging.getLogger(__name__)

FORMAT = "coclr-embeddings/1"
SUFFIXES = (".parquet", ".npz")


def add_arguments(parser) -> None:
    parser.add_argument("--videos", nargs="+", required=True,
                        help="video files, folders (searched recursively) or CSV lists with a `path` column")
    parser.add_argument("--view", choices=RESULT_VIEWS, required=True)
    parser.add_argument("--checkpoint", nargs="+", required=True,
                        help="model checkpoint(s) (coclr-model/1, or converted with import-weights): "
                             "one per view, an RGB and a flow one for two_stream")
    parser.add_argument("--per-window", action="store_true", help="one vector per window (with its times), "
                        "not the mean over the video's windows")
    parser.add_argument("--batch-size", type=int, default=16, help="windows per forward pass")
    parser.add_argument("--out", required=True, help=f"output file: {' or '.join(SUFFIXES)}")
    add_settings_arguments(parser)


def video_paths(sources) -> list:
    """Absolute paths of the videos named by ``sources``, in order, each once."""
    paths = []
    for source in map(Path, sources):
        if source.is_dir():
            paths += sorted(f for f in source.rglob("*") if f.is_file() and f.suffix.lower() in VIDEO_SUFFIXES)
        elif source.suffix.lower() == ".csv" and source.is_file():
            _, rows = csv_paths(source)
            for where, row in rows:
                if row is None or not row["path"]:
                    raise IngestError(f"{where}: no path in this row")
                paths.append(Path(row["path"]))
        elif source.is_file():
            paths.append(source)
        else:
            raise IngestError(f"{source} is neither a video file, a folder nor a CSV list: fix --videos")
    return list(dict.fromkeys(os.path.abspath(p) for p in paths))


def load_streams(paths, view) -> dict:
    """{view: (backbone, checkpoint, record)} of the checkpoints ``view`` needs."""
    needed = ["rgb", "flow"] if view == "two_stream" else [view]
    streams = {}
    for path in paths:
        checkpoint = load_model(path)
        if checkpoint["view"] not in needed or checkpoint["view"] in streams:
            raise CoclrError(f"embed: --view {view} needs one checkpoint of each of {needed}; {path} is a "
                             f"{checkpoint['view']} model")
        streams[checkpoint["view"]] = (load_backbone(checkpoint), checkpoint,
                                       {**file_record(path), "view": checkpoint["view"], "meta": checkpoint["meta"]})
    absent = [v for v in needed if v not in streams]
    if absent:
        raise CoclrError(f"embed: --view {view} needs a {' and a '.join(absent)} checkpoint too: add it to --checkpoint")
    return streams


class Decoded:
    """One video's frames or flow held in memory, read as :class:`coclr.shards.ShardStore` reads a shard."""

    def __init__(self, video_id, array: np.ndarray):
        self.video_id, self.array = video_id, torch.from_numpy(np.ascontiguousarray(array))

    def __contains__(self, video_id) -> bool:
        return video_id == self.video_id

    def num_frames(self, video_id) -> int:
        return len(self.array)

    def read_indices(self, video_id, indices):
        return self.array[torch.as_tensor(np.asarray(indices))]


class PerWindow(Dataset):
    """Each window of a dense clip dataset as a "video" of its own: per_video_mean then keeps windows apart."""

    def __init__(self, dense: DenseClipDataset):
        self.dense, self.videos = dense, dense.windows

    def __len__(self):
        return len(self.dense)

    def __getitem__(self, index):
        return {**self.dense[index], "video": index}


def prepare(path, frames_settings) -> np.ndarray:
    """RGB frames as the frame shards hold them: decoded, resampled, resized, through the JPEG round trip."""
    frames = decode(path, fps=frames_settings["fps"], short_side=frames_settings["short_side"])
    return decode_jpegs(encode_jpegs(frames, frames_settings["jpeg_quality"]))


def estimate_flow(path, frames, flow_settings, flow_device) -> np.ndarray:
    """Flow fields (T - 1, H, W, 2) as the flow shards hold them: TV-L1, then quantised."""
    if len(frames) < 2:
        raise VideoError(path, f"{len(frames)} frame: flow needs at least two")
    kwargs = dict(method=flow_settings["method"], device=flow_device, compile=flow_settings["compile"],
                  **dataclasses.asdict(TVL1Params.from_dict(flow_settings["params"])))
    batch = BatchSize(flow_settings["batch_size"], flow_device)
    return decode_flow(chunk_flow([(path, flow_gray(frames))], batch, **kwargs)[0])


def flow_device_for(flow_settings) -> str:
    """``flow.device``, or the CPU (with a note) when it asks for CUDA on a machine without a GPU."""
    if flow_settings["device"] == "cuda" and not torch.cuda.is_available():
        log.warning("embed: flow.device is cuda but no GPU is visible: estimating flow on the CPU")
        return "cpu"
    return flow_settings["device"]


def embed_video(path, streams, settings, flow_device, per_window, batch_size) -> tuple:
    """(features (N, D), window table or None) of one video; N is 1, or its windows with ``per_window``."""
    clip = settings["clip"]
    rgb = prepare(path, settings["frames"])
    arrays = {"rgb": rgb}
    if "flow" in streams:
        arrays["flow"] = estimate_flow(path, rgb, settings["flow"], flow_device)
    row = pd.DataFrame({"video_id": [path]})
    outputs, starts = {}, {}
    for view, (net, checkpoint, _) in streams.items():
        store = Decoded(path, arrays[view])
        reader = ClipReader(frames=store) if view == "rgb" else ClipReader(flow=store)
        dense = DenseClipDataset(row, reader, clip, checkpoint["arch"]["in_channels"])
        windows = PerWindow(dense) if per_window else dense
        outputs[view] = video_features(net, windows, view, batch_size)[clip["eval_pooling"]]
        # A short video's one window starts before frame 0 (left padding), in each view by its own length.
        starts[view] = [max(start, 0) for _, start, _ in dense.windows]
    if len(streams) == 2:
        if per_window:  # flow has one field fewer than frames: keep the windows both views have
            common = sorted(set(starts["rgb"]) & set(starts["flow"]))
            for view in outputs:
                outputs[view] = outputs[view][[starts[view].index(s) for s in common]]
            starts = {"two_stream": common}
        features = torch.cat([F.normalize(outputs["rgb"], dim=1), F.normalize(outputs["flow"], dim=1)], dim=1)
    else:
        (view, features), = outputs.items()
        starts = {"two_stream": starts[view]}
    if not per_window:
        return features, None
    fps = settings["frames"]["fps"] or probe(path)["fps"]
    span = (clip["frames"] - 1) * clip["stride"] + 1
    start = np.asarray(starts["two_stream"])
    windows = pd.DataFrame({"window": np.arange(len(start)), "start_s": start / fps,
                            "end_s": np.minimum(start + span, len(rgb)) / fps})
    return features, windows


def write(out, paths, features, windows, record) -> None:
    """The embeddings as Parquet or NPZ (by the suffix of ``out``), atomically."""
    features = features.numpy().astype(np.float32)
    columns = {"path": paths}
    if windows is not None:
        columns.update({key: windows[key].to_numpy() for key in ("window", "start_s", "end_s")})
    with atomic_path(out) as tmp:
        if Path(out).suffix == ".npz":
            with open(tmp, "wb") as f:
                np.savez(f, paths=np.asarray(paths), features=features, record=json.dumps(record),
                         **{k: v for k, v in columns.items() if k != "path"})
            return
        table = pa.table({**columns, "feature": pa.FixedSizeListArray.from_arrays(features.reshape(-1), features.shape[1])})
        pq.write_table(table.replace_schema_metadata({"coclr": json.dumps(record)}), tmp)


def run(args) -> None:
    if Path(args.out).suffix not in SUFFIXES:
        raise CoclrError(f"embed: --out {args.out} must end in {' or '.join(SUFFIXES)}")
    settings = settings_from_args(args, sections=("frames", "flow", "resources"))
    set_threads(settings)
    start = time.time()
    try:
        paths = video_paths(args.videos)
    except IngestError as error:
        raise IngestError(f"embed: {error}") from None
    if not paths:
        raise CoclrError(f"embed: no videos in {args.videos} (video suffixes: {' '.join(VIDEO_SUFFIXES)})")
    streams = load_streams(args.checkpoint, args.view)
    for view, (net, _, _) in streams.items():
        streams[view] = (place(net, device()).eval(), *streams[view][1:])
    flow_device = flow_device_for(settings["flow"]) if "flow" in streams else None
    done, features, windows, failures = [], [], [], []
    with logs.above_bars():
        for path in tqdm(paths, desc="embed", unit="video", file=sys.stderr):
            try:
                vectors, table = embed_video(path, streams, settings, flow_device, args.per_window, args.batch_size)
            except VideoError as error:
                failures.append({"path": path, "error": error.reason})
                log.warning(f"embed: skipped {error}")
                continue
            done += [path] * len(vectors)
            features.append(vectors)
            if table is not None:
                windows.append(table)
    if not features:
        raise CoclrError(f"embed: none of the {len(paths)} videos could be read (reasons above)")
    record = {"format": FORMAT, "view": args.view, "per_window": args.per_window,
              "checkpoints": [record for _, _, record in streams.values()],
              "settings": {key: settings[key] for key in ("clip", "frames", "flow")}, "flow_device": flow_device,
              "videos": len(paths) - len(failures), "failures": failures, "wall_s": time.time() - start}
    features = torch.cat(features)
    write(args.out, done, features, pd.concat(windows, ignore_index=True) if windows else None, record)
    log.info(f"embed {args.view}: {record['videos']} of {len(paths)} videos ({len(failures)} skipped), "
             f"{len(features)} {features.shape[1]}-d vectors, {record['wall_s']:.0f} s -> {args.out}")


def load_embeddings(path) -> tuple:
    """(table with ``path`` [, ``window``, ``start_s``, ``end_s``], features (N, D), record) of an embed output."""
    if Path(path).suffix == ".npz":
        data = np.load(path)
        table = pd.DataFrame({"path": data["paths"], **{k: data[k] for k in ("window", "start_s", "end_s") if k in data}})
        return table, data["features"], json.loads(str(data["record"]))
    table = pq.read_table(path)
    record = json.loads(table.schema.metadata[b"coclr"])
    features = np.stack(table.column("feature").to_numpy(zero_copy_only=False)).astype(np.float32)
    return table.drop(["feature"]).to_pandas(), features, record
