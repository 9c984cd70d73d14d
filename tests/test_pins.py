"""Restorations and training steps of a tiny model pinned bit for bit (fp32, CPU), so that speed work and
refactors provably change no number.

``tests/fixtures/pins.pt`` holds the outputs of every sampler (SDE and OT-ODE models), inpainting, tiling,
per-image generators, the baselines (Palette, DDNM) and three training steps (losses, weights, EMA),
written by ``python tests/test_pins.py --write`` before the code they guard changed. They are compared
exactly where the kernels are those that wrote them (same torch, CPU model, capability and thread count), and
to 1e-2 elsewhere: another CPU (another vendor's MKL/oneDNN kernels even at the same capability) rounds
convolutions differently and a stochastic sampler carries the rounding forward (written on an AMD EPYC,
read on an Intel Xeon, both AVX512: at most 5.6e-3 on the tiled DDPM output, 1.2e-4 on DDNM's).
"""

from __future__ import annotations

import hashlib
import platform
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from helpers import bridge_restorer, perturb, tiny_config  # noqa: E402

from i2sb.baselines import EpsDenoiser, GaussianDiffusion  # noqa: E402
from i2sb.config import TaskConfig, to_train_config  # noqa: E402
from i2sb.methods import task_degradation  # noqa: E402
from i2sb.restoration import Restorer  # noqa: E402
from i2sb.restoration.algorithms import ddnm_restoration, palette_restoration  # noqa: E402
from i2sb.training.dist import DistInfo  # noqa: E402
from i2sb.training.trainer import Trainer  # noqa: E402
from i2sb.unet import UNet  # noqa: E402

PINS = Path(__file__).parent / "fixtures" / "pins.pt"


def tiny_unet(in_channels: int = 3, seed: int = 0) -> UNet:
    torch.manual_seed(seed)
    net = UNet(image_size=16, in_channels=in_channels, model_channels=32, out_channels=3, num_res_blocks=1,
               attention_resolutions=(2,), channel_mult=(1, 1), num_head_channels=16, use_scale_shift_norm=True,
               resblock_updown=True)
    perturb(net, 0.05, seed + 1)
    return net.eval()


def images(batch: int, height: int, width: int, seed: int) -> torch.Tensor:
    return torch.rand(batch, 3, height, width, generator=torch.Generator().manual_seed(seed)) * 2 - 1


