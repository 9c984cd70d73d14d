"""Validation during training: restorations of a fixed validation batch at a few NFEs, PSNR and SWD at each, an
image grid, and the record of what each NFE gave (stored with the checkpoint: ``i2sb-sample``'s default NFE).

The restoration goes through the same :class:`~i2sb.restoration.Restorer` as ``i2sb-sample`` and
``i2sb.load``, built around the EMA network (rank 0 only).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torchvision.utils import make_grid

from ..baselines.gaussian import GaussianDiffusion
from ..config import TrainConfig
from ..data import build_split
from ..degrade import Degradation
from ..evaluation.metrics import psnr
from ..evaluation.record import NFEScore, ValidationRecord
from ..evaluation.swd import PatchSet, patch_sets, swd_between
from ..restoration import Restorer, restorer_for
from ..restoration.algorithms import is_linear_task, prior_samples
from ..utils.images import save_image

BATCH_SEED, SAMPLER_SEED = 12345, 54321  # offsets of the validation's generators from cfg.seed


@dataclass
class ValidationBatch:
    """Clean images, their degraded versions and the inpainting masks (B, 1, H, W) or None, on the device."""

    x0: Tensor
    x1: Tensor
    mask: Tensor | None

    def shown(self) -> Tensor:
        """The degraded image a person would see (inpainting: the hole white)."""
        return self.x1 if self.mask is None else (1 - self.mask) * self.x1 + self.mask


class Validator:
    """Restores a fixed batch at every NFE of ``nfes`` with fixed noise, so the logged values are comparable.

    Logged: ``val_psnr_nfe{N}`` and ``val_swd_nfe{N}`` per NFE, ``val_psnr`` / ``val_swd`` at ``nfe`` (the run's
    ``eval_nfe``) and ``*_input`` for the degraded input. The one-step restoration is close to the posterior mean
    E[x0 | x1]: the PSNR-optimal estimate and the clearest sign of learning, while samples at more NFE trade
    ~3 dB of PSNR for detail (an exact posterior sample has twice the MMSE) and should come closer to the clean
    images' local statistics (lower SWD, :mod:`i2sb.evaluation.swd`; on a batch of 8 it is noisy, but every
    NFE is scored against the same clean patches). :attr:`record` keeps the last validation per NFE
    (:class:`~i2sb.evaluation.record.ValidationRecord`), saved with the checkpoint. The grid
    ``samples/step_{step:09d}.png`` has one row per image: degraded | restored at ``nfe`` | clean.
    """

    def __init__(self, restorer: Restorer, batch: ValidationBatch, nfe: int, precision: str, seed: int,
                 samples_dir: Path, nfes: tuple[int, ...] = (), records: bool = True):
        self.restorer, self.batch, self.seed, self.samples_dir = restorer, batch, seed, Path(samples_dir)
        self.nfe, self.records = nfe, records
        self.options = {n: restorer.options(nfe=n, precision=precision) for n in sorted({nfe, *nfes})}
        self.clean = patch_sets(len(batch.x0), *batch.x0.shape[-2:], count=1)[0]
        self.clean.add(batch.x0)
        self.record: dict[str, Any] = {}

    def swd(self, images: Tensor) -> float:
        """SWD x 1e3 of ``images`` against the clean batch (same patch positions and directions)."""
        restored = PatchSet(self.clean.levels, self.clean.per_image, self.clean.settings)
        restored.add(images)
        return swd_between(restored, self.clean).mean

    @torch.no_grad()
    def run(self, step: int, writer: Any = None) -> dict[str, float]:
        b, shown = self.batch, self.batch.shown().clamp(-1, 1)
        values = {"val_psnr_input": float(psnr(shown, b.x0).mean()), "val_swd_input": self.swd(shown)}
        for nfe, options in self.options.items():
            g = torch.Generator(device=self.restorer.device).manual_seed(self.seed + SAMPLER_SEED)
            restored = self.restorer.restore(b.x1, mask=b.mask, generator=g, options=options).clamp(-1, 1)
            values[f"val_psnr_nfe{nfe}"] = float(psnr(restored, b.x0).mean())
            values[f"val_swd_nfe{nfe}"] = self.swd(restored)
            if nfe == self.nfe:
                values["val_psnr"], values["val_swd"] = values[f"val_psnr_nfe{nfe}"], values[f"val_swd_nfe{nfe}"]
                grid = image_grid(shown, restored, b.x0)
        if self.records:
            self.record = validation_record(step, len(b.x0), values, list(self.options)).as_dict()
        save_image(grid * 2 - 1, self.samples_dir / f"step_{step:09d}.png")
        if writer is not None:
            writer.scalars(step, values)
            writer.image(step, "val/degraded|restored|clean", grid)
        return values


def validation_record(step: int, images: int, values: dict[str, float], nfes: list[int]) -> ValidationRecord:
    """The :class:`ValidationRecord` of one validation's logged ``values``."""
    scores = tuple(NFEScore(n, values[f"val_psnr_nfe{n}"], values[f"val_swd_nfe{n}"]) for n in nfes)
    return ValidationRecord(step, images, scores, values["val_psnr_input"], values["val_swd_input"])


