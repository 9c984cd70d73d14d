"""Restoring images with a trained network: one :class:`Restorer` for every kind of model.

* :mod:`.restorer`    -- :class:`Restorer` (inputs, options resolved once, padding, tiling) and the
  :class:`Algorithm` interface it delegates the math to;
* :mod:`.algorithms`  -- I2SB's bridge samplers, Palette, DDNM / DDNM+, prior samples;
* :mod:`.tiling`      -- reflection padding and seamless overlapping tiles;
* :mod:`.spec`, :mod:`.checkpoints`, :mod:`.authors` -- reading the project's runs, the authors'
  ``results/NAME/`` and guided-diffusion's ADM into a network spec;
* :mod:`.loading`     -- :func:`load` / :func:`load_ddnm`: checkpoint -> restorer (:func:`load_denoiser`: -> network);
* :mod:`.folder`      -- ``i2sb-sample``: restore a folder.
"""

from .loading import ALGORITHMS, load, load_ddnm, load_denoiser, restorer_for
from .restorer import Algorithm, OptionError, Restorer, SamplingOptions

__all__ = ["ALGORITHMS", "Algorithm", "OptionError", "Restorer", "SamplingOptions", "load", "load_ddnm",
           "load_denoiser", "restorer_for"]
