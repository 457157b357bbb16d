"""``python -m coclr retrieval``: nearest-neighbour video retrieval, R@k.

Each test video queries the training videos. Query and gallery features are
each centred on their own mean and L2-normalised; similarity is the cosine.
A query scores a hit at k when any of its k nearest training videos has its
class. Given an RGB and a flow features file, the two similarity matrices are
summed (two-stream).
"""

import time

import torch
import torch.nn.functional as F

from coclr.errors import CoclrError
from coclr.evaluation.features import load_features
from coclr.evaluation.records import result_record
from coclr.ingest import require_labels
from coclr.io import file_record, write_json
from coclr.naming import TWO_STREAM

KS = (1, 5, 10, 20, 50)


def add_arguments(parser) -> None:
    parser.add_argument("--features", nargs="+", required=True,
                        help="features file of one model, or of the RGB and the flow model of a method (two-stream)")
    parser.add_argument("--out", required=True, help="result JSON")
    parser.add_argument("--ks", type=int, nargs="+", default=list(KS), help="k of R@k")


def centred(features) -> torch.Tensor:
    return F.normalize(features - features.mean(0, keepdim=True), dim=1)


def similarity(query, gallery) -> torch.Tensor:
    """(queries, gallery) cosine similarity of the centred, normalised features."""
    return centred(query) @ centred(gallery).T


def recall_at_k(sim, query_labels, gallery_labels, ks=KS) -> dict:
    """Percent of queries with a same-class video among their k most similar (k capped at the gallery)."""
    nearest = sim.topk(min(max(ks), sim.shape[1]), dim=1).indices
    hits = torch.as_tensor(gallery_labels)[nearest] == torch.as_tensor(query_labels)[:, None]
    return {f"R@{k}": 100.0 * hits[:, :k].any(1).float().mean().item() for k in ks}


def run(args) -> None:
    start = time.time()
    models = [load_features(path) for path in args.features]
    first = models[0]
    require_labels(torch.cat([first["train"]["labels"], first["test"]["labels"]]).numpy(), args.features[0],
                   "retrieval (a hit is a neighbour of the same class)")
    if len(models) > 1 and sorted(m["view"] for m in models) != ["flow", "rgb"]:
        raise CoclrError(f"two-stream retrieval needs one RGB and one flow features file, got {args.features}")
    for other in models[1:]:
        for split in ("train", "test"):
            if other[split]["video_ids"] != first[split]["video_ids"]:
                raise CoclrError(f"{args.features} cover different {split} videos: rebuild them from the same shards")
    sim = sum(similarity(m["test"]["features"], m["train"]["features"]) for m in models)
    views = [m["view"] for m in models]
    write_json(args.out, result_record(
        "retrieval", first["method"], views[0] if len(views) == 1 else TWO_STREAM,
        recall_at_k(sim, first["test"]["labels"], first["train"]["labels"], args.ks),
        [m["checkpoint"] for m in models if m["checkpoint"]], start,
        features=[file_record(path) for path in args.features],
        settings={"ks": args.ks, "features": first["settings"]},
        pretraining_epochs=[m["checkpoint"]["meta"].get("epochs") if m["checkpoint"] else 0 for m in models],
        queries=len(first["test"]["video_ids"]), gallery=len(first["train"]["video_ids"])))
