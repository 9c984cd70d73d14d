"""Gaussian diffusion (i2sb.diffusion): ADM's schedule, Ho et al.'s identities, DDIM-η, and sampling an
analytic Gaussian prior whose exact eps(x_t, t) is known in closed form."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from i2sb.baselines.gaussian import GaussianDataEps, GaussianDiffusion, adm_linear_betas


def test_adm_linear_schedule():
    betas = adm_linear_betas(1000)
    assert betas.dtype == np.float64 and betas.shape == (1000,)
    assert betas[0] == pytest.approx(1e-4) and betas[-1] == pytest.approx(2e-2)
    np.testing.assert_allclose(np.diff(betas), (2e-2 - 1e-4) / 999, rtol=1e-9)
    np.testing.assert_allclose(adm_linear_betas(100), np.linspace(1e-3, 0.2, 100))  # ADM scales by 1000 / n
    d = GaussianDiffusion.linear(1000)
    ab = d.alphas_cumprod
    assert ab.dtype == torch.float64 and ab.shape == (1001,) and float(ab[0]) == 1.0
    assert torch.all(ab[1:] < ab[:-1])
    np.testing.assert_allclose(float(ab[-1]), np.prod(1 - betas), rtol=1e-12)
    assert float(ab[-1]) == pytest.approx(4.0358e-5, rel=1e-3)


def test_q_sample_and_its_inverses():
    d = GaussianDiffusion.linear(100)
    g = torch.Generator().manual_seed(0)
    x0 = torch.rand(5, 3, 8, 8, dtype=torch.float64, generator=g) * 2 - 1
    eps = torch.randn(x0.shape, dtype=torch.float64, generator=g)
    step = torch.tensor([1, 7, 50, 99, 100])
    xt = d.q_sample(step, x0, eps)
    a = d.alphas_cumprod[step].sqrt().view(-1, 1, 1, 1)
    torch.testing.assert_close(xt, a * x0 + (1 - a**2).sqrt() * eps, rtol=0, atol=1e-12)  # Ho Eq. 4
    torch.testing.assert_close(d.pred_x0(step, xt, eps), x0, rtol=0, atol=1e-10)
    torch.testing.assert_close(d.pred_eps(step, xt, x0), eps, rtol=0, atol=1e-10)
    big = d.q_sample(50, torch.zeros(20000, 1), generator=g)  # the law of x_t
    ab = float(d.alphas_cumprod[50])
    assert float(big.std()) == pytest.approx(math.sqrt(1 - ab), rel=0.03)


def test_timesteps_match_the_bridge_spacing():
    d = GaussianDiffusion.linear(1000)
    assert d.timesteps(1) == [0, 1000]
    assert d.timesteps(2) == [0, 500, 1000]
    assert d.timesteps(1000) == list(range(1001))
    steps = d.timesteps(10)
    assert len(steps) == 11 and steps[0] == 0 and steps[-1] == 1000 and steps == sorted(steps)
    for bad in (0, 1001, 2.0, True):
        with pytest.raises(ValueError, match="nfe"):
            d.timesteps(bad)


@pytest.mark.parametrize("prev_step, step", [(0, 1), (5, 6), (10, 60), (0, 100), (37, 100)])
def test_ddim_eta_one_is_the_ddpm_posterior(prev_step, step):
    """DDIM Eq. 12 with eta = 1 and eps = (x_t - a_t x0) / b_t is Ho et al.'s q(x_s | x_t, x0) (Eqs. 6-7)."""
    d = GaussianDiffusion.linear(100)
    c_x0, c_eps, std = d.ddim_coefs(prev_step, step, eta=1.0)
    a_t = math.sqrt(float(d.alphas_cumprod[step]))
    b_t = math.sqrt(1 - a_t**2)
    p_x0, p_xt, p_std = d.posterior_coefs(prev_step, step)
    assert c_eps / b_t == pytest.approx(p_xt, rel=1e-9, abs=1e-12)
    assert c_x0 - c_eps * a_t / b_t == pytest.approx(p_x0, rel=1e-9, abs=1e-12)
    assert std == pytest.approx(p_std, rel=1e-9, abs=1e-12)
    if prev_step + 1 == step:  # one original step: beta_t (1 - ab_{t-1}) / (1 - ab_t), Ho Eq. 7
        beta = float(d.betas[step - 1])
        ab_s, ab_t = float(d.alphas_cumprod[prev_step]), float(d.alphas_cumprod[step])
        assert p_std**2 == pytest.approx(beta * (1 - ab_s) / (1 - ab_t), rel=1e-9, abs=1e-15)
    # eta = 0: deterministic, and every eta keeps the total variance 1 - ab_s
    assert d.ddim_coefs(prev_step, step, 0.0)[2] == 0.0
    for eta in (0.0, 0.5, 1.0):
        c_x0, c_eps, std = d.ddim_coefs(prev_step, step, eta)
        assert c_eps**2 + std**2 == pytest.approx(1 - c_x0**2, abs=1e-12)


