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
* :mod:`.linear_gaussian` -- Gaussian data and a linear degradation, where every model is closed-form.
"""

from .alternate import AUX_STEPS, aux_step, frozen, ibmd_iteration, student_step
from .generator import BridgeGenerator, add_input_channels, draw_pair, generate, student_steps
from .objective import aux_loss, bridge_point, loss_weight, student_loss

__all__ = [
    "AUX_STEPS", "BridgeGenerator", "add_input_channels", "aux_loss", "aux_step", "bridge_point",
    "draw_pair", "frozen", "generate", "ibmd_iteration", "loss_weight", "student_loss", "student_step",
    "student_steps",
]