def hole(height: int, width: int) -> torch.Tensor:
    mask = torch.zeros(1, 1, height, width)
    mask[..., height // 4: 3 * height // 4, width // 4: 3 * width // 4] = 1
    return mask


def g(seed: int = 7) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def restorations() -> dict[str, torch.Tensor]:
    """Every restoration path of a 16-px model (training size 16) on 16x16 and larger (tiled) images."""
    sde, ode = bridge_restorer(tiny_unet()), bridge_restorer(tiny_unet(), ot_ode=True, beta_max=1.0)
    cond = bridge_restorer(tiny_unet(6, seed=2), cond_x1=True)
    x, big, mask = images(2, 16, 16, 0), images(2, 16, 28, 1), hole(16, 16)
    out = {
        "ddpm": sde.restore(x, nfe=3, generator=g()),
        "ddpm_ot_ode": ode.restore(x, nfe=3, generator=g()),
        "implicit_eta0": sde.restore(x, nfe=3, sampler="implicit", generator=g()),
        "implicit_eta05": sde.restore(x, nfe=3, sampler="implicit", eta=0.5, generator=g()),
        "heun": ode.restore(x, nfe=5, sampler="heun", generator=g()),
        "multistep": ode.restore(x, nfe=4, sampler="multistep", generator=g()),
        "inpaint_ddpm": sde.restore(x, nfe=3, mask=mask, generator=g()),
        "inpaint_ot_ode": ode.restore(x, nfe=3, mask=mask, generator=g()),
        "inpaint_implicit": sde.restore(x, nfe=3, sampler="implicit", eta=0.5, mask=mask, generator=g()),
        "tiled_ddpm": sde.restore(big, nfe=2, generator=g(), tile=16, tile_overlap=4),
        "tiled_cond_x1": cond.restore(images(1, 24, 24, 2), nfe=2, generator=g(), tile=16, tile_overlap=6),
        "tiled_inpaint": ode.restore(big, nfe=2, mask=hole(16, 28), generator=g(), tile=16),
        "per_image_generators": sde.restore(x, nfe=2, generator=[g(1), g(2)]),
        "clip_denoise": sde.restore(x, nfe=2, clip_denoise=True, generator=g()),
    }
    task = TaskConfig(name="toy", degradation=None, n_steps=100)
    diffusion = GaussianDiffusion.linear(100)
    palette = Restorer(EpsDenoiser(tiny_unet(6, seed=3), conditional=True).eval(), palette_restoration(diffusion),
                       task, 16)
    out["palette"] = palette.restore(x, nfe=3, sampler="implicit", eta=0.5, generator=g())
    sr = TaskConfig(name="sr4x_pool", degradation="sr4x_pool", n_steps=100)
    ddnm = Restorer(EpsDenoiser(tiny_unet(seed=4)).eval(), ddnm_restoration(diffusion, sr), sr, 16)
    out["ddnm"] = ddnm.restore(x, nfe=3, generator=g())
    return out


def training(tmp_path: Path) -> dict[str, torch.Tensor]:
    """Three optimiser steps of two microbatches each: losses, weights and the EMA."""
    cfg = to_train_config(tiny_config(tmp_path, trainer={"batch_size": 4, "microbatch": 2}))
    trainer = Trainer(cfg, DistInfo(device=torch.device("cpu")))
    deg = task_degradation(cfg.task, cfg.data.image_size)
    losses = [trainer.train_step([{"x0": images(2, 16, 16, 10 + 2 * k + i)} for i in range(2)], deg)
              for k in range(3)]
    weights = torch.cat([p.detach().flatten() for p in trainer.unet.parameters()])
    ema = torch.cat([p.detach().flatten() for p in trainer.ema.module.parameters()])
    return {"train_losses": torch.stack(losses), **digest("train_weights", weights), **digest("train_ema", ema)}


def digest(name: str, values: torch.Tensor) -> dict[str, torch.Tensor]:
    """A large tensor kept as its SHA-256 (exact comparison) and every 101st value (close comparison)."""
    sha = hashlib.sha256(values.contiguous().numpy().tobytes()).digest()
    return {f"{name}_sha256": torch.tensor(list(sha), dtype=torch.uint8), f"{name}_every101": values[::101].clone()}


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``; ``platform.processor()`` elsewhere)."""
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return platform.processor()


def kernels() -> dict[str, object]:
    """What decides the rounding of the CPU kernels."""
    return {"torch": str(torch.__version__), "cpu": cpu_model(),
            "capability": torch.backends.cpu.get_cpu_capability(), "threads": torch.get_num_threads()}


def compute(tmp_path: Path) -> dict[str, torch.Tensor]:
    with torch.no_grad():
        out = restorations()
    return {**out, **training(tmp_path)}


@pytest.fixture(scope="module")
def pinned():
    if not PINS.is_file():
        pytest.skip(f"{PINS} missing: python tests/test_pins.py --write")
    return torch.load(PINS, weights_only=True)


@pytest.fixture(scope="module")
def computed(tmp_path_factory):
    return compute(tmp_path_factory.mktemp("pins"))


def test_every_pinned_output_is_reproduced(pinned, computed):
    exact = pinned["kernels"] == kernels()
    assert set(computed) == set(pinned["outputs"])
    for name, expected in pinned["outputs"].items():
        if exact:
            assert torch.equal(computed[name], expected), f"{name}: not bit-identical to the pin"
        elif not name.endswith("_sha256"):
            torch.testing.assert_close(computed[name], expected, rtol=1e-3, atol=1e-2, msg=name)


if __name__ == "__main__":  # python tests/test_pins.py --write
    import tempfile

    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python tests/test_pins.py --write")
    with tempfile.TemporaryDirectory() as tmp:
        torch.save({"kernels": kernels(), "outputs": compute(Path(tmp))}, PINS)
    print(f"wrote {PINS}: {kernels()}")
