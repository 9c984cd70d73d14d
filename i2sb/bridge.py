"""Public alias: the I2SB bridge on plain tensors (:mod:`i2sb.core.bridge`), its samplers' types and trajectories."""

from .core.bridge import Bridge, gaussian_product_coefs, space_indices, symmetric_betas
from .core.trajectory import Trajectory
from .core.types import Predictor, StepCallback

__all__ = ["Bridge", "Predictor", "StepCallback", "Trajectory", "gaussian_product_coefs", "space_indices",
           "symmetric_betas"]
