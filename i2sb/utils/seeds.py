"""The one seed mixer: independent random streams named by tuples of integers (seed, rank, step, ...)."""

from __future__ import annotations

import numpy as np
import torch


def mix_seed(*words: int) -> int:
    """A well-mixed 63-bit seed from non-negative integers (numpy's ``SeedSequence`` hash)."""
    return int(np.random.SeedSequence(list(words)).generate_state(1, np.uint64)[0] >> np.uint64(1))


def seeded_generator(*words: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with :func:`mix_seed` of ``words``."""
    return torch.Generator(device=device).manual_seed(mix_seed(*words))
