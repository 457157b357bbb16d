"""An epoch's samples in an order that can start in the middle: what makes a resume exact.

The sample order of an epoch is a function of (seed, epoch) and each sample's augmentation of
(seed, epoch, index), so :class:`coclr.training.trainer.Trainer` resumes an epoch by skipping the
batches it consumed, by index, and continues with the same remaining samples, bit for bit on a CPU.
Under DDP each process takes its share of the order (every ``world``-th index from its ``rank``, as
``DistributedSampler``).
"""

import random

import torch
from torch.utils.data import DataLoader, Dataset, Sampler


def item_seed(seed, epoch, index) -> int:
    return (seed * 1_000_003 + epoch) * 1_000_003 + index


class SeededItems(Dataset):
    """Each item drawn with the python and torch RNGs seeded from (seed, epoch, index).

    A sample's augmentation then depends neither on which DataLoader worker loads it
    nor on what was loaded before, so skipping the consumed part of an epoch leaves
    the rest unchanged. The caller's RNG states are restored around each item, so
    loading in the main process (workers=0) does not disturb the training step's draws.
    """

    def __init__(self, dataset, seed: int):
        self.dataset, self.seed = dataset, seed

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, key):
        epoch, index = key
        python, cpu = random.getstate(), torch.get_rng_state()
        seed = item_seed(self.seed, epoch, index)
        random.seed(seed)
        torch.default_generator.manual_seed(seed)  # CPU only: a CUDA training RNG is left alone
        try:
            return self.dataset[index]
        finally:
            random.setstate(python)
            torch.set_rng_state(cpu)


class EpochBatches(Sampler):
    """Batches of (epoch, index) keys: a permutation from a generator seeded with (seed, epoch),
    this process's share of it (every ``world``-th index from ``rank``, as DistributedSampler),
    cut into batches and started at batch ``skip`` without touching the skipped ones."""

    def __init__(self, size, batch_size, seed, rank=0, world=1, drop_last=True, shuffle=True):
        self.size, self.batch_size, self.seed = size, batch_size, seed
        self.rank, self.world, self.drop_last, self.shuffle = rank, world, drop_last, shuffle
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch, skip=0) -> None:
        self.epoch, self.skip = epoch, skip

    def _this_rank(self):
        """This process's indices of the epoch, in order."""
        if self.shuffle:
            order = torch.randperm(self.size, generator=torch.Generator().manual_seed(self.seed + self.epoch))
        else:
            order = torch.arange(self.size)
        per_process = self.size // self.world
        return order[self.rank:per_process * self.world:self.world].tolist()

    def __len__(self):
        n = self.size // self.world
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self):
        indices = self._this_rank()
        for b in range(self.skip, len(self)):
            yield [(self.epoch, i) for i in indices[b * self.batch_size:(b + 1) * self.batch_size]]


def resumable_loader(dataset, batch_size, seed, workers=0, rank=0, world=1, drop_last=True, pin_memory=False,
                     collate=None):
    """A training DataLoader whose epochs :class:`coclr.training.trainer.Trainer` can resume mid-way, exactly."""
    batches = EpochBatches(len(dataset), batch_size, seed, rank, world, drop_last)
    # Its own generator: creating the iterator draws a base seed, which must not come from the global RNG.
    return DataLoader(SeededItems(dataset, seed), batch_sampler=batches, num_workers=workers, pin_memory=pin_memory,
                      collate_fn=collate,
                      persistent_workers=workers > 0, prefetch_factor=4 if workers > 0 else None,
                      generator=torch.Generator().manual_seed(seed))


def remaining(loader, epoch, skip):
    """The batches of ``epoch`` after the first ``skip``: a resumable loader, or a list (tests)."""
    if isinstance(getattr(loader, "batch_sampler", None), EpochBatches):
        loader.batch_sampler.set_epoch(epoch, skip)
        return loader
    if isinstance(loader, (list, tuple)):
        return loader[skip:]
    raise TypeError("Trainer.fit needs a coclr.training.sampler.resumable_loader (or a list of batches) "
                    "to resume an epoch in the middle")
