"""i2sb: Image-to-Image Schrödinger Bridges (Liu et al., ICML 2023) for image restoration.

The package is layered; each layer imports only the ones listed before it (``tests/test_layers.py`` checks):

``utils`` -> ``core``, ``nets``, ``degrade``, ``data``, ``evaluation`` -> ``baselines`` -> ``config`` ->
``methods`` -> ``restoration`` -> ``training`` -> ``cli`` (and the public aliases ``i2sb.bridge``,
``i2sb.unet``, ``i2sb.train``, ``i2sb.load``).
"""

__version__ = "0.1.0"


def __getattr__(name: str):
    if name == "load":  # lazy: `import i2sb.core.bridge` must not import every layer above it
        from .restoration.loading import load

        return load
    raise AttributeError(f"module 'i2sb' has no attribute {name!r}")
