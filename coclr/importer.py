"""``python -m coclr import-weights SRC DST``: the authors' released checkpoints in this project's format.

Handles InfoNCE, UberNCE and CoCLR checkpoints of either view (MoCo state dicts)
and downstream classifier checkpoints (``backbone.*``, whose backbone becomes an
encoder state dict without head). What the released files add is resolved here:
an optional ``module.`` prefix, the ``blockN.M`` aliases (second names of the
same tensors), ``queue_vname`` and ``queue_second`` (called ``queue_group`` and
``queue_other_view`` here), the frozen ``sampler.*`` copy of the other view and the
classifier's ``final_bn``/``final_fc``.
Every source key ends up in exactly one line of the printed report.

A conversion that could silently give another network is refused: a gated
S3D-G checkpoint (``gating`` keys; this project builds the plain S3D of the
released runs, so the gates would be dropped and every feature would change),
and any checkpoint with unmapped keys inside the network (the encoders, or the
backbone and head of a backbone-only file). Unmapped keys outside it (an extra
buffer) are reported and kept in the meta.
"""

import pickle
import re
from pathlib import Path

import torch

from coclr.errors import CoclrError
from coclr.io import sha256
from coclr.models import VIEWS, Encoder, build_backbone, save_model
from coclr.moco import MoCo

ALIASES = {
    "block1.0": "Conv_1a", "block2.1": "Conv_2b", "block2.2": "Conv_2c",
    "block3.1": "Mixed_3b", "block3.2": "Mixed_3c",
    "block4.1": "Mixed_4b", "block4.2": "Mixed_4c", "block4.3": "Mixed_4d", "block4.4": "Mixed_4e", "block4.5": "Mixed_4f",
    "block5.1": "Mixed_5b", "block5.2": "Mixed_5c",
}  # fmt: skip
ALIAS_RE = re.compile(r"\.(block\d\.\d)\.")
SKIPPED = {
    "sampler.": "frozen copy of the other view's encoder (import that view's own checkpoint)",
    "final_bn.": "downstream classifier head",
    "final_fc.": "downstream classifier head",
}
RENAMED = {"queue_vname": "queue_group", "queue_second": "queue_other_view", "backbone.": "0."}
META_KEYS = ("epoch", "iteration", "best_acc")


def add_arguments(parser) -> None:
    parser.add_argument("src", type=Path, help="checkpoint in the authors' layout (.pth.tar)")
    parser.add_argument("dst", type=Path, help="output model checkpoint (coclr-model/1)")
    parser.add_argument("--view", choices=VIEWS, help="default: inferred from input channels or the file name")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="load with weights_only=False (runs pickled code: only for files you trust)")


def run(args) -> None:
    try:
        source = torch.load(args.src, map_location="cpu", weights_only=not args.trust_pickle)
    except pickle.UnpicklingError as error:
        raise CoclrError(f"{args.src}: refused by torch.load(weights_only=True): {error}\n"
                         "The file pickles more than tensors and plain values; if you trust it, rerun with --trust-pickle.")
    try:
        checkpoint, report = convert(source, view=args.view, name=args.src.name)
    except ValueError as error:
        raise CoclrError(f"{args.src}: {error}")
    print(report)
    checkpoint["meta"].update(source=str(args.src), source_sha256=sha256(args.src))
    save_model(args.dst, checkpoint["state_dict"], checkpoint["view"], checkpoint["arch"], checkpoint["meta"])
    print(f"wrote {args.dst} ({checkpoint['view']}, arch {checkpoint['arch']})")


def canonical(state):
    """Rename source keys to this project's names; returns (state, lines of the report)."""
    state = {k.removeprefix("module."): v for k, v in state.items()}
    out, lines, aliases = {}, [], 0
    skipped, renamed = dict.fromkeys(SKIPPED, 0), dict.fromkeys(RENAMED, 0)
    for key, value in state.items():
        prefix = next((prefix for prefix in SKIPPED if key.startswith(prefix)), None)
        if prefix:
            skipped[prefix] += 1
            continue
        match = ALIAS_RE.search(key)
        if match and match.group(1) in ALIASES:
            named = key.replace(match.group(0), f".{ALIASES[match.group(1)]}.", 1)
            if named in state:
                if state[named].shape != value.shape or not torch.equal(state[named], value):
                    lines.append(f"CONFLICT {key}: differs from {named}, alias ignored")
                aliases += 1
                continue
            key = named
        old = next((old for old in RENAMED if key.startswith(old)), None)
        if old:
            key = RENAMED[old] + key[len(old):]
            renamed[old] += 1
        out[key] = value
    lines += [f"skipped  {old}* ({n} entries): {SKIPPED[old]}" for old, n in skipped.items() if n]
    lines += [f"renamed  {old}* -> {new}* ({renamed[old]} entries)" for old, new in RENAMED.items() if renamed[old]]
    lines.append(f"dropped  {aliases} blockN.M alias entries (second names of tensors kept under their own names)")
    return out, lines


