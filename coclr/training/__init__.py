"""Training: the pretraining and CoCLR stages, and the resumable trainer they run in.

``pretrain`` and ``cotrain`` are the two training commands; each supplies its
loss step and shares the rest (arguments, data, the MoCo model, the export) from
``stage``. ``trainer`` runs a step function with checkpoints, exact resume and
preemption; fine-tuning (:mod:`coclr.evaluation.finetune`) runs in it as well.
The method itself stays in :mod:`coclr.moco`, :mod:`coclr.losses` and :mod:`coclr.mining`.
"""
