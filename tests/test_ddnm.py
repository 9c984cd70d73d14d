"""DDNM / DDNM+ (i2sb.baselines.ddnm): measurement recovery, exact consistency, the posterior mean of an
analytic Gaussian prior, DDNM+'s noise bookkeeping, time travel, priors (ours and ADM's) and the CLI."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import i2sb
from i2sb import degrade
from i2sb.baselines import DDNMOptions, ddnm_sample, measurement, network_calls, spectrum, travel_schedule
from i2sb.baselines.ddnm import DDNMStep, plus_coefs
from i2sb.baselines.gaussian import GaussianDataEps, GaussianDiffusion
from i2sb.cli import sample_main
from i2sb.restoration import load_ddnm, load_denoiser
from i2sb.train import train
from i2sb.unet import UNet
from i2sb.utils.images import save_image

sys.path.insert(0, str(Path(__file__).parent))
from helpers import group, tiny_config  # noqa: E402

# (task, degrade.build keyword arguments): every linear degradation, the clean blurs with the exact pinv
LINEAR = [("sr4x_pool", {}), ("sr4x_bicubic", {}), ("inpaint_center", {}), ("inpaint_freeform2030", {}),
          ("colorize", {}), ("blur_uni_conv", {"pinv_cutoff": 0.0}), ("blur_gauss_conv", {"pinv_cutoff": 0.0})]


def operator_and_x1(task: str, image_size: int, x0: torch.Tensor, seed: int = 0, **params):
    deg = degrade.build(task, image_size, **params)
    x1, mask = deg(x0, generator=torch.Generator().manual_seed(seed))
    return (deg.operator(mask) if deg.needs_mask else deg.operator()), x1


def gaussian_prior(mean, std: float, n_steps: int = 100):
    diffusion = GaussianDiffusion.linear(n_steps)
    model = GaussianDataEps(diffusion, mean, std)
    return diffusion, (lambda xt, step: model(xt, step))


# ---------------------------------------------------------------------------- schedule and measurement
def test_travel_schedule_is_ddnms_jump_schedule():
    assert travel_schedule(4) == [4, 3, 2, 1, 0]
    # DDNM's get_schedule_jump(5, 1, 2) = [4, 3, 4, 3, 2, 3, 2, 1, 2, 1, 0, 1, 0, -1], shifted by one
    assert travel_schedule(5, 1, 2) == [5, 4, 5, 4, 3, 4, 3, 2, 3, 2, 1, 2, 1, 0]
    path = travel_schedule(20, 3, 4)
    moves = np.diff(path)
    assert path[0] == 20 and path[-1] == 0 and set(moves) == {-1, 3}
    travel_points = len(range(1, 20 - 3 + 1, 3))
    assert network_calls(20, 3, 4) == 20 + travel_points * 3 * 3 == int((moves == -1).sum())
    with pytest.raises(ValueError):
        travel_schedule(5, 0, 1)


@pytest.mark.parametrize("task, params", LINEAR + [("blur_uni", {}), ("blur_gauss", {})])
def test_measurement_is_recovered_from_the_i2sb_input(task, params):
    x0 = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1
    op, x1 = operator_and_x1(task, 16, x0, **params)
    torch.testing.assert_close(measurement(op, x1), op.A(x0), rtol=0, atol=1e-6)


# ---------------------------------------------------------------------------- consistency and the posterior mean
@pytest.mark.parametrize("task, params", LINEAR)
@pytest.mark.parametrize("nfe", [1, 10])
def test_noise_free_ddnm_is_consistent(task, params, nfe):
    """sigma_y = 0: the result satisfies A x = y (Eq. 6), in float32, for any prior (here a Gaussian)."""
    g = torch.Generator().manual_seed(2)
    x0 = torch.rand(3, 3, 16, 16, generator=g) * 2 - 1
    op, x1 = operator_and_x1(task, 16, x0, **params)
    y = measurement(op, x1)
    diffusion, predict = gaussian_prior(0.0, 0.5)
    out = ddnm_sample(predict, diffusion, op, y, torch.randn(x0.shape, generator=g), nfe, DDNMOptions(), generator=g)
    assert out.dtype == torch.float32
    assert float((op.A(out) - y).abs().max()) < 1e-4


@pytest.mark.parametrize("task", ["blur_uni", "blur_gauss"])
def test_authors_blur_is_consistent_to_float32_precision(task):
    """The paper's DDRM blur: its float32 SVD factors limit A A^+ A = A to ~1e-6 here (1e-4 documented)."""
    g = torch.Generator().manual_seed(3)
    x0 = torch.rand(2, 3, 16, 16, generator=g) * 2 - 1
    op, x1 = operator_and_x1(task, 16, x0)
    y = measurement(op, x1)
    diffusion, predict = gaussian_prior(0.0, 0.5)
    out = ddnm_sample(predict, diffusion, op, y, torch.randn(x0.shape, generator=g), 5, generator=g)
    assert float((op.A(out) - y).abs().max()) < 1e-5


