"""In-memory training and evaluation for the test bed, on the project's model core.

The stages are the pipeline's: InfoNCE and UberNCE pretraining of one view, and a
CoCLR stage that trains one view with positives mined by the frozen other view
(coclr.moco, coclr.losses, coclr.mining, reduced S3D from coclr.models.s3d).
Augmentation follows the reference in kind (random resized crop and flip shared
by the RGB and flow of a clip, colour jitter and grey for RGB) but runs on whole
batches of tensors, because the dataset is tiny and sits in memory.
"""

import math
import time
import warnings

import numpy as np
import torch
import torch.nn.functional as F
from sklearn.linear_model import LogisticRegressionCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from coclr.losses import info_nce, label_positives, mil_nce, uber_nce
from coclr.mining import mine_positives, purity
from coclr.moco import MoCo


def _as_input(x: torch.Tensor, view: str) -> torch.Tensor:
    """uint8 (B, T, H, W, C) -> float (B, C, T, H, W), roughly zero-mean unit-range."""
    x = x.permute(0, 4, 1, 2, 3).float() / 255
    return (x - 0.5) / 0.25 if view == "rgb" else (x - 0.5) * 2


def _colour(x: torch.Tensor, g: torch.Generator) -> torch.Tensor:
    """Brightness, contrast, saturation jitter (0.4, p 0.8) and grey (p 0.2), fixed within a clip."""
    b = x.shape[0]
    u = lambda: torch.rand(b, 1, 1, 1, 1, generator=g)  # noqa: E731
    on = (u() < 0.8).float()
    grey = x.mean(1, keepdim=True)
    x = x * (1 + on * (u() - 0.5) * 0.8)
    x = (x - x.mean((1, 2, 3, 4), keepdim=True)) * (1 + on * (u() - 0.5) * 0.8) + x.mean((1, 2, 3, 4), keepdim=True)
    x = grey + (x - grey) * (1 + on * (u() - 0.5) * 0.8)
    return torch.where(u() < 0.2, x.mean(1, keepdim=True).expand_as(x), x)


class Clips:
    """Samples augmented (RGB, flow) clip pairs of the same frames, crop and flip."""

    def __init__(self, data: dict, idx: np.ndarray, T: int, size: int, min_area: float, seed: int):
        self.rgb = torch.from_numpy(data["rgb"][idx])
        self.flow = torch.from_numpy(data["flow"][idx])
        self.T, self.size, self.min_area = T, size, min_area
        self.g = torch.Generator().manual_seed(seed)

    def sample(self, rows: torch.Tensor) -> dict:
        n_flow, H, W = self.flow.shape[1], self.flow.shape[2], self.flow.shape[3]
        rgb, flow = [], []
        for i in rows.tolist():
            s = int(torch.randint(0, n_flow - self.T + 1, (1,), generator=self.g))
            area = H * W * (self.min_area + (1 - self.min_area) * float(torch.rand(1, generator=self.g)))
            aspect = math.exp((float(torch.rand(1, generator=self.g)) - 0.5) * 2 * math.log(4 / 3))
            h = min(H, int(round(math.sqrt(area / aspect))))
            w = min(W, int(round(math.sqrt(area * aspect))))
            y = int(torch.randint(0, H - h + 1, (1,), generator=self.g))
            x = int(torch.randint(0, W - w + 1, (1,), generator=self.g))
            flip = bool(torch.rand(1, generator=self.g) < 0.5)
            for src, out, view in ((self.rgb, rgb, "rgb"), (self.flow, flow, "flow")):
                clip = _as_input(src[i : i + 1, s : s + self.T, y : y + h, x : x + w], view)[0]
                clip = F.interpolate(clip, size=(self.size, self.size), mode="bilinear", align_corners=False)
                if flip:
                    clip = clip.flip(-1)
                    if view == "flow":
                        clip[0] = -clip[0]  # horizontal flow changes sign under a flip
                out.append(clip)
        return {"rgb": _colour(torch.stack(rgb), self.g), "flow": torch.stack(flow)}


def new_model(view: str, arch: dict, hp: dict, seed: int) -> MoCo:
    torch.manual_seed(seed)
    channels = 3 if view == "rgb" else 2
    return MoCo({**arch, "in_channels": channels}, dim=128, queue_size=hp["queue"], momentum=hp["momentum"],
                temperature=hp["temperature"])


