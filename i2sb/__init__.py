"""i2sb: Image-to-Image Schrödinger Bridges (Liu et al., ICML 2023) for image restoration."""

__version__ = "0.1.0"


def load(ckpt, device="cpu", use_ema=True, **model_overrides):
    """A :class:`i2sb.restore.Restorer` from a run directory, checkpoint file or the authors' results/NAME/."""
    from .restore import load as _load

    return _load(ckpt, device=device, use_ema=use_ema, **model_overrides)