def test_exact_eps_of_a_gaussian_prior():
    """GaussianDataEps is E[eps | x_t]: regressing eps on x_t over simulated pairs gives its coefficients."""
    d = GaussianDiffusion.linear(100)
    model = GaussianDataEps(d, 0.3, 0.5)
    g = torch.Generator().manual_seed(1)
    x0 = 0.3 + 0.5 * torch.randn(200000, 1, 1, 1, dtype=torch.float64, generator=g)
    eps = torch.randn(x0.shape, dtype=torch.float64, generator=g)
    step = torch.full((x0.shape[0],), 40)
    xt = d.q_sample(step, x0, eps)
    residual = eps - model(xt, step)
    assert abs(float(residual.mean())) < 5 / math.sqrt(x0.shape[0])
    assert abs(float((residual * (xt - xt.mean())).mean())) < 5 * float(xt.std()) / math.sqrt(x0.shape[0])


def _tolerance(samples: torch.Tensor, d: GaussianDiffusion, mean: torch.Tensor) -> float:
    """5 standard errors of the sample mean plus the bias of starting at N(0, I) instead of
    N(sqrt(ab_N) mean, ...): at most sqrt(ab_N) max|mean| (the sampler's gain from x_T is <= 1 for std <= 1)."""
    n = samples.shape[0]
    return 5 * float(samples.std(0).max()) / math.sqrt(n) + math.sqrt(float(d.alphas_cumprod[-1])) * float(
        mean.abs().max())


@pytest.mark.parametrize("nfe, eta", [(1, 1.0), (10, 0.0), (10, 1.0), (100, 0.5)])
def test_sampling_an_analytic_prior_has_its_mean(nfe, eta):
    d = GaussianDiffusion.linear(100)
    mean = torch.linspace(-0.6, 0.6, 48, dtype=torch.float64).view(3, 4, 4)
    model = GaussianDataEps(d, mean, 0.3)
    g = torch.Generator().manual_seed(2)
    x_T = torch.randn(4000, 3, 4, 4, dtype=torch.float64, generator=g)
    x = d.sample(lambda xt, step: model(xt, step), x_T, nfe, eta=eta, generator=g)
    assert float((x.mean(0) - mean).abs().max()) < _tolerance(x, d, mean)


def _sampler_variance(d: GaussianDiffusion, nfe: int, eta: float, std: float) -> float:
    """Exact variance of the sampler's output for data N(mean, std^2): each step is linear in x_t,
    x_s = alpha x_t + const + sigma z with alpha = c_x0 k + c_eps (1 - a_t k) / b_t, k = a_t std^2 / Var(x_t | data)."""
    steps, var = d.timesteps(nfe), 1.0  # x_T ~ N(0, I)
    for prev_step, step in list(zip(steps[:-1], steps[1:]))[::-1]:
        a_t = math.sqrt(float(d.alphas_cumprod[step]))
        b_t = math.sqrt(1 - a_t**2)
        k = a_t * std**2 / (a_t**2 * std**2 + b_t**2)
        c_x0, c_eps, sigma = d.ddim_coefs(prev_step, step, eta)
        var = (c_x0 * k + c_eps * (1 - a_t * k) / b_t) ** 2 * var + sigma**2
    return var


@pytest.mark.parametrize("nfe, eta", [(100, 1.0), (10, 1.0), (10, 0.0)])
def test_sampling_an_analytic_prior_has_the_exact_variance(nfe, eta):
    """The sample variance is the one the DDIM-η recursion implies (about the prior's with many steps;
    DDPM misses Var[x0 | x_t] per step and coarse DDIM contracts, both known properties)."""
    d = GaussianDiffusion.linear(100)
    model = GaussianDataEps(d, 0.2, 0.3)
    g = torch.Generator().manual_seed(3)
    n = 20000
    x = d.sample(lambda xt, step: model(xt, step), torch.randn(n, 1, 1, 1, dtype=torch.float64, generator=g),
                 nfe, eta=eta, generator=g)
    expected = _sampler_variance(d, nfe, eta, 0.3)
    assert float(x.var()) == pytest.approx(expected, abs=5 * expected * math.sqrt(2 / n))
    if nfe == 100:
        assert expected == pytest.approx(0.3**2, rel=0.25)


def test_sample_calls_back_constrains_and_clips():
    d = GaussianDiffusion.linear(100)
    g = torch.Generator().manual_seed(4)
    calls = []
    known = torch.full((2, 3, 4, 4), 0.25)
    keep = torch.zeros(1, 1, 4, 4)
    keep[..., :2] = 1

    def constrain(x):
        return keep * known + (1 - keep) * x

    out = d.sample(lambda xt, step: torch.full_like(xt, 7.0), torch.randn(2, 3, 4, 4, generator=g), 4, eta=0.0,
                   clip_denoise=True, generator=g, constrain=constrain,
                   callback=lambda prev, step, x, x0: calls.append((prev, step, float(x0.abs().max()))))
    assert [c[:2] for c in calls] == [(75, 100), (50, 75), (25, 50), (0, 25)]
    assert all(c[2] <= 1.0 for c in calls)  # clamped x0 predictions
    assert torch.all(out[..., :2] == 0.25) and float(out.abs().max()) <= 1.0 + 1e-6
