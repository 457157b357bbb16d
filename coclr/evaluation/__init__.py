"""Evaluation of the pretrained encoders: the numbers of the paper's tables.

Per model (a method and a view): ``features`` extracts one backbone feature per
video, which ``linear_probe`` and ``retrieval`` reuse; ``finetune`` trains the
whole network from the checkpoint. Two-stream results combine the RGB and flow
models of one method. ``ablation`` collects the per-model results into the
summary files and the ablation table. docs/evaluation.md walks through it.
"""
