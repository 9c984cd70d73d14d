"""The I2SB paper's baselines as math on plain tensors (the networks are arguments, as in :mod:`i2sb.core`).

* :mod:`.gaussian` -- Gaussian diffusion (DDPM / DDIM-η on respaced steps, ADM's linear schedule);
* :mod:`.eps`      -- the ε-denoiser (ADM time input, optional conditioning, x0 by Ho Eq. 15);
* :mod:`.ddnm`     -- **DDNM / DDNM+**, zero-shot restoration with an unconditional prior and the task's operator;
* :mod:`.spectral` -- the operators' spectra for DDNM+'s noise-aware scaling;
* :mod:`.palette`  -- **Palette**-style conditional sampling from Gaussian noise.

Training them is :mod:`i2sb.methods` (``i2sb-train method=ddpm|palette``); restoring with them goes through the
same :class:`i2sb.restoration.Restorer` as I2SB (``i2sb.load``, ``i2sb-sample``).
"""

from .ddnm import DDNMOptions, ddnm_sample, measurement, network_calls, travel_schedule
from .eps import EpsDenoiser
from .gaussian import GaussianDiffusion, adm_linear_betas
from .palette import palette_sample
from .spectral import Spectrum, spectrum

__all__ = [
    "DDNMOptions", "EpsDenoiser", "GaussianDiffusion", "Spectrum", "adm_linear_betas", "ddnm_sample",
    "measurement", "network_calls", "palette_sample", "spectrum", "travel_schedule",
]
