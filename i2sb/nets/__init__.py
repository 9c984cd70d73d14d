"""Networks: the ADM U-Net (:mod:`.unet`, guided-diffusion's arguments and keys) and guided-diffusion's checkpoint
format (:mod:`.guided_diffusion`: state_dict checks, architecture inference, the ADM initialisation)."""
