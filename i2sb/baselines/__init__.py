"""The I2SB paper's baselines, on the same networks, degradations and trainer as I2SB.

* an unconditional DDPM prior (``i2sb-train method=ddpm``) or guided-diffusion's unconditional ADM
  (:func:`load_adm_prior`), used zero-shot by **DDNM / DDNM+** (:mod:`i2sb.baselines.ddnm`,
  ``i2sb-sample method=ddnm prior=... task=...``);
* **Palette**-style conditional diffusion from Gaussian noise (``i2sb-train method=palette``,
  :mod:`i2sb.baselines.palette`).

The Gaussian diffusion itself (schedule, DDPM and DDIM-η steps) is :mod:`i2sb.diffusion`.
"""

from .ddnm import DDNMOptions, ddnm_sample, measurement, network_calls, travel_schedule
from .networks import EpsDenoiser, load_adm_prior, make_eps_predictor
from .palette import palette_sample
from .restorers import DDNMRestorer, PaletteRestorer, load_ddnm, load_prior
from .spectral import Spectrum, spectrum

__all__ = [
    "DDNMOptions", "DDNMRestorer", "EpsDenoiser", "PaletteRestorer", "Spectrum", "ddnm_sample", "load_adm_prior",
    "load_ddnm", "load_prior", "make_eps_predictor", "measurement", "network_calls", "palette_sample", "spectrum",
    "travel_schedule",
]
