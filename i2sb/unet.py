"""Public alias: the ADM U-Net with guided-diffusion's arguments and state_dict keys (:mod:`i2sb.nets.unet`)."""

from .nets.unet import UNet, adm256_kwargs, attention_ds, input_channels

__all__ = ["UNet", "adm256_kwargs", "attention_ds", "input_channels"]
