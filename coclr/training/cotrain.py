"""``python -m coclr cotrain``: one CoCLR stage.

View A (``--view``) trains from its latest weights (``--init``); the other view's
network (``--miner``) is frozen and only mines positives: it embeds the other
view of each key clip, and the queue entries whose stored other-view embeddings
are its top-k neighbours become positives for A (MIL-NCE loss). The optimiser
waits until the queue holds only real keys, as in the reference.
"""

import logging
import math

import torch

from coclr.augment import RandomColour
from coclr.batch import to_device
from coclr.ingest import UNLABELLED
from coclr.losses import mil_nce
from coclr.mining import mine_positives, purity, purity_baseline
from coclr.models import encoder_state, load_encoder, load_model, place
from coclr.naming import other
from coclr.training import stage
from coclr.training.trainer import StepResult

log = logging.getLogger(__name__)


def add_arguments(parser) -> None:
    stage.add_arguments(parser)
    parser.add_argument("--init", required=True, help="latest checkpoint of the trained view")
    parser.add_argument("--miner", required=True, help="latest checkpoint of the other view (frozen)")


def load_miner(path, view, device):
    """The other view's query encoder, frozen: eval mode, no gradients, never updated."""
    checkpoint = load_model(path)
    if checkpoint["view"] != view:
        raise ValueError(f"--miner {path} is a {checkpoint['view']} model; this stage mines with {view}")
    return place(load_encoder(checkpoint), device).eval().requires_grad_(False)


def init_encoders(model, path, view) -> None:
    """Query and key encoders from the view's latest weights; the queue starts empty."""
    checkpoint = load_model(path)
    if checkpoint["view"] != view:
        raise ValueError(f"--init {path} is a {checkpoint['view']} model; this stage trains {view}")
    state = encoder_state(checkpoint["state_dict"])
    model.encoder_q.load_state_dict(state)
    model.encoder_k.load_state_dict(state)


def cotrain_step(model, miner, view, settings, device, generator, colour: RandomColour, labelled=True):
    """The MIL-NCE step; mining purity (a diagnostic) is measured only when the videos are ``labelled``."""
    moco = getattr(model, "module", model)
    mined_view = other(view)

    def step(batch):
        batch = to_device(batch, device, colour)
        with torch.no_grad():
            other_view = miner(batch["key"][mined_view])  # fp32 (Encoder.forward)
        out = model(batch["query"][view], batch["key"][view])
        mined = mine_positives(other_view, moco.queue_other_view, batch["group"], moco.queue_group,
                               topk=settings["topk"], drop_self=settings["self_drop"],
                               valid=moco.queue_valid(), generator=generator)
        update = moco.queue_full  # decided before this step's keys are enqueued
        value = mil_nce(out.logits, mined.positives)
        stats = {"instance_acc": (out.logits.argmax(1) == 0).float().mean().item(), "mining_purity": math.nan,
                 "mining_chance": math.nan}
        if update and labelled:  # labels serve this diagnostic only, never the loss; NaN without them
            stats["mining_purity"] = purity(mined.indices, batch["label"], moco.queue_label)
            stats["mining_chance"] = purity_baseline(batch["label"], batch["group"], moco.queue_label,
                                                     moco.queue_group, moco.queue_valid())
        moco.enqueue(out.k, batch["label"], batch["group"], other_view)
        return StepResult(value, stats, update)

    return step


def run(args) -> None:
    ctx = stage.prepare(args, views=["rgb", "flow"])
    data = stage.loader(ctx, args.seed)
    miner = load_miner(args.miner, other(args.view), ctx.device)
    model = stage.build_moco(args.view, ctx.settings, ctx.device, other_view_dim=miner.dim)
    init_encoders(model, args.init, args.view)
    generator = torch.Generator(device=ctx.device).manual_seed(args.seed + ctx.rank)
    trainer = stage.trainer(ctx, model, args, ctx.settings["cotrain"], inputs=[args.init, args.miner],
                            generators={"mining": generator})
    labelled = bool((ctx.videos["label"] != UNLABELLED).all())
    if not labelled:
        log.info("unlabelled videos: mining purity (a diagnostic that needs labels) is logged as NaN")
    colour = RandomColour.from_settings(ctx.settings["clip"])
    step = cotrain_step(trainer.model, miner, args.view, ctx.settings["cotrain"], ctx.device, generator, colour, labelled)
    history = trainer.fit(data, step, on_epoch_end=stage.monitor(ctx, model, args))
    stage.export(ctx, model, args, trainer, history, {"init": args.init, "miner": args.miner})
