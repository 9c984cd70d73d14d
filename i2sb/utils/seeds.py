"""The one seed mixer: independent random streams named by tuples of integers (seed, rank, step, ...)."""

from __future__ import annotations

import hashlib

import numpy as np
import torch


def mix_seed(*words: int) -> int:
    """A well-mixed 63-bit seed from non-negative integers (numpy's ``SeedSequence`` hash)."""
    return int(np.random.SeedSequence(list(words)).generate_state(1, np.uint64)[0] >> np.uint64(1))


def seeded_generator(*words: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with :func:`mix_seed` of ``words``."""
    return torch.Generator(device=device).manual_seed(mix_seed(*words))


def name_hash(name: str) -> int:
    """A stable 63-bit integer for a name (SHA-256; Python's ``hash`` of a string changes between runs)."""
    return int.from_bytes(hashlib.sha256(name.encode("utf-8")).digest()[:8], "big") >> 1


def image_generator(seed: int, name: str, sample: int = 0, device: torch.device | str = "cpu") -> torch.Generator:
    """The generator of one image's restoration, named by (``seed``, the image's relative path ``name``, the
    sample index): the image gets the same draws alone, in a folder or in any batch."""
    return seeded_generator(seed, name_hash(name), sample, device=device)