@pytest.mark.parametrize("task, params", [("sr4x_pool", {}), ("inpaint_center", {}), ("colorize", {}),
                                          ("blur_uni_conv", {"size": 7})])
@pytest.mark.parametrize("nfe, options", [(10, DDNMOptions(eta=1.0)),
                                          (8, DDNMOptions(eta=0.85, travel_length=2, travel_repeat=2))])
def test_ddnm_mean_is_the_posterior_mean_of_a_gaussian_prior(task, params, nfe, options):
    """x0 ~ N(mu, s^2 I), y = A x0: E[x0 | y] = A^+ y + (I - A^+ A) mu (A^+ A is an orthogonal projection and the
    prior is isotropic), and the null-space part of DDNM follows the unconditional sampler exactly. (With the
    blur's truncated pseudo-inverse, P = A^+ A projects on the kept singular directions: E[x0 | P x0].)"""
    size, std, n = 8, 0.4, 2000
    g = torch.Generator().manual_seed(4)
    mean = 0.5 * torch.sin(torch.arange(3 * size * size, dtype=torch.float64)).view(1, 3, size, size)
    x_true = mean + std * torch.randn(mean.shape, dtype=torch.float64, generator=g)
    op, x1 = operator_and_x1(task, size, x_true, **params)
    y = measurement(op, x1)
    posterior_mean = op.A_pinv(y) + mean - op.A_pinv(op.A(mean))
    diffusion, predict = gaussian_prior(mean, std)
    x_T = torch.randn(n, 3, size, size, dtype=torch.float64, generator=g)
    out = ddnm_sample(predict, diffusion, op, y.expand(n, *y.shape[1:]), x_T, nfe, options, generator=g)
    bias = math.sqrt(float(diffusion.alphas_cumprod[-1])) * float(mean.abs().max())  # x_T ~ N(0, I), not N(a mu, .)
    tolerance = 5 * float(out.std(0).max()) / math.sqrt(n) + bias
    assert float((out.mean(0) - posterior_mean[0]).abs().max()) < tolerance
    assert float(out.std(0).max()) > 0.05  # the null space is sampled, not collapsed


# ---------------------------------------------------------------------------- DDNM+
def test_plus_coefficients_keep_the_noise_budget():
    gain = torch.tensor([0.0, 0.5, 1.0, 4.0, 40.0], dtype=torch.float64)
    c_x0, c_eps, sigma_y = 0.6, 0.7, 0.2
    lam, eps_coef = plus_coefs(gain, c_x0, c_eps, sigma_y)
    carried = c_x0 * sigma_y * gain
    torch.testing.assert_close((lam * carried) ** 2 + eps_coef**2, torch.full_like(gain, c_eps**2))  # Eq. 19
    assert torch.all(lam[carried <= c_eps] == 1) and torch.all(lam[carried > c_eps] < 1)
    lam0, eps0 = plus_coefs(gain, c_x0, c_eps, 0.0)
    assert torch.all(lam0 == 1) and torch.allclose(eps0, torch.full_like(gain, c_eps))  # sigma_y = 0: DDNM


@pytest.mark.parametrize("task, params", [("sr4x_pool", {}), ("sr4x_bicubic", {}), ("inpaint_center", {}),
                                          ("colorize", {}), ("blur_uni_conv", {"size": 7})])
def test_spectrum_whitens_the_pseudo_inverse_noise(task, params):
    """V^T A^+ maps white measurement noise to independent coefficients with std gain (exactly: T T^T = diag)."""
    size = 8
    op, _ = operator_and_x1(task, size, torch.zeros(1, 3, size, size, dtype=torch.float64), **params)
    spec = spectrum(op, size)
    y_shape = op.A(torch.zeros(1, 3, size, size, dtype=torch.float64)).shape[1:]
    basis = torch.eye(int(np.prod(y_shape)), dtype=torch.float64).view(-1, *y_shape)
    t = spec.to_coef(op.A_pinv(basis)).reshape(basis.shape[0], -1)  # rows: coefficients of A^+ e_k
    gain = spec.gain.expand(1, 3, size, size).reshape(-1).to(torch.float64)
    torch.testing.assert_close(t.T @ t, torch.diag(gain**2), rtol=0, atol=1e-9)
    x = torch.randn(2, 3, size, size, dtype=torch.float64)
    torch.testing.assert_close(spec.from_coef(spec.to_coef(x)), x)  # orthonormal
    torch.testing.assert_close(spec.to_coef(x).norm(), x.norm())


