"""``python -m coclr pretrain``: InfoNCE (instance discrimination) or UberNCE (label oracle).

InfoNCE initialises both views before CoCLR; UberNCE, whose positives are all
queued clips of the same class, is the supervised upper bound of the ablation.
"""

from coclr.augment import RandomColour
from coclr.batch import to_device
from coclr.ingest import require_labels
from coclr.losses import info_nce, label_positives, uber_nce
from coclr.training import stage
from coclr.training.trainer import StepResult


def add_arguments(parser) -> None:
    stage.add_arguments(parser)
    parser.add_argument("--loss", choices=["infonce", "ubernce"], default="infonce")


def contrastive_step(model, view, loss, device, colour: RandomColour):
    moco = getattr(model, "module", model)

    def step(batch):
        batch = to_device(batch, device, colour)
        out = model(batch["query"][view], batch["key"][view])
        if loss == "ubernce":
            value = uber_nce(out.logits, label_positives(batch["label"], moco.queue_label))
        else:
            value = info_nce(out.logits)
        accuracy = (out.logits.argmax(1) == 0).float().mean().item()
        moco.enqueue(out.k, batch["label"], batch["group"])
        return StepResult(value, {"instance_acc": accuracy})

    return step


def run(args) -> None:
    ctx = stage.prepare(args, views=[args.view])
    if args.loss == "ubernce":
        require_labels(ctx.videos["label"], args.manifest, "UberNCE (its positives are the clips of a class)")
    data = stage.loader(ctx, args.seed)
    model = stage.build_moco(args.view, ctx.settings, ctx.device)
    trainer = stage.trainer(ctx, model, args, ctx.settings[args.loss])
    step = contrastive_step(trainer.model, args.view, args.loss, ctx.device,
                            RandomColour.from_settings(ctx.settings["clip"]))
    history = trainer.fit(data, step, on_epoch_end=stage.monitor(ctx, model, args))
    stage.export(ctx, model, args, trainer, history, {"loss": args.loss})
