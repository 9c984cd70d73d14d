"""An endless, distributed, reproducible and resumable stream of collated batches.

Randomness: every sample gets its own seed, drawn per (seed, rank, epoch) and carried with its
index through the sampler. Datasets with an `item(index, generator)` method (all i2sb datasets)
draw their crops and flips from a `torch.Generator` seeded with it; for other datasets torch's
RNG is forked and seeded with it around `dataset[index]`. Hence the stream
* differs across ranks (and epochs) for the same `seed`,
* is identical for the same (seed, rank, world_size), whatever `num_workers` is,
* can be resumed exactly: `start_step=k` yields what the (k+1)-th batch onwards would have been,
  without loading the skipped samples (only their indices are skipped).
"""

from __future__ import annotations

import math
import signal
from typing import Iterator

import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from ..utils.seeds import mix_seed


_SAMPLE_SEEDS, _WORKER_SEEDS = 0, 1  # purposes, so the two seed streams never coincide
# A terminal's Ctrl-C and Slurm's --signal reach every process of the job, loader workers included; the main
# process handles them (saves at the next step), so a worker must not die of them in the middle of a batch.
STOP_SIGNALS = (signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2)


def ignore_stop_signals(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: the worker ignores ``STOP_SIGNALS`` (SIGTERM still ends it)."""
    for sig in STOP_SIGNALS:
        signal.signal(sig, signal.SIG_IGN)


class SeededSampler(Sampler):
    """Yields (index, sample_seed) pairs: this rank's `DistributedSampler` indices plus a seed each.

    `set_epoch(epoch)` reshuffles (same permutation on all ranks, disjoint shards) and redraws
    the seeds; the first `skip` pairs of the current epoch are left out (for resuming).
    """

    def __init__(self, dataset: Dataset, rank: int, world_size: int, seed: int, shuffle: bool):
        self.indices = DistributedSampler(dataset, num_replicas=world_size, rank=rank, shuffle=shuffle, seed=seed)
        self.seed, self.rank = seed, rank
        self.epoch, self.skip = 0, 0

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip
        self.indices.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.indices) - self.skip

    def __iter__(self) -> Iterator[tuple[int, int]]:
        generator = torch.Generator().manual_seed(mix_seed(self.seed, self.rank, self.epoch, _SAMPLE_SEEDS))
        seeds = torch.randint(2**62, (len(self.indices),), generator=generator).tolist()
        pairs = list(zip(self.indices, seeds))
        return iter(pairs[self.skip:])


class SeededItems(Dataset):
    """`dataset` addressed by (index, sample_seed) keys; the seed drives the item's randomness."""

    def __init__(self, dataset: Dataset):
        self.dataset = dataset

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]) -> dict:
        index, sample_seed = key
        if hasattr(self.dataset, "item"):
            return self.dataset.item(index, torch.Generator().manual_seed(sample_seed))
        with torch.random.fork_rng(devices=[]):  # leaves the caller's RNG state untouched
            torch.manual_seed(sample_seed)
            return self.dataset[index]


def infinite_loader(
    dataset: Dataset,
    batch_size: int,
    *,
    rank: int = 0,
    world_size: int = 1,
    seed: int = 0,
    num_workers: int = 0,
    pin_memory: bool = False,
    drop_last: bool = True,
    shuffle: bool = True,
    start_epoch: int = 0,
    start_step: int = 0,
) -> Iterator[dict]:
    """Endless iterator of collated batches (dicts of tensors, leading dim `batch_size`) for one rank.

    Each epoch this rank sees its 1/world_size shard of a permutation shared by all ranks
    (`DistributedSampler`, seeded with `seed`, `set_epoch` each epoch; the shard is padded by
    repetition so all ranks have equally many batches). With `drop_last` a final partial batch
    is dropped. Workers are persistent when `num_workers > 0`.

    Resuming: the stream starts at batch `start_epoch * batches_per_epoch + start_step` of the
    uninterrupted stream, so pass the number of batches this rank has already consumed as
    `start_step` (same seed, rank, world_size, batch_size and dataset) to continue exactly.
    Raises ValueError when an epoch would hold no batch (dataset shard smaller than the batch).
    """
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
    if batch_size < 1 or seed < 0 or start_epoch < 0 or start_step < 0:
        raise ValueError(f"need batch_size >= 1 and seed, start_epoch, start_step >= 0; got "
                         f"{batch_size}, {seed}, {start_epoch}, {start_step}")
    sampler = SeededSampler(dataset, rank, world_size, seed, shuffle)
    per_rank = len(sampler.indices)
    batches_per_epoch = per_rank // batch_size if drop_last else math.ceil(per_rank / batch_size)
    if batches_per_epoch == 0:
        raise ValueError(f"dataset of {len(dataset)} items gives {per_rank} per rank (world_size {world_size}), "
                         f"fewer than batch_size {batch_size} with drop_last=True")
    loader = DataLoader(
        SeededItems(dataset), batch_size=batch_size, sampler=sampler, num_workers=num_workers,
        pin_memory=pin_memory, drop_last=drop_last, persistent_workers=num_workers > 0,
        worker_init_fn=ignore_stop_signals if num_workers > 0 else None,
        generator=torch.Generator().manual_seed(mix_seed(seed, rank, 0, _WORKER_SEEDS)),  # worker base seeds
    )
    epoch, step = divmod(start_epoch * batches_per_epoch + start_step, batches_per_epoch)
    return _endless(loader, sampler, epoch, skip=step * batch_size)


def _endless(loader: DataLoader, sampler: SeededSampler, epoch: int, skip: int) -> Iterator[dict]:
    while True:
        sampler.set_epoch(epoch, skip)
        yield from loader
        epoch, skip = epoch + 1, 0
