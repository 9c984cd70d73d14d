"""The ADM U-Net (Dhariwal & Nichol, 2021), written compactly.

Constructor arguments, their meaning and every ``state_dict`` key and shape are those of guided-diffusion's
``UNetModel`` (``input_blocks`` / ``middle_block`` / ``output_blocks`` / ``out``, ``time_embed``,
``label_emb``), so an ADM or I2SB checkpoint loads with ``strict=True`` and gives the same outputs.
Differences from guided-diffusion, none of which changes the numbers in float32:

- attention runs through ``F.scaled_dot_product_attention`` (their math: softmax(q k^T / sqrt(ch)) v);
- gradient checkpointing is ``torch.utils.checkpoint`` (non-reentrant), for attention too only when
  ``use_checkpoint=True`` (guided-diffusion always checkpoints attention blocks);
- the torso runs in the dtype of its convolution weights (float16 after ``convert_to_fp16()``),
  so ``use_fp16`` is kept for signature compatibility only; mixed precision is best done with autocast.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

_CONV = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}
_AVG_POOL = {1: nn.AvgPool1d, 2: nn.AvgPool2d, 3: nn.AvgPool3d}


def conv_nd(dims: int, *args, **kwargs) -> nn.Module:
    """A 1-D, 2-D or 3-D convolution (``nn.Conv{dims}d``)."""
    if dims not in _CONV:
        raise ValueError(f"dims must be 1, 2 or 3, got {dims}")
    return _CONV[dims](*args, **kwargs)


def zero_module(module: nn.Module) -> nn.Module:
    """Zero every parameter of ``module`` in place and return it (ADM's zero-initialised output layers)."""
    for p in module.parameters():
        p.detach().zero_()
    return module


def _resample_factor(dims: int) -> int | tuple[int, int, int]:
    """Up/down-sampling factor: 2 per axis, or only over the inner two axes of 3-D signals (as ADM)."""
    return (1, 2, 2) if dims == 3 else 2


def timestep_embedding(timesteps: torch.Tensor, dim: int, max_period: float = 10000.0) -> torch.Tensor:
    """Sinusoidal embedding of (possibly fractional) timesteps, ADM's ``timestep_embedding``.

    Frequencies exp(-log(max_period) * i / half), i < half = dim // 2; output [cos, sin] (+ a zero
    column when ``dim`` is odd). timesteps: (B,) any real dtype -> (B, dim) float32.
    """
    half = dim // 2
    arange = torch.arange(half, dtype=torch.float32, device=timesteps.device)
    freqs = torch.exp(-math.log(max_period) * arange / half)
    args = timesteps[:, None].float() * freqs[None]
    embedding = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
    return F.pad(embedding, (0, dim % 2))


def attention_ds(image_size: int, resolutions: str | Iterable[int]) -> tuple[int, ...]:
    """Resolutions ("32,16,8" or ints) -> down-sampling factors ``image_size // res`` (script_util's rule)."""
    items = resolutions.split(",") if isinstance(resolutions, str) else resolutions
    values = [int(r) for r in items]
    for res in values:
        if res <= 0 or image_size % res:
            raise ValueError(f"attention resolution {res} does not divide image_size {image_size}")
    return tuple(image_size // res for res in values)


class GroupNorm32(nn.GroupNorm):
    """GroupNorm with 32 groups computed in float32 whatever the input dtype; returns the input dtype."""

    def __init__(self, channels: int):
        super().__init__(32, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, ...) -> (B, C, ...) in x.dtype."""
        weight, bias = self.weight.float(), self.bias.float()
        if x.dtype == torch.bfloat16 and x.device.type == "cpu":
            # CPU's mixed-type kernel accumulates the statistics in float32 itself: same result, no copies
            return F.group_norm(x, self.num_groups, weight, bias, self.eps)
        return F.group_norm(x.float(), self.num_groups, weight, bias, self.eps).to(x.dtype)


def upsample_nearest(x: torch.Tensor, factor: int | tuple[int, int, int]) -> torch.Tensor:
    """Nearest-neighbour up-sampling, exactly ``F.interpolate(x, scale_factor=factor, mode="nearest")``.

    Without autograd (restoration), 4-D x (B, C, H, W) -> (B, C, 2H, 2W), contiguous or channels_last
    (kept), is broadcast to 2x2 blocks by one strided copy: 2.5-4x faster than the interpolate kernel on
    CPU. With autograd it is ``F.interpolate``, whose backward kernel is ~8x faster than summing the blocks.
    """
    if x.dim() != 4 or factor != 2 or (torch.is_grad_enabled() and x.requires_grad):
        return F.interpolate(x, scale_factor=factor, mode="nearest")
    b, c, h, w = x.shape
    if x.is_contiguous():
        return x[:, :, :, None, :, None].expand(b, c, h, 2, w, 2).reshape(b, c, 2 * h, 2 * w)
    if x.is_contiguous(memory_format=torch.channels_last):
        y = x.permute(0, 2, 3, 1)  # (B, H, W, C), contiguous
        y = y[:, :, None, :, None, :].expand(b, h, 2, w, 2, c).reshape(b, 2 * h, 2 * w, c)
        return y.permute(0, 3, 1, 2)
    return F.interpolate(x, scale_factor=factor, mode="nearest")


class Upsample(nn.Module):
    """Nearest-neighbour 2x up-sampling, then an optional 3x3 convolution (key ``conv``)."""

    def __init__(self, channels: int, use_conv: bool, dims: int = 2):
        super().__init__()
        self.factor = _resample_factor(dims)
        self.conv = conv_nd(dims, channels, channels, 3, padding=1) if use_conv else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) -> (B, C, 2H, 2W)."""
        return self.conv(upsample_nearest(x, self.factor))


class Downsample(nn.Module):
    """2x down-sampling by a strided 3x3 convolution or by average pooling (key ``op``)."""

    def __init__(self, channels: int, use_conv: bool, dims: int = 2):
        super().__init__()
        factor = _resample_factor(dims)
        if use_conv:
            self.op = conv_nd(dims, channels, channels, 3, stride=factor, padding=1)
        else:
            self.op = _AVG_POOL[dims](kernel_size=factor, stride=factor)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) -> (B, C, H/2, W/2)."""
        return self.op(x)


class ResBlock(nn.Module):
    """ADM residual block conditioned on the time embedding, optionally resampling (``up``/``down``).

    Keys: ``in_layers`` (norm, SiLU, conv), ``emb_layers`` (SiLU, linear), ``out_layers``
    (norm, SiLU, dropout, zero-initialised conv), ``skip_connection`` (1x1 conv when channels change).
    """

    def __init__(self, channels: int, emb_channels: int, dropout: float, out_channels: int | None = None,
                 use_scale_shift_norm: bool = False, dims: int = 2, use_checkpoint: bool = False,
                 up: bool = False, down: bool = False):
        super().__init__()
        out_channels = out_channels or channels
        self.use_scale_shift_norm = use_scale_shift_norm
        self.use_checkpoint = use_checkpoint
        self.in_layers = nn.Sequential(
            GroupNorm32(channels), nn.SiLU(), conv_nd(dims, channels, out_channels, 3, padding=1))
        resample = Upsample if up else Downsample if down else None
        self.resample = resample(channels, False, dims) if resample else nn.Identity()
        emb_out = 2 * out_channels if use_scale_shift_norm else out_channels
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_channels, emb_out))
        self.out_layers = nn.Sequential(
            GroupNorm32(out_channels), nn.SiLU(), nn.Dropout(p=dropout),
            zero_module(conv_nd(dims, out_channels, out_channels, 3, padding=1)))
        self.skip_connection = (nn.Identity() if out_channels == channels
                                else conv_nd(dims, channels, out_channels, 1))

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W), emb: (B, E) -> (B, out_channels, H', W') with H' = H, 2H or H/2."""
        if self.use_checkpoint and torch.is_grad_enabled():
            return checkpoint(self._forward, x, emb, use_reentrant=False)
        return self._forward(x, emb)

    def _forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.in_layers[:-1](x)
        h = self.in_layers[-1](self.resample(h))  # ADM resamples between the activation and the conv
        x = self.resample(x)
        emb_out = self.emb_layers(emb).to(h.dtype)
        emb_out = emb_out[(...,) + (None,) * (h.ndim - 2)]
        if self.use_scale_shift_norm:  # FiLM: norm(h) * (1 + scale) + shift
            scale, shift = emb_out.chunk(2, dim=1)
            h = self.out_layers[1:](self.out_layers[0](h) * (1 + scale) + shift)
        else:
            h = self.out_layers(h + emb_out)
        return self.skip_connection(x) + h


class AttentionBlock(nn.Module):
    """Multi-head self-attention over all spatial positions, with a residual connection.

    Heads: ``num_heads``, or ``channels // num_head_channels`` when ``num_head_channels != -1``.
    ``qkv`` channel layout: heads first then (q, k, v) (``QKVAttentionLegacy``), or (q, k, v) first then
    heads when ``use_new_attention_order`` (``QKVAttention``). Keys: ``norm``, ``qkv``, ``proj_out``.
    """

    def __init__(self, channels: int, num_heads: int = 1, num_head_channels: int = -1,
                 use_checkpoint: bool = False, use_new_attention_order: bool = False):
        super().__init__()
        if num_head_channels != -1:
            if channels % num_head_channels:
                raise ValueError(f"channels {channels} not divisible by num_head_channels {num_head_channels}")
            num_heads = channels // num_head_channels
        if num_heads <= 0 or channels % num_heads:
            raise ValueError(f"channels {channels} not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.use_checkpoint = use_checkpoint
        self.use_new_attention_order = use_new_attention_order
        self.norm = GroupNorm32(channels)
        self.qkv = nn.Conv1d(channels, 3 * channels, 1)
        self.proj_out = zero_module(nn.Conv1d(channels, channels, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W) -> (B, C, H, W)."""
        if self.use_checkpoint and torch.is_grad_enabled():
            return checkpoint(self._forward, x, use_reentrant=False)
        return self._forward(x)

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, *spatial = x.shape
        x = x.reshape(b, c, -1)
        h = self.proj_out(self.attend(self.qkv(self.norm(x))))
        return (x + h).reshape(b, c, *spatial)

    def attend(self, qkv: torch.Tensor) -> torch.Tensor:
        """qkv: (B, 3 * heads * ch, T) -> (B, heads * ch, T), softmax(q^T k / sqrt(ch)) applied to v.

        ADM scales q and k by ch^(-1/4) each; SDPA's default scale 1/sqrt(ch) is the same product.
        """
        b, width, length = qkv.shape
        heads = self.num_heads
        ch = width // (3 * heads)
        layout = (b, 3, heads, ch, length) if self.use_new_attention_order else (b, heads, 3, ch, length)
        q, k, v = qkv.reshape(layout).transpose(-1, -2).unbind(1 if self.use_new_attention_order else 2)
        # (B, heads, T, ch) each. Contiguous inputs let SDPA take its fused kernel; on strided ones the CPU
        # falls back to the math path, ~5x slower at T=256 (scripts/bench.py).
        out = F.scaled_dot_product_attention(q.contiguous(), k.contiguous(), v.contiguous())
        return out.transpose(-1, -2).reshape(b, heads * ch, length)


class EmbedSequential(nn.Sequential):
    """``nn.Sequential`` whose ``ResBlock`` children also receive the time embedding."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """x: (B, C, H, W), emb: (B, E) -> the last child's output."""
        for layer in self:
            x = layer(x, emb) if isinstance(layer, ResBlock) else layer(x)
        return x


class UNet(nn.Module):
    """ADM U-Net with guided-diffusion ``UNetModel``'s arguments and state_dict layout.

    Args:
        image_size: nominal input size (kept for configs; any size divisible by 2**(levels-1) works).
        in_channels: input channels (6 for I2SB's x1-conditioned variant: cat([xt, x1])).
        model_channels: base width; time embedding width is 4 * model_channels.
        out_channels: output channels.
        num_res_blocks: residual blocks per level.
        attention_resolutions: down-sampling factors (ds) with attention; see ``attention_ds``.
        dropout: dropout in every residual block.
        channel_mult: width multiplier per level.
        conv_resample: learned convolutions (True) or nearest / average pooling (False) to resample.
        dims: 1, 2 or 3 spatial dimensions.
        num_classes: number of classes for a class-conditional model, else None.
        use_checkpoint: gradient checkpointing of residual and attention blocks.
        use_fp16: accepted for compatibility; see ``convert_to_fp16``.
        num_heads: attention heads (when ``num_head_channels == -1``).
        num_head_channels: fixed channels per head (overrides ``num_heads``), or -1.
        num_heads_upsample: heads in the decoder when ``num_head_channels == -1`` (-1: ``num_heads``).
        use_scale_shift_norm: FiLM-style time conditioning in residual blocks.
        resblock_updown: residual blocks (instead of ``Downsample``/``Upsample``) between levels.
        use_new_attention_order: split q, k, v before heads (``QKVAttention``) instead of after.
    """

    def __init__(self, image_size: int, in_channels: int, model_channels: int, out_channels: int,
                 num_res_blocks: int, attention_resolutions: Iterable[int], dropout: float = 0.0,
                 channel_mult: Sequence[float] = (1, 2, 4, 8), conv_resample: bool = True, dims: int = 2,
                 num_classes: int | None = None, use_checkpoint: bool = False, use_fp16: bool = False,
                 num_heads: int = 1, num_head_channels: int = -1, num_heads_upsample: int = -1,
                 use_scale_shift_norm: bool = False, resblock_updown: bool = False,
                 use_new_attention_order: bool = False):
        super().__init__()
        if dims not in _CONV:
            raise ValueError(f"dims must be 1, 2 or 3, got {dims}")
        attention_resolutions = tuple(attention_resolutions)
        self.config = dict(
            image_size=image_size, in_channels=in_channels, model_channels=model_channels,
            out_channels=out_channels, num_res_blocks=num_res_blocks,
            attention_resolutions=attention_resolutions, dropout=dropout, channel_mult=tuple(channel_mult),
            conv_resample=conv_resample, dims=dims, num_classes=num_classes, use_checkpoint=use_checkpoint,
            use_fp16=use_fp16, num_heads=num_heads, num_head_channels=num_head_channels,
            num_heads_upsample=num_heads_upsample, use_scale_shift_norm=use_scale_shift_norm,
            resblock_updown=resblock_updown, use_new_attention_order=use_new_attention_order)
        self.image_size, self.in_channels, self.out_channels = image_size, in_channels, out_channels
        self.model_channels, self.num_classes = model_channels, num_classes
        emb_dim = 4 * model_channels
        res = partial(ResBlock, emb_channels=emb_dim, dropout=dropout, dims=dims,
                      use_checkpoint=use_checkpoint, use_scale_shift_norm=use_scale_shift_norm)
        attn = partial(AttentionBlock, num_head_channels=num_head_channels, use_checkpoint=use_checkpoint,
                       use_new_attention_order=use_new_attention_order)
        heads_up = num_heads if num_heads_upsample == -1 else num_heads_upsample

        self.time_embed = nn.Sequential(nn.Linear(model_channels, emb_dim), nn.SiLU(), nn.Linear(emb_dim, emb_dim))
        if num_classes is not None:
            self.label_emb = nn.Embedding(num_classes, emb_dim)

        ch = input_ch = int(channel_mult[0] * model_channels)
        self.input_blocks = nn.ModuleList([EmbedSequential(conv_nd(dims, in_channels, ch, 3, padding=1))])
        skip_chans, ds = [ch], 1
        for level, mult in enumerate(channel_mult):  # encoder
            for _ in range(num_res_blocks):
                layers = [res(ch, out_channels=int(mult * model_channels))]
                ch = int(mult * model_channels)
                if ds in attention_resolutions:
                    layers.append(attn(ch, num_heads=num_heads))
                self.input_blocks.append(EmbedSequential(*layers))
                skip_chans.append(ch)
            if level != len(channel_mult) - 1:
                down = res(ch, down=True) if resblock_updown else Downsample(ch, conv_resample, dims)
                self.input_blocks.append(EmbedSequential(down))
                skip_chans.append(ch)
                ds *= 2

        self.middle_block = EmbedSequential(res(ch), attn(ch, num_heads=num_heads), res(ch))

        self.output_blocks = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):  # decoder
            for i in range(num_res_blocks + 1):
                layers = [res(ch + skip_chans.pop(), out_channels=int(mult * model_channels))]
                ch = int(mult * model_channels)
                if ds in attention_resolutions:
                    layers.append(attn(ch, num_heads=heads_up))
                if level and i == num_res_blocks:
                    layers.append(res(ch, up=True) if resblock_updown else Upsample(ch, conv_resample, dims))
                    ds //= 2
                self.output_blocks.append(EmbedSequential(*layers))

        self.out = nn.Sequential(GroupNorm32(ch), nn.SiLU(),
                                 zero_module(conv_nd(dims, input_ch, out_channels, 3, padding=1)))

    @property
    def torso_dtype(self) -> torch.dtype:
        """dtype of the encoder/middle/decoder convolutions (float16 after ``convert_to_fp16``)."""
        return self.input_blocks[0][0].weight.dtype

    def _convert_torso(self, dtype: torch.dtype) -> None:
        for blocks in (self.input_blocks, self.middle_block, self.output_blocks):
            for module in blocks.modules():
                if isinstance(module, tuple(_CONV.values())):
                    module.to(dtype)

    def convert_to_fp16(self) -> None:
        """Convert the torso's convolutions to float16, as guided-diffusion (norms, embeddings, ``out`` stay)."""
        self._convert_torso(torch.float16)

    def convert_to_fp32(self) -> None:
        """Undo ``convert_to_fp16``."""
        self._convert_torso(torch.float32)

    def forward(self, x: torch.Tensor, timesteps: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        """x: (B, in_channels, H, W); timesteps: (B,) float (fractional noise levels allowed);
        y: (B,) long class labels iff ``num_classes`` is set -> (B, out_channels, H, W).
        """
        if timesteps.shape != (x.shape[0],):
            raise ValueError(f"timesteps must have shape ({x.shape[0]},), got {tuple(timesteps.shape)}")
        if (y is None) != (self.num_classes is None):
            raise ValueError("pass y (class labels) if and only if the UNet has num_classes")
        emb = self.time_embed(timestep_embedding(timesteps, self.model_channels))
        if y is not None:
            if y.shape != (x.shape[0],):
                raise ValueError(f"y must have shape ({x.shape[0]},), got {tuple(y.shape)}")
            emb = emb + self.label_emb(y)
        h, skips = x.to(self.torso_dtype), []
        for block in self.input_blocks:
            h = block(h, emb)
            skips.append(h)
        h = self.middle_block(h, emb)
        for block in self.output_blocks:
            h = block(torch.cat([h, skips.pop()], dim=1), emb)
        return self.out(h.to(x.dtype))


IMAGE_CHANNELS = 3  # RGB: the network's output, and its input without conditioning


def input_channels(conditioned: bool) -> int:
    """U-Net input channels: x_t alone, or ``cat([x_t, x1])`` when the network also sees the degraded image."""
    return 2 * IMAGE_CHANNELS if conditioned else IMAGE_CHANNELS


def adm256_kwargs(cond_x1: bool) -> dict:
    """The authors' I2SB network: guided-diffusion's ImageNet-256 unconditional ADM with learn_sigma off.

    From I2SB ``ckpt_util.create_argparser`` through guided-diffusion ``create_model`` (channel_mult
    (1,1,2,2,4,4) for 256 px); ``in_channels`` is 6 when x1 is concatenated to xt (``cond_x1``).
    """
    return dict(
        image_size=256, in_channels=input_channels(cond_x1), model_channels=256, out_channels=3,
        num_res_blocks=2, attention_resolutions=attention_ds(256, "32,16,8"), dropout=0.0,
        channel_mult=(1, 1, 2, 2, 4, 4), conv_resample=True, dims=2, num_classes=None,
        use_checkpoint=False, use_fp16=False, num_heads=4, num_head_channels=64, num_heads_upsample=-1,
        use_scale_shift_norm=True, resblock_updown=True, use_new_attention_order=False)
