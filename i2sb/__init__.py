"""i2sb: Image-to-Image Schrödinger Bridges (Liu et al., ICML 2023) for image restoration.

>>> import i2sb
>>> restorer = i2sb.load("runs/demo/jpeg5")      # a run, the authors' results/NAME/, an exported model folder
>>> restored = restorer.restore(x1, nfe=1)       # x1: (B, 3, H, W) degraded images in [-1, 1]

``i2sb.load`` (:func:`i2sb.restoration.loading.load`) is imported on first use, so ``import i2sb.core.bridge``
stays light. The package is layered; each layer imports only the ones listed before it (``tests/test_layers.py``
checks):

``utils`` -> ``core``, ``nets``, ``degrade``, ``data``, ``evaluation`` -> ``baselines`` -> ``config`` ->
``methods`` -> ``restoration`` -> ``training`` -> ``cli`` (and the public aliases ``i2sb.bridge``,
``i2sb.unet``, ``i2sb.train``, ``i2sb.load``).
"""

__version__ = "0.1.0"
__all__ = ["load", "__version__"]  # what `from i2sb import *`, dir(i2sb) and help(i2sb) show


def __getattr__(name: str):
    if name == "load":  # lazy: `import i2sb.core.bridge` must not import every layer above it
        from .restoration.loading import load

        return load
    raise AttributeError(f"module 'i2sb' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
