"""Exponential moving average of model parameters, numerically as ``torch_ema`` (used by the authors)."""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn


CHUNK_BYTES = 64 * 2**20  # the update's temporary (s - p) is at most this large (or one parameter)


class EMA:
    """A frozen copy of ``model`` whose parameters track ``s <- s - (1 - d) (s - p)`` after each step.

    With ``warmup`` the decay at the n-th update is ``min(decay, (1 + n) / (10 + n))`` (torch_ema's
    ``use_num_updates=True``, the authors' setting). ``self.module`` is ready for evaluation at any
    time; buffers are copied, not averaged (the ADM U-Net has none). The update runs over groups of
    parameters of at most ``chunk_bytes`` (None: all at once), so its temporary is one group's size,
    not the model's (2.2 GB for ADM-256); the values are the same either way.
    """

    def __init__(self, model: nn.Module, decay: float = 0.99, warmup: bool = True,
                 chunk_bytes: int | None = CHUNK_BYTES):
        if not 0.0 <= decay < 1.0:
            raise ValueError(f"EMA decay must be in [0, 1), got {decay}")
        self.decay = decay
        self.warmup = warmup
        self.chunk_bytes = chunk_bytes
        self.num_updates = 0
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    def current_decay(self) -> float:
        n = self.num_updates
        return min(self.decay, (1 + n) / (10 + n)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, model: nn.Module, skip: Tensor | None = None) -> None:
        """One EMA step towards ``model``; ``skip`` (0-d bool tensor) turns it into a no-op without a sync."""
        self.num_updates += 1
        shadow = list(self.module.parameters())
        params = [p.detach() for p in model.parameters()]
        weight = 1.0 - self.current_decay()
        if skip is not None:
            weight = (~skip).to(shadow[0].dtype) * weight
        for group in chunks(shadow, self.chunk_bytes):
            diffs = torch._foreach_sub(shadow[group], params[group])  # torch_ema's formula, in this order
            torch._foreach_mul_(diffs, weight)
            torch._foreach_sub_(shadow[group], diffs)
        for own, src in zip(self.module.buffers(), model.buffers()):
            own.copy_(src)

    def state_dict(self) -> dict:
        """``{"decay", "num_updates", "warmup", "state_dict"}`` with the averaged model's state_dict."""
        return {
            "decay": self.decay,
            "num_updates": self.num_updates,
            "warmup": self.warmup,
            "state_dict": self.module.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state["state_dict"], strict=True)
        self.decay, self.num_updates, self.warmup = state["decay"], int(state["num_updates"]), bool(state["warmup"])


def chunks(tensors: list[Tensor], max_bytes: int | None) -> list[slice]:
    """Consecutive groups of ``tensors`` of at most ``max_bytes`` together (a larger tensor alone); one group
    for None."""
    if max_bytes is None:
        return [slice(0, len(tensors))]
    groups, start, size = [], 0, 0
    for i, t in enumerate(tensors):
        nbytes = t.numel() * t.element_size()
        if i > start and size + nbytes > max_bytes:
            groups.append(slice(start, i))
            start, size = i, 0
        size += nbytes
    if start < len(tensors):
        groups.append(slice(start, len(tensors)))
    return groups