def train_stage(model: MoCo, view: str, data: dict, hp: dict, epochs: int, loss: str, seed: int,
                other: MoCo | None = None, topk: int = 5, drop_self: float = 0.9) -> dict:
    """Train `model` on view `view`; loss 'infonce', 'ubernce' or 'coclr' (positives mined by `other`)."""
    train = np.flatnonzero(~data["test"])
    clips = Clips(data, train, hp["T"], hp["crop"], hp["min_area"], seed)
    labels = torch.from_numpy(data["label"][train])
    g = torch.Generator().manual_seed(seed + 1)
    opt = torch.optim.Adam(model.encoder_q.parameters(), hp["lr"], weight_decay=1e-5)
    other_view = "flow" if view == "rgb" else "rgb"
    if other is not None:
        other.eval()
    log = {"loss": [], "purity": []}
    start = time.time()
    model.train()
    for _ in range(epochs):
        order = torch.randperm(len(train), generator=g)
        losses, purities = [], []
        for b in range(len(train) // hp["batch"]):
            rows = order[b * hp["batch"] : (b + 1) * hp["batch"]]
            q, k = clips.sample(rows), clips.sample(rows)
            out = model(q[view], k[view])
            second = None
            if loss == "infonce":
                value = info_nce(out.logits)
            elif loss == "ubernce":
                value = uber_nce(out.logits, label_positives(labels[rows], model.queue_label))
            else:
                with torch.no_grad():
                    second = other.encoder_q(k[other_view])
                if model.queue_full:
                    mined = mine_positives(second, model.queue_second, rows, model.queue_group, topk, drop_self,
                                           valid=model.queue_valid(), generator=g)
                    value = mil_nce(out.logits, mined.positives)
                    purities.append(purity(mined.indices, labels[rows], model.queue_label))
                else:
                    value = None  # the reference skips steps until the queue holds real keys
            if value is not None:
                opt.zero_grad()
                value.backward()
                opt.step()
                losses.append(value.item())
            model.enqueue(out.k, labels[rows], rows, second)
        log["loss"].append(float(np.mean(losses)) if losses else float("nan"))
        log["purity"].append(float(np.mean(purities)) if purities else float("nan"))
    log["seconds"] = time.time() - start
    return log


@torch.no_grad()
def features(model: MoCo, view: str, data: dict, hp: dict) -> np.ndarray:
    """Pooled backbone features per video: full frame resized to the crop size, windows averaged."""
    model.eval()
    src = data[view]
    n_flow = data["flow"].shape[1]
    starts = np.unique(np.linspace(0, n_flow - hp["T"], 3).round().astype(int))
    out = []
    for i in range(0, len(src), 64):
        x = torch.from_numpy(src[i : i + 64])
        acc = 0
        for s in starts:
            clip = _as_input(x[:, s : s + hp["T"]], view)
            b, c, t, h, w = clip.shape
            clip = F.interpolate(clip.reshape(b, c * t, h, w), size=(hp["crop"],) * 2, mode="bilinear",
                                 align_corners=False).reshape(b, c, t, hp["crop"], hp["crop"])
            acc = acc + model.encoder_q.features(clip)
        out.append(acc / len(starts))
    return torch.cat(out).numpy()


def evaluate(feats: np.ndarray, data: dict) -> dict:
    """Linear probe (C chosen by cross-validation on train) and retrieval R@1, test queries vs train gallery."""
    test, y = data["test"], data["label"]
    f = feats / (np.linalg.norm(feats, axis=1, keepdims=True) + 1e-8)
    probe = make_pipeline(StandardScaler(), LogisticRegressionCV(Cs=[0.01, 0.1, 1, 10], cv=3, max_iter=3000))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn's notices about future defaults
        probe.fit(f[~test], y[~test])
    acc = probe.score(f[test], y[test])
    q, g = feats[test] - feats[test].mean(0), feats[~test] - feats[~test].mean(0)
    q /= np.linalg.norm(q, axis=1, keepdims=True) + 1e-8
    g /= np.linalg.norm(g, axis=1, keepdims=True) + 1e-8
    r1 = (y[~test][np.argmax(q @ g.T, axis=1)] == y[test]).mean()
    return {"probe": round(100 * float(acc), 1), "r1": round(100 * float(r1), 1)}