@pytest.mark.parametrize("task", ["sr4x_pool", "inpaint_center", "colorize", "blur_gauss_conv"])
def test_ddnm_plus_keeps_the_noise_of_x_prev_at_the_schedule(task):
    """Principle (i) of DDNM+: with the exact x0 and eps, x_{t-1} - sqrt(ab) x0 has variance 1 - ab in every
    direction although y is noisy (DDNM adds ab sigma_y^2 gain^2 on top)."""
    size, n, sigma_y = 8, 4000, 0.2
    g = torch.Generator().manual_seed(5)
    x0 = torch.rand(1, 3, size, size, dtype=torch.float64, generator=g).expand(n, -1, -1, -1) * 2 - 1
    op, _ = operator_and_x1(task, size, x0[:1])
    y_clean = op.A(x0)
    y = y_clean + sigma_y * torch.randn(y_clean.shape, dtype=torch.float64, generator=g)
    diffusion = GaussianDiffusion.linear(100)
    prev_step, step = 30, 40
    eps = torch.randn(x0.shape, dtype=torch.float64, generator=g)
    xt = diffusion.q_sample(step, x0, eps)
    spec = spectrum(op, size)
    expected = 1 - float(diffusion.alphas_cumprod[prev_step])
    for sy, excess in ((sigma_y, 0.0), (0.0, 1.0)):
        x_prev, _ = DDNMStep(diffusion, op, y, DDNMOptions(eta=0.5, sigma_y=sy), spec)(prev_step, step, xt, eps, g)
        residual = spec.to_coef(x_prev - math.sqrt(1 - expected) * x0)
        variance = residual.var(0)
        gain = torch.broadcast_to(spec.gain.to(variance), (1, *variance.shape))[0]
        target = expected + excess * (1 - expected) * sigma_y**2 * gain**2
        assert torch.allclose(variance, target, rtol=0.15), task


def test_ddnm_plus_tends_to_ddnm_as_the_noise_vanishes():
    """Every step with a noise budget (c_eps > 0) is continuous at sigma_y = 0; the last step (c_eps = 0) is not
    (lambda = 0 for any sigma_y > 0: the noisy measurement is not copied)."""
    g = torch.Generator().manual_seed(6)
    x0 = torch.rand(2, 3, 8, 8, dtype=torch.float64, generator=g) * 2 - 1
    op, x1 = operator_and_x1("sr4x_pool", 8, x0)
    y = measurement(op, x1)
    diffusion = GaussianDiffusion.linear(100)
    spec = spectrum(op, 8)
    xt, eps = torch.randn(x0.shape, dtype=torch.float64), torch.randn(x0.shape, dtype=torch.float64)
    for prev_step, step in ((50, 60), (0, 10)):
        outs = [DDNMStep(diffusion, op, y, DDNMOptions(eta=0.5, sigma_y=sy), spec)(
            prev_step, step, xt, eps, torch.Generator().manual_seed(0))[1] for sy in (0.0, 1e-12)]
        gap = float((outs[0] - outs[1]).abs().max())
        assert (gap < 1e-9) if prev_step else (gap > 1e-3)


def test_ddnm_plus_needs_a_known_spectrum():
    op, _ = operator_and_x1("blur_uni", 16, torch.zeros(1, 3, 16, 16))
    with pytest.raises(ValueError, match="spectrum"):
        spectrum(op, 16)


# ---------------------------------------------------------------------------- priors, restorer, CLI
def test_load_adm_prior_uses_the_eps_channels_at_adm_time(tmp_path):
    kwargs = {k: v for k, v in group("model", "tiny").items() if k not in ("name", "init")}
    torch.manual_seed(0)
    adm = UNet(**{**kwargs, "in_channels": 3, "out_channels": 6})
    with torch.no_grad():
        for p in adm.parameters():
            p.add_(0.05 * torch.randn_like(p))
    torch.save(adm.state_dict(), tmp_path / "adm.pt")
    prior = load_denoiser(tmp_path / "adm.pt", num_head_channels=kwargs["num_head_channels"], image_size=16)
    x = torch.randn(2, 3, 16, 16)
    step = torch.tensor([1, 1000])  # our 1-based states are ADM's timesteps 0 and 999
    with torch.no_grad():
        torch.testing.assert_close(prior.output(x, step), adm(x, torch.tensor([0.0, 999.0]))[:, :3])
    restorer = load_ddnm(tmp_path / "adm.pt", task="inpaint_center", num_head_channels=32, image_size=16)
    assert restorer.kind.name == "DDNM" and restorer.kind.schedule.n_steps == 1000
    assert restorer.default_nfe == 100


