"""The one builder of result records: the JSON of one model's (or one method's two-stream) evaluation.

Every writer (``linear-probe``, ``retrieval``, ``finetune`` and their two-stream
fusion) builds its record here, so every record has the same keys for the same
things and ``coclr ablation`` reads them all alike. Each record has the
:data:`KEYS`: ``task``, ``method``, ``view``, ``metrics`` (percent),
``checkpoints`` (file record with sha256 and training ``meta`` of each model
read; none for random init) and ``wall_s``; and the keys of :data:`FIELDS`
where they apply. docs/evaluation.md shows the schema.
"""

import time

from coclr.naming import RESULT_VIEWS

TASKS = ("linear_probe", "retrieval", "finetune")
KEYS = ("task", "method", "view", "metrics", "checkpoints", "wall_s")  # every record has these
# The keys a record may carry besides the six every record has: what each holds.
FIELDS = {
    "selection": "what was chosen on held-out training videos: the probe's lr, weight decay and epochs "
                 "(and every trial), or fine-tuning's epochs and held-out top-1 per epoch",
    "probe_epochs": "linear probe: epochs the tested probe trained (chosen on held-out training videos)",
    "chosen_epoch": "fine-tune: the epoch whose weights were tested (best held-out top-1)",
    "trained_epochs": "fine-tune: epochs trained",
    "pretraining_epochs": "retrieval: pretraining epochs of each model read (0: random init)",
    "features": "file records of the features files read",
    "inputs": "two-stream fusion: the RGB and the flow record fused, each with its probabilities file",
    "settings": "the settings the job ran with (and its seed)",
    "train_videos": "training videos of the split",
    "test_videos": "test videos scored",
    "queries": "retrieval: test videos, one query each",
    "gallery": "retrieval: training videos searched",
}


def result_record(task, method, view, metrics, checkpoints, start, **fields) -> dict:
    """One result record; ``start`` is the ``time.time()`` the job began (``wall_s``)."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if view not in RESULT_VIEWS:
        raise ValueError(f"view must be one of {RESULT_VIEWS}, got {view!r}")
    unknown = sorted(set(fields) - set(FIELDS))
    if unknown:
        raise TypeError(f"not keys of a result record: {', '.join(unknown)} (coclr/evaluation/records.py FIELDS)")
    return {"task": task, "method": method, "view": view, "metrics": metrics, **fields, "checkpoints": checkpoints,
            "wall_s": time.time() - start}
