"""Restoring images with a trained network: one :class:`Restorer` for every kind of model.

* :mod:`.restorer`    -- :class:`Restorer` (inputs, options resolved once, padding, tiling) and the
  :class:`RestorationKind` interface whose sampler it calls;
* :mod:`.algorithms`  -- the kinds: I2SB's bridge samplers, Palette, DDNM / DDNM+, prior samples;
* :mod:`.tiling`      -- reflection padding and seamless overlapping tiles;
* :mod:`.trained_network`, :mod:`.checkpoints`, :mod:`.authors` -- reading the project's runs, the authors'
  ``results/NAME/`` and guided-diffusion's ADM into a :class:`TrainedNetwork` (arguments, weights, task);
* :mod:`.loading`     -- :func:`load` / :func:`load_ddnm`: checkpoint -> restorer (:func:`load_denoiser`: -> network);
* :mod:`.folder`      -- ``i2sb-sample``: restore a folder (:mod:`.outputs`: what it writes, :mod:`.progress`);
* :mod:`.registry`, :mod:`.pretrained`, :mod:`.sharing` -- the authors' checkpoints, models shared on a mirror;
* :mod:`.export_writer` (``i2sb-export``), :mod:`.export_reader` -- inference-only model folders.

The names below are imported on first use (PEP 562): ``i2sb.restoration.registry`` (what ``i2sb-download --help``
and ``list`` read) loads without torch.
"""

from __future__ import annotations

from typing import Any

LOADING = ("RESTORATION_KINDS", "load", "load_ddnm", "load_denoiser", "restorer_for")
RESTORER = ("OptionError", "RestorationKind", "Restorer", "SamplingOptions")
__all__ = sorted(LOADING + RESTORER)


def __getattr__(name: str) -> Any:
    if name in LOADING:
        from . import loading  # lazy: see the module docstring
        return getattr(loading, name)
    if name in RESTORER:
        from . import restorer  # lazy: see the module docstring
        return getattr(restorer, name)
    raise AttributeError(f"module 'i2sb.restoration' has no attribute {name!r}")