@pytest.fixture(scope="module")
def ddpm_run(tmp_path_factory) -> Path:
    run = tmp_path_factory.mktemp("ddpm") / "run"
    cfg = tiny_config(run, task="sr4x_pool", trainer={"max_steps": 2, "eval_every": 2})
    summary = train({**cfg, "method": "ddpm", "task": {**cfg["task"], "n_steps": 100}})
    assert math.isfinite(summary["val_psnr"])  # the Validator restored with DDNM
    return run


def test_a_ddpm_run_restores_with_ddnm_consistently(ddpm_run):
    restorer = i2sb.load(ddpm_run)
    assert restorer.kind.name == "DDNM" and restorer.task.degradation == "sr4x_pool"
    x0 = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(7)) * 2 - 1
    op, x1 = operator_and_x1("sr4x_pool", 16, x0)
    for sampler, eta in (("ddpm", None), ("implicit", 0.3)):
        out = restorer.restore(x1, nfe=4, generator=torch.Generator().manual_seed(0), sampler=sampler, eta=eta)
        assert float((op.A(out) - op.A(x0)).abs().max()) < 1e-4
    with pytest.raises(ValueError, match="sampler"):
        restorer.restore(x1, nfe=4, sampler="heun")
    with pytest.raises(ValueError, match="square"):
        restorer.restore(torch.zeros(1, 3, 16, 32))


def test_cli_ddnm_with_a_prior(ddpm_run, tmp_path, capsys):
    x0 = torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(8)) * 2 - 1
    _, x1 = operator_and_x1("inpaint_center", 16, x0)
    (tmp_path / "in").mkdir()
    (tmp_path / "mask").mkdir()
    hole = np.zeros((16, 16), np.uint8)
    hole[4:12, 4:12] = 255
    for i in range(2):
        save_image(x1[i], tmp_path / "in" / f"im{i}.png")
        Image.fromarray(hole).save(tmp_path / "mask" / f"im{i}.png")
    with pytest.raises(SystemExit) as done:
        sample_main(["baseline=ddnm", f"prior={ddpm_run}", "task=inpaint_center", f"input={tmp_path / 'in'}",
                     f"output={tmp_path / 'out'}", f"mask={tmp_path / 'mask'}", "nfe=3", "progress=false",
                     "ddnm.travel_length=1", "ddnm.travel_repeat=2"])
    assert done.value.code == 0, capsys.readouterr().err
    for i in range(2):
        out = np.asarray(Image.open(tmp_path / "out" / f"im{i}.png"))
        known = np.asarray(Image.open(tmp_path / "in" / f"im{i}.png"))
        assert out.shape == (16, 16, 3) and np.array_equal(out[hole == 0], known[hole == 0])
    with pytest.raises(SystemExit) as done:
        sample_main(["baseline=ddnm", f"prior={ddpm_run}", "task=jpeg5", f"input={tmp_path / 'in'}",
                     f"output={tmp_path / 'o2'}", "progress=false"])
    assert done.value.code == 2 and "linear" in capsys.readouterr().err


def test_cli_ddnm_upsamples_low_resolution_photos(ddpm_run, tmp_path, capsys):
    """DDNM's SR path takes a low-resolution photo like I2SB's: x1 = its nearest upsampling, a 4x larger output."""
    from i2sb.utils.seeds import image_generator

    x0 = torch.rand(1, 3, 16, 16, generator=torch.Generator().manual_seed(9)) * 2 - 1
    y = degrade.build("sr4x_pool", 16).measure(x0)[0]  # the true low-resolution image (1, 3, 4, 4)
    (tmp_path / "lr").mkdir()
    save_image(y[0].clamp(-1, 1), tmp_path / "lr" / "a.png")
    with pytest.raises(SystemExit) as done:
        sample_main([f"ckpt={ddpm_run}", f"input={tmp_path / 'lr'}", f"output={tmp_path / 'out'}", "nfe=3",
                     "progress=false"])
    assert done.value.code == 0, capsys.readouterr().err
    out = np.asarray(Image.open(tmp_path / "out" / "a.png"))
    lr = torch.from_numpy(np.asarray(Image.open(tmp_path / "lr" / "a.png")).copy()).permute(2, 0, 1)[None] / 127.5 - 1
    api = i2sb.load(ddpm_run).restore(degrade.upsample_measurement("sr4x_pool", lr.float()), nfe=3,
                                      generator=[image_generator(0, "a.png")])
    assert out.shape == (16, 16, 3)
    np.testing.assert_array_equal(out, ((api[0].permute(1, 2, 0) + 1) * 127.5 + 0.5).clamp(0, 255)
                                  .to(torch.uint8).numpy())
