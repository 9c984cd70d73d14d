"""Palette-style conditional diffusion and the DDPM prior as trainer methods (i2sb.baselines): the sampler
with an oracle, inpainting as in Palette's code, the losses, ADM initialisation, training, loading and the CLI."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import i2sb
from i2sb import degrade
from i2sb.baselines import EpsDenoiser, GaussianDiffusion, palette_sample
from i2sb.cli import sample_main
from i2sb.config import to_train_config
from i2sb.methods import EpsMethod, Pair, build_method
from i2sb.train import train
from i2sb.training.dist import DistInfo
from i2sb.training.trainer import Trainer
from i2sb.training.validation import validation_restorer
from i2sb.unet import UNet

sys.path.insert(0, str(Path(__file__).parent))
from helpers import group, tiny_config  # noqa: E402


def oracle(diffusion: GaussianDiffusion, x0: torch.Tensor):
    """The exact eps of a model conditioned on x0 itself: eps = (x_t - a_t x0) / b_t."""
    return lambda xt, step: diffusion.pred_eps(step, xt, x0)


@pytest.mark.parametrize("nfe", [1, 3, 10, 100])
@pytest.mark.parametrize("eta", [0.0, 1.0])
def test_palette_sampler_with_an_oracle_returns_its_target(nfe, eta):
    d = GaussianDiffusion.linear(100)
    x0 = torch.rand(2, 3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    out = palette_sample(oracle(d, x0), d, x0, nfe, eta=eta, generator=torch.Generator().manual_seed(1))
    torch.testing.assert_close(out, x0, rtol=0, atol=1e-8)


def test_palette_inpainting_keeps_clean_known_pixels_in_every_state():
    d = GaussianDiffusion.linear(100)
    g = torch.Generator().manual_seed(2)
    x1 = torch.rand(2, 3, 8, 8, generator=g) * 2 - 1
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 2:6, 2:6] = 1
    seen = []

    def spy(xt, step):
        seen.append(xt.clone())
        return torch.randn(xt.shape, generator=g)

    out = palette_sample(spy, d, x1, 5, mask=mask, generator=g)
    assert len(seen) == 5
    for xt in seen + [out]:  # Palette: y_t = y_0 (1 - mask) + mask y_t, from the first network call on
        torch.testing.assert_close((1 - mask) * xt, (1 - mask) * x1, rtol=0, atol=0)
    assert float((mask * (out - x1)).abs().max()) > 0.1


class Spy(nn.Module):
    """A denoiser whose network output (:meth:`raw`, what the losses read) records its inputs and is
    0.5 x_t + ``offset`` (a fixed function, so the loss is deterministic)."""

    def __init__(self, offset: torch.Tensor | float = 0.0):
        super().__init__()
        self.calls, self.offset = [], offset

    def raw(self, xt, step, cond=None):
        self.calls.append((xt.clone(), step.clone(), None if cond is None else cond.clone()))
        return 0.5 * xt + self.offset


def _pair(mask: bool) -> Pair:
    g = torch.Generator().manual_seed(3)
    x0 = torch.rand(4, 3, 8, 8, generator=g) * 2 - 1
    x1 = torch.rand(4, 3, 8, 8, generator=g) * 2 - 1
    m = torch.zeros(4, 1, 8, 8)
    m[..., 2:6, 2:6] = 1
    return Pair(x0, x1, m if mask else None, None)


def _config(method: str, task: str = "inpaint_center"):
    return to_train_config({**tiny_config("unused", task=task), "method": method})


def _method(method: str, task: str = "inpaint_center"):
    cfg = _config(method, task)
    return build_method(cfg.method, cfg.task)


def test_palette_loss_is_eps_prediction_on_the_hole_with_clean_known_input():
    method = _method("palette")
    assert isinstance(method, EpsMethod) and method.name == "palette" and method.in_channels == 6
    pair = _pair(mask=True)
    spy = Spy()
    loss = method.loss(spy, pair, torch.Generator().manual_seed(4))
    xt, step, cond = spy.calls[0]
    assert torch.all((1 <= step) & (step <= 1000))
    torch.testing.assert_close((1 - pair.mask) * xt, (1 - pair.mask) * pair.x0)  # known pixels are clean
    torch.testing.assert_close(cond, pair.x1)  # conditioned on the degraded image
    # the same draw, a model differing only outside the hole: the same loss (loss restricted to the hole)
    other = method.loss(Spy(offset=3.0 * (1 - pair.mask)), pair, torch.Generator().manual_seed(4))
    assert float(loss) == float(other)
    g = torch.Generator().manual_seed(4)
    step_ref = torch.randint(1, 1001, (4,), generator=g)
    noise = torch.randn(pair.x0.shape, generator=g)
    xt_ref = method.diffusion.q_sample(step_ref, pair.x0, noise)
    xt_ref = pair.mask * xt_ref + (1 - pair.mask) * pair.x0
    expected = torch.mean((pair.mask * (0.5 * xt_ref) - pair.mask * noise) ** 2)
    assert float(loss) == pytest.approx(float(expected), rel=1e-6)


def test_ddpm_loss_is_unconditional_and_ignores_x1():
    method = _method("ddpm", task="sr4x_pool")
    assert isinstance(method, EpsMethod) and method.name == "ddpm" and method.in_channels == 3
    pair = _pair(mask=False)
    spy = Spy()
    loss = method.loss(spy, pair, torch.Generator().manual_seed(5))
    other = method.loss(Spy(), Pair(pair.x0, -pair.x1, None, None), torch.Generator().manual_seed(5))
    assert spy.calls[0][2] is None and float(loss) == float(other)


@pytest.mark.parametrize("task", ["sr4x_pool", "jpeg5"])
def test_ddpm_validation_restores_with_ddnm_or_samples_the_prior(task):
    """The Validator's restorer: DDNM for a linear task (consistent with y), prior samples otherwise."""
    cfg = _config("ddpm", task=task)
    unet = UNet(in_channels=3, **cfg.model.unet_kwargs())
    restorer = validation_restorer(cfg, EpsDenoiser(unet).eval())
    assert restorer.kind.name == ("DDNM" if task == "sr4x_pool" else "prior samples")
    x0 = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(7)) * 2 - 1
    deg = degrade.build(task, 16)
    x1, _ = deg(x0)
    out = restorer.restore(x1, nfe=3, generator=torch.Generator().manual_seed(0))
    assert out.shape == x0.shape and bool(torch.isfinite(out).all())
    if deg.is_linear:
        op = deg.operator()
        assert float((op.A(out) - op.A(x0)).abs().max()) < 1e-4