def image_grid(degraded: Tensor, restored: Tensor, clean: Tensor) -> Tensor:
    """(3, H', W') in [0, 1]: one row per image, degraded | restored | clean."""
    rows = torch.stack([degraded, restored, clean], dim=1).flatten(0, 1)  # (3B, C, H, W)
    return make_grid(((rows.float().cpu() + 1) / 2).clamp(0, 1), nrow=3, padding=2, pad_value=1.0)


def validation_batch(cfg: TrainConfig, deg: Degradation | None, device: torch.device) -> ValidationBatch:
    """``trainer.eval_batch`` validation images spread evenly over the validation set, degraded once with a
    fixed generator."""
    dataset = build_split(cfg.data, "val")
    count = min(cfg.trainer.eval_batch, len(dataset))
    items = [dataset[round(i * (len(dataset) - 1) / max(count - 1, 1))] for i in range(count)]
    x0 = torch.stack([it["x0"] for it in items]).to(device)
    if "x1" in items[0]:
        return ValidationBatch(x0, torch.stack([it["x1"] for it in items]).to(device), None)
    g = torch.Generator(device=device).manual_seed(cfg.seed + BATCH_SEED)
    x1, mask = deg(x0, generator=g)
    return ValidationBatch(x0, x1, mask)


def validation_restorer(cfg: TrainConfig, denoiser: nn.Module) -> Restorer:
    """The run's :class:`Restorer` around ``denoiser``; a DDPM prior whose task has no linear operator cannot
    restore, so it shows its unconditional samples (``val_psnr`` then measures nothing)."""
    size, nfe = cfg.data.image_size, cfg.trainer.eval_nfe
    if cfg.method == "ddpm" and not is_linear_task(cfg.task):
        return Restorer(denoiser, prior_samples(GaussianDiffusion.linear(cfg.task.n_steps)), cfg.task, size, nfe)
    return restorer_for(cfg.method, denoiser, cfg.task, size, nfe)


def build_validator(cfg: TrainConfig, denoiser: nn.Module, deg: Degradation | None,
                    device: torch.device) -> Validator:
    """The validator of a run: ``denoiser`` wraps the EMA network (it follows the EMA as it trains). A DDPM prior
    without a linear task restores nothing, so it keeps no record (no NFE to recommend)."""
    restorer = validation_restorer(cfg, denoiser.to(device))
    batch = validation_batch(cfg, deg, device)
    restores = cfg.method != "ddpm" or is_linear_task(cfg.task)
    return Validator(restorer, batch, cfg.trainer.eval_nfe, cfg.trainer.precision, cfg.seed,
                     Path(cfg.run_dir) / "samples", tuple(cfg.trainer.eval_nfes), records=restores)


def validation_line(step: int, nfe: int, values: dict[str, float]) -> str:
    """One console line for a validation: PSNR at ``nfe``, then PSNR / SWD at every NFE and of the input."""
    nfes = sorted(int(k.removeprefix("val_psnr_nfe")) for k in values if k.startswith("val_psnr_nfe"))
    each = ", ".join(f"{n}: {values[f'val_psnr_nfe{n}']:.2f} / {values[f'val_swd_nfe{n}']:.1f}" for n in nfes)
    return (f"[i2sb] step {step}: validation PSNR {values['val_psnr']:.2f} dB at NFE {nfe}; PSNR dB / SWD by NFE "
            f"{each} (degraded input {values['val_psnr_input']:.2f} / {values['val_swd_input']:.1f})")