def infer_arch(state, prefix) -> dict:
    """Backbone kwargs from the first conv (channels) and the last inception stage present."""
    conv1 = state.get(f"{prefix}Conv_1a.conv1.weight")
    if conv1 is None:
        raise ValueError(f"no {prefix}Conv_1a.conv1.weight: not an S3D checkpoint in the authors' layout")
    depth = max(int(m.group(1)) for k in state if (m := re.match(re.escape(prefix) + r"Mixed_(\d)", k)))
    return {"in_channels": conv1.shape[1], "width": conv1.shape[0] / 64, "depth": depth}


def infer_view(arch, name, view=None) -> str:
    """2 input channels is flow; with 3 (RGB, or the reference's flow layout) the file name decides
    (the released names say ``rgb``, ``flow`` or ``f``, as in ``InfoNCE-ucf101-f-128-s3d``)."""
    if view:
        return view
    if arch["in_channels"] == 2:
        return "flow"
    words = {"flow" if w == "f" else w for w in re.split(r"[^a-z0-9]+", name.lower())}
    found = [v for v in VIEWS if v in words]
    if len(found) != 1:
        raise ValueError(f"cannot tell the view of {name!r} (3 input channels): pass --view rgb|flow")
    return found[0]


def convert(source, view=None, name=""):
    """Authors' checkpoint dict -> (model checkpoint dict, printable report).

    Raises ValueError when the backbone is incomplete or a shape does not match.
    """
    state, lines = canonical(source.get("state_dict", source))
    gated = sorted(k for k in state if "gating" in k.lower())
    if gated:
        raise ValueError(f"a gated S3D-G checkpoint ({len(gated)} gating entries, e.g. {gated[0]}): this project builds "
                         "the plain S3D of the released runs, and dropping the gates would change every feature; "
                         "not converted")
    moco = any(k.startswith("encoder_q.") for k in state)
    prefix = "encoder_q.0." if moco else "0."
    arch = infer_arch(state, prefix)
    view = infer_view(arch, name, view)
    head = "encoder_q.4.weight" if moco else "4.weight"
    dim = state[head].shape[0] if head in state else 128
    if moco:
        model = MoCo(arch, dim=dim, queue_size=state["queue"].shape[1] if "queue" in state else 2048)
    else:
        model = Encoder(build_backbone(arch), dim=dim)
    mapped, absent, bad = {}, [], []
    for key, value in model.state_dict().items():
        if key not in state:
            absent.append(key)
        elif state[key].shape != value.shape:
            bad.append(f"SHAPE    {key}: source {tuple(state[key].shape)}, model {tuple(value.shape)}")
        else:
            mapped[key] = state[key].to(value.dtype)
    if "queue" in mapped:  # a released queue holds real keys
        mapped["queue_filled"] = torch.tensor([mapped["queue"].shape[1]])
        absent.remove("queue_filled")
    defaults = {k: model.state_dict()[k] for k in absent if k.startswith("queue")}  # fresh queue metadata
    unknown = sorted(set(state) - set(model.state_dict()))
    lines.insert(0, f"source   {'MoCo' if moco else 'backbone-only'} state dict, {view}, arch {arch}")
    lines.append(f"mapped   {len(mapped)} of {len(model.state_dict())} model entries"
                 + (" (queue_filled set: the queue holds real keys)" if "queue" in mapped else ""))
    lines += [f"default  {k} (not in source, fresh value)" for k in defaults]
    lines += [f"absent   {k}" for k in absent if k not in defaults]
    lines += bad + [f"UNKNOWN  {k} {tuple(state[k].shape)}" for k in unknown]
    report = "\n".join(lines)
    if bad or any(k.startswith(prefix) for k in absent):
        raise ValueError(f"{report}\nnot converted: shape mismatches or backbone weights missing")
    network = ("encoder_q.", "encoder_k.") if moco else tuple(f"{i}." for i in range(10))
    changing = [k for k in unknown if k.startswith(network)]
    if changing:
        raise ValueError(f"{report}\nnot converted: {len(changing)} UNKNOWN entries inside the network (e.g. "
                         f"{changing[0]}) would be dropped, so the converted network would differ from its source")
    # Plain Python numbers only (numpy or tensor scalars would break weights_only loading).
    meta = {k: torch.as_tensor(source[k]).item() for k in META_KEYS
            if isinstance(source.get(k), (int, float, torch.Tensor)) and torch.as_tensor(source[k]).numel() == 1}
    meta.update(imported=True, unmapped=unknown, defaults=sorted(defaults), absent=sorted(set(absent) - set(defaults)))
    return {"view": view, "arch": arch, "state_dict": {**mapped, **defaults}, "meta": meta}, report
