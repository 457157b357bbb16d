"""MoCo (He et al., 2020) with a queue that remembers more than keys.

Each queued key also keeps its label (UberNCE), its source-group id and the
other view's embedding of the same clip (CoCLR mining). One training step::

    out = model(im_q, im_k)                  # momentum update, keys, logits
    loss = loss_fn(out.logits, positives)    # positives built from the queue_* buffers
    loss.backward(); optimiser.step()
    model.enqueue(out.k, label, group, other_view)   # after the loss, as in the reference

Shuffle-BN keeps a query and its positive key out of the same batch-norm batch,
so batch statistics cannot give the positive away. Across processes (DDP) keys
are shuffled over processes as in the reference. Within a process the batch is
split into ``bn_splits`` chunks that act as virtual devices: every chunk is
normalised on its own, for queries in order and for keys after a random
permutation. Two chunks in one process reproduce the reference's 2-GPU runs,
running statistics included: only the first chunk updates them, as only rank 0's
update survives DDP's buffer broadcast.
"""

import contextlib
import copy
from typing import NamedTuple

import torch
import torch.distributed as dist
from torch import nn

from coclr.distributed import gather, world_size
from coclr.models.encoder import Encoder
from coclr.models.s3d import build_backbone


@contextlib.contextmanager
def running_stats_frozen(module):
    """Normalisation layers that keep their running statistics as they are (training forwards are unchanged)."""
    norms = [m for m in module.modules() if getattr(m, "track_running_stats", False)]
    for m in norms:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in norms:
            m.track_running_stats = True


class Contrast(NamedTuple):
    logits: torch.Tensor  # (B, 1+K), already divided by the temperature; column 0 = positive key
    q: torch.Tensor  # (B, dim) queries, with gradient
    k: torch.Tensor  # (B, dim) keys, no gradient: what to enqueue


# Buffers renamed since they were first saved: a state dict with the old name (a model checkpoint or run state
# written before the change) loads under the new one.
RENAMED_BUFFERS = {"queue_second": "queue_other_view"}


def _renamed_buffers(module, state_dict, prefix, *args) -> None:
    """A load_state_dict pre-hook: a state dict's old buffer names (``RENAMED_BUFFERS``) under today's."""
    for old, new in RENAMED_BUFFERS.items():
        if prefix + old in state_dict and prefix + new not in state_dict:
            state_dict[prefix + new] = state_dict.pop(prefix + old)


class MoCo(nn.Module):
    def __init__(self, arch: dict, dim=128, queue_size=2048, momentum=0.999, temperature=0.07,
                 other_view_dim=None, bn_splits=None):
        """``other_view_dim``: width of the other view's embeddings stored beside the keys (CoCLR's miner;
        default ``dim``). ``bn_splits``: BN groups per process; default 2 alone, 1 under DDP (as the reference)."""
        super().__init__()
        self.momentum, self.temperature, self.bn_splits = momentum, temperature, bn_splits
        self.encoder_q = Encoder(build_backbone(arch), dim)
        self.encoder_k = copy.deepcopy(self.encoder_q).requires_grad_(False)
        self.register_buffer("queue", nn.functional.normalize(torch.randn(dim, queue_size), dim=0))
        self.register_buffer("queue_ptr", torch.zeros(1, dtype=torch.long))
        self.register_buffer("queue_filled", torch.zeros(1, dtype=torch.long))  # real keys held, <= K
        self.register_buffer("queue_label", torch.full((queue_size,), -1, dtype=torch.long))
        self.register_buffer("queue_group", torch.full((queue_size,), -1, dtype=torch.long))
        self.register_buffer("queue_other_view", torch.zeros(other_view_dim or dim, queue_size))
        self.register_load_state_dict_pre_hook(_renamed_buffers)

    @property
    def queue_full(self) -> bool:
        """True once every slot holds a real key (the reference mines only from then on)."""
        return int(self.queue_filled) == self.queue.shape[1]

    def queue_valid(self):
        """(K,) bool: slots holding real keys (they fill from index 0 before the pointer wraps)."""
        return torch.arange(self.queue.shape[1], device=self.queue.device) < self.queue_filled

    def forward(self, im_q, im_k) -> Contrast:
        q = self._split_bn(self.encoder_q, im_q)
        with torch.no_grad():
            for p_q, p_k in zip(self.encoder_q.parameters(), self.encoder_k.parameters()):
                p_k.lerp_(p_q.detach(), 1 - self.momentum)
            k = self._shuffled_keys(im_k)
        # fp32 under autocast (q and k are fp32, Encoder.forward): bf16 would move the logits by ~0.02.
        # The queue is edited in place by enqueue(); the graph keeps this step's copy.
        with torch.autocast(q.device.type, enabled=False):
            logits = torch.cat([(q * k).sum(1, keepdim=True), q @ self.queue.clone()], dim=1)
        return Contrast(logits / self.temperature, q, k)

    def _split_bn(self, encoder, x):
        """Each chunk normalised by its own batch statistics; the running statistics updated by the
        first chunk only: DDP broadcasts rank 0's buffers before every forward, so a multi-process
        run keeps one update a step, from rank 0's chunk."""
        first, *rest = x.chunk(self.bn_splits or (1 if world_size() > 1 else 2))
        out = [encoder(first)]
        with running_stats_frozen(encoder):
            out += [encoder(chunk) for chunk in rest]
        return torch.cat(out)

    def _shuffled_keys(self, im_k):
        """Keys computed on a shuffled batch (across processes under DDP), returned in input order."""
        world, n = world_size(), im_k.shape[0]
        if world == 1:
            perm = torch.randperm(n, device=im_k.device)
            k = torch.empty(n, self.encoder_k.dim, device=im_k.device, dtype=self.queue.dtype)
            k[perm] = self._split_bn(self.encoder_k, im_k[perm]).to(k.dtype)
            return k
        perm = torch.randperm(n * world, device=im_k.device)
        dist.broadcast(perm, src=0)
        mine = perm.view(world, n)[dist.get_rank()]
        k_all = torch.empty(n * world, self.encoder_k.dim, device=im_k.device, dtype=self.queue.dtype)
        k_all[perm] = gather(self._split_bn(self.encoder_k, gather(im_k)[mine]).to(k_all.dtype))
        return k_all.view(world, n, -1)[dist.get_rank()]

    @torch.no_grad()
    def enqueue(self, k, label=None, group=None, other_view=None):
        """Push this step's keys (from all processes) and their metadata; -1 / 0 where absent."""
        k = gather(k)
        n, size = k.shape[0], self.queue.shape[1]
        if n > size:
            raise ValueError(f"{n} keys per step do not fit a queue of {size}")
        idx = (self.queue_ptr + torch.arange(n, device=k.device)) % size
        self.queue[:, idx] = k.T.to(self.queue.dtype)
        # Metadata may come from the data loader on the CPU; NCCL gathers device tensors only.
        self.queue_label[idx] = gather(label.to(k.device)) if label is not None else -1
        self.queue_group[idx] = gather(group.to(k.device)) if group is not None else -1
        if other_view is not None:
            self.queue_other_view[:, idx] = gather(other_view.to(k.device)).T.to(self.queue.dtype)
        else:
            self.queue_other_view[:, idx] = 0.0
        self.queue_ptr[0] = (self.queue_ptr[0] + n) % size
        self.queue_filled[0] = min(int(self.queue_filled) + n, size)