def test_eps_denoiser_feeds_adm_time_and_concatenates_after_xt():
    class Net(nn.Module):
        def forward(self, x, t):
            self.x, self.t = x, t
            return torch.cat([x[:, :3], x[:, :3]], dim=1)  # 6 channels like ADM with learned variance

    net, diffusion = Net(), GaussianDiffusion.linear(1000)
    den = EpsDenoiser(net, conditional=True, diffusion=diffusion)
    xt, cond, step = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4), torch.tensor([1, 1000])
    eps = den.output(xt, step, cond)  # the ε the baselines' samplers step with: the first 3 channels
    assert net.t.tolist() == [0.0, 999.0] and torch.equal(net.x, torch.cat([xt, cond], 1))
    assert torch.equal(eps, xt)
    torch.testing.assert_close(den(xt, step, cond), diffusion.pred_x0(step, xt, xt))  # x0 by Ho Eq. 15
    torch.testing.assert_close(den.configured(cond=cond)(xt, step), den(xt, step, cond))  # a bound condition


def test_palette_initialises_from_adm_with_the_concatenated_input(tmp_path):
    model = {k: v for k, v in group("model", "tiny").items() if k not in ("name", "init")}
    torch.manual_seed(0)
    adm = UNet(**{**model, "in_channels": 3, "out_channels": 6})
    torch.save(adm.state_dict(), tmp_path / "adm.pt")
    cfg = to_train_config({**tiny_config(tmp_path / "run", task="sr4x_pool", model={"init": str(tmp_path / "adm.pt")}),
                           "method": "palette"})
    trainer = Trainer(cfg, DistInfo())
    weight = trainer.unet.state_dict()["input_blocks.0.0.weight"]
    assert weight.shape[1] == 6
    torch.testing.assert_close(weight[:, :3], adm.state_dict()["input_blocks.0.0.weight"])  # ADM acts on x_t
    torch.testing.assert_close(trainer.unet.state_dict()["out.2.weight"], adm.state_dict()["out.2.weight"][:3])


