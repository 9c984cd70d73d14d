"""Bridge distillation: a one-step (or K-step) student of an I2SB teacher, trained on degraded images only.

Inverse Bridge Matching Distillation (IBMD; Gushchin et al., ICML 2025, arXiv 2502.01362) on this library's
discrete bridge. The derivation is in :mod:`.objective`'s docstring and ``README.md`` beside this file.

* :mod:`.objective`       -- the math on plain tensors: bridge matching on the student's pairs
                             (:func:`aux_loss`), IBMD's generator loss (:func:`student_loss`, Theorem 3.2),
                             the weighting, the bridge between a pair;
* :mod:`.generator`       -- the student ``G(X_s, s, cond, z)``: its chain (:func:`generate`), its training
                             pairs (:func:`draw_pair`), the teacher-shaped image network with z as extra input
                             channels (:class:`BridgeGenerator`);
* :mod:`.alternate`       -- IBMD's Algorithm 1: auxiliary updates, then a generator update;
* :mod:`.linear_gaussian` -- Gaussian data and a linear degradation, where every model is closed-form;
* :mod:`.schema`, :mod:`.trainer`, :mod:`.loop`, :mod:`.validation` -- ``i2sb-distill``: its config, one rank's
                             state and step, the loop (resume, stop signals, DDP, EMA, logging), validation.

The names below are imported on first use (PEP 562): ``i2sb.distill.schema`` (what ``i2sb-distill --help``
reads) loads without torch.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_HOMES = {
    "alternate": ("AUX_STEPS", "aux_step", "frozen", "ibmd_iteration", "student_step"),
    "generator": ("BridgeGenerator", "add_input_channels", "draw_pair", "generate", "student_steps"),
    "objective": ("aux_loss", "bridge_point", "loss_weight", "student_loss"),
    "loop": ("distill",),
}
_WHERE = {name: module for module, names in _HOMES.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module 'i2sb.distill' has no attribute {name!r}")
