"""i2sb: Image-to-Image Schrödinger Bridges (Liu et al., ICML 2023) for image restoration."""

__version__ = "0.1.0"