@pytest.fixture(scope="module")
def palette_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("palette") / "run"
    cfg = tiny_config(run, task="inpaint_center", trainer={"max_steps": 2, "eval_every": 2})
    summary = train({**cfg, "method": "palette"})
    assert math.isfinite(summary["val_psnr"]) and math.isfinite(summary["loss"])  # the Validator ran Palette
    assert (run / "samples" / "step_000000002.png").is_file()
    return run


def test_a_palette_run_loads_and_restores(palette_run):
    restorer = i2sb.load(palette_run)
    assert restorer.kind.name == "Palette" and restorer.denoiser.net.in_channels == 6
    x1 = torch.rand(2, 3, 16, 24, generator=torch.Generator().manual_seed(6)) * 2 - 1  # any size (padded)
    mask = torch.zeros(1, 1, 16, 24)
    mask[..., 4:12, 6:18] = 1
    for sampler, eta in (("ddpm", None), ("implicit", 0.0)):
        out = restorer.restore(x1, nfe=3, mask=mask, generator=torch.Generator().manual_seed(0), sampler=sampler,
                               eta=eta, clip_denoise=True)
        assert out.shape == x1.shape and float(out.abs().max()) <= 1.0
        torch.testing.assert_close((1 - mask) * out, (1 - mask) * x1)
    with pytest.raises(ValueError, match="ot_ode"):
        restorer.restore(x1, nfe=3, mask=mask, ot_ode=True)
    with pytest.raises(ValueError, match="eta applies"):
        restorer.restore(x1, nfe=3, mask=mask, eta=0.5)


def test_cli_restores_with_a_palette_run(palette_run, tmp_path, capsys):
    (tmp_path / "in").mkdir()
    (tmp_path / "mask").mkdir()
    rng = np.random.default_rng(0)
    hole = np.zeros((16, 16), np.uint8)
    hole[4:12, 4:12] = 255
    Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(tmp_path / "in" / "a.png")
    Image.fromarray(hole).save(tmp_path / "mask" / "a.png")
    with pytest.raises(SystemExit) as done:
        sample_main([f"ckpt={palette_run}", f"input={tmp_path / 'in'}", f"output={tmp_path / 'out'}",
                     f"mask={tmp_path / 'mask'}", "nfe=2", "progress=false", "save_traj=true", "traj_format=png"])
    assert done.value.code == 0, capsys.readouterr().err
    out = np.asarray(Image.open(tmp_path / "out" / "a.png"))
    known = np.asarray(Image.open(tmp_path / "in" / "a.png"))
    assert np.array_equal(out[hole == 0], known[hole == 0])
    assert Image.open(tmp_path / "out_traj" / "a.png").size == (2 * 16, 2 * 16)  # two logged steps, 2 rows
    with pytest.raises(SystemExit) as done:
        sample_main([f"ckpt={palette_run}", f"input={tmp_path / 'in'}", f"output={tmp_path / 'o2'}",
                     f"mask={tmp_path / 'mask'}", "sampler=heun", "progress=false"])
    assert done.value.code == 2 and "sampler" in capsys.readouterr().err
