"""Numerical precision of the network: ``auto`` picks bf16 autocast where the device runs it natively; the
denoiser (:mod:`.denoiser`) runs its network under the resolved one."""

from __future__ import annotations

import torch

AUTOCAST_DTYPES = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
PRECISIONS = ("auto", *AUTOCAST_DTYPES)


def native_bf16(device: torch.device | str) -> bool:
    """Whether ``device`` runs bfloat16 natively: a CUDA GPU of compute capability 8.0 or above (Ampere on:
    bf16 tensor cores; ROCm GPUs too); a CPU with AVX512-BF16 or AMX whose oneDNN may use them
    (``ONEDNN_MAX_CPU_ISA=AVX2`` caps oneDNN below bf16, and autocast's convolutions then emulate bf16,
    slower than fp32)."""
    device = torch.device(device)
    if device.type == "cuda":
        return _cuda_runs_bf16(device)
    if device.type == "cpu":
        return _cpu_has_bf16() and _onednn_runs_bf16()
    return False


def _cuda_runs_bf16(device: torch.device) -> bool:
    """Compute capability >= 8.0 of ``device`` itself (not the current device). ``torch.cuda.is_bf16_supported()``
    answers yes on V100 / T4 (sm70 / sm75) too, where bf16 is emulated and cuDNN has no bf16 convolutions."""
    if not torch.cuda.is_available():
        return False
    if torch.version.hip:
        return torch.cuda.is_bf16_supported()
    return torch.cuda.get_device_capability(device)[0] >= 8


def _cpu_has_bf16() -> bool:
    """Whether the CPU's instruction set has bf16 arithmetic (AVX512-BF16 or AMX), from cpuinfo."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def _onednn_runs_bf16() -> bool:
    """Whether oneDNN, at the instruction set it may use on this machine, has bf16 kernels."""
    check = getattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", None)
    return bool(check()) if check is not None and torch.backends.mkldnn.is_available() else False


def resolve_precision(precision: str, device: torch.device | str) -> str:
    """``auto`` -> ``bf16`` where :func:`native_bf16`, else ``fp32``; fp32 | bf16 | fp16 are returned unchanged
    (the callers checked the value: ``Restorer.options``, the training config)."""
    if precision == "auto":
        return "bf16" if native_bf16(device) else "fp32"
    return precision
