"""The bridge math checked against the paper's own statements and the authors' numbers.

Fixture ``bridge_authors.npz``: coefficient tables, step lists and OT-ODE sampler outputs produced by the
authors' ``i2sb/diffusion.py`` (see tests/fixtures/README.md).
"""

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from i2sb.bridge import Bridge, Trajectory, space_indices, symmetric_betas

sys.path.insert(0, str(Path(__file__).parent))
from helpers import toy_predictor  # noqa: E402

FIXTURE = Path(__file__).parent / "fixtures" / "bridge_authors.npz"


@pytest.fixture(scope="module")
def ref():
    return dict(np.load(FIXTURE))


def chain_marginal(bridge: Bridge, n: int, start: int):
    """Exact law of the DDPM-posterior chain (Eq. 4) started at X_start = x1 with the true x0.

    The chain is the Brownian bridge of SDE (9a) pinned at x0 and at X_start = x1:
    X_n ~ N(x0 + s_n/s_start (x1 - x0), s_n (s_start - s_n)/s_start), s = std_fwd**2 (float64).
    """
    s_n, s_start = bridge.std_fwd[n] ** 2, bridge.std_fwd[start] ** 2
    return float(s_n / s_start), float(s_n * (s_start - s_n) / s_start)


# ---------------------------------------------------------------- schedule
@pytest.mark.parametrize("beta_max", [0.3, 1.0])
def test_schedule_matches_authors(ref, beta_max):
    b = Bridge.symmetric(1000, beta_max)
    for name in ["betas", "std_fwd", "std_bwd", "std_sb", "mu_x0", "mu_x1"]:
        mine, theirs = getattr(b, name).numpy(), ref[f"{name}_{beta_max}"].astype(np.float64)
        assert getattr(b, name).dtype == torch.float64
        np.testing.assert_allclose(mine, theirs, rtol=1e-6, atol=0, err_msg=name)


@pytest.mark.parametrize("beta_max", [0.3, 1.0])
def test_schedule_symmetry_and_boundaries(beta_max):
    b = Bridge.symmetric(1000, beta_max)
    n = b.n_steps
    torch.testing.assert_close(b.betas, b.betas.flip(0), rtol=0, atol=0)
    torch.testing.assert_close(b.std_fwd, b.std_bwd.flip(0), rtol=1e-12, atol=0)
    torch.testing.assert_close(b.mu_x0, b.mu_x1.flip(0), rtol=1e-12, atol=1e-15)
    torch.testing.assert_close(b.std_sb, b.std_sb.flip(0), rtol=1e-12, atol=0)
    torch.testing.assert_close(b.mu_x0 + b.mu_x1, torch.ones(n, dtype=torch.float64))
    # beta ramps from 1e-4 up to the middle and back; the peak is below beta_max / n
    assert b.betas[0] == pytest.approx(1e-4, rel=1e-12)
    assert b.betas.max() < beta_max / n and torch.argmax(b.betas) in (n // 2 - 1, n // 2)
    # both ends are nearly deterministic: std_sb ~ sqrt(beta_0) = 1e-2
    assert b.std_sb[0] == pytest.approx(1e-2, rel=1e-2) and b.std_sb[-1] == pytest.approx(1e-2, rel=1e-2)
    assert b.mu_x0[0] > 0.999 and b.mu_x1[-1] > 0.999
    assert torch.argmax(b.std_sb) in (n // 2 - 1, n // 2)


def test_schedule_rejects_bad_arguments():
    with pytest.raises(ValueError, match="even"):
        symmetric_betas(999, 0.3)
    with pytest.raises(ValueError, match="beta_max"):
        Bridge.symmetric(100, 0.0)
    with pytest.raises(ValueError, match="positive"):
        Bridge([0.1, 0.0, 0.1])


# ---------------------------------------------------------------- timesteps
def test_timesteps_match_authors(ref):
    b = Bridge.symmetric(1000, 0.3)
    assert b.timesteps(2) == [0, 500, 999]
    assert b.timesteps(1) == [0, 999]
    for nfe in [1, 2, 3, 5, 10, 20, 50, 100, 999]:
        assert b.timesteps(nfe) == ref[f"steps_nfe{nfe}"].tolist(), nfe
    assert b.timesteps(5) == [0, 200, 400, 599, 799, 999]  # float accumulation, as the authors'


@pytest.mark.parametrize("nfe", [0, 1000, -3, 2.5, True])
def test_timesteps_reject_bad_nfe(nfe):
    with pytest.raises(ValueError, match="nfe"):
        Bridge.symmetric(1000, 0.3).timesteps(nfe)


def test_space_indices_properties():
    for num, count in [(10, 10), (1000, 11), (17, 4)]:
        idx = space_indices(num, count)
        assert idx[0] == 0 and idx[-1] == num - 1 and len(idx) == count
        assert all(a < b for a, b in zip(idx, idx[1:]))


# ---------------------------------------------------------------- Eq. 11
def test_q_sample_boundaries():
    b = Bridge.symmetric(1000, 0.3)
    x0, x1 = torch.rand(4, 3, 8, 8) * 2 - 1, torch.rand(4, 3, 8, 8) * 2 - 1
    first, last = torch.zeros(4, dtype=torch.long), torch.full((4,), 999, dtype=torch.long)
    assert (b.q_sample(first, x0, x1) - x0).abs().max() < 0.06  # std_sb[0] ~ 0.01
    assert (b.q_sample(last, x0, x1) - x1).abs().max() < 0.06
    assert (b.q_sample(first, x0, x1, ot_ode=True) - x0).abs().max() < 2e-3
    assert (b.q_sample(last, x0, x1, ot_ode=True) - x1).abs().max() < 2e-3


def test_q_sample_moments_and_explicit_noise():
    b = Bridge.symmetric(1000, 1.0)
    step = torch.tensor([0, 250, 500, 999])
    x0, x1 = torch.full((4, 1, 1, 1), -0.5, dtype=torch.float64), torch.full((4, 1, 1, 1), 0.75, dtype=torch.float64)
    noise = torch.randn(4, 1, 1, 1, dtype=torch.float64)
    xt = b.q_sample(step, x0, x1, noise=noise)
    expect = b.mu_x0[step] * -0.5 + b.mu_x1[step] * 0.75 + b.std_sb[step] * noise.flatten()
    torch.testing.assert_close(xt.flatten(), expect, rtol=1e-12, atol=1e-12)
    # Monte Carlo: mean and variance of Eq. 11 at one step
    m = 200_000
    s = torch.full((m,), 400)
    draws = b.q_sample(s, torch.full((m, 1, 1, 1), -0.5), torch.full((m, 1, 1, 1), 0.75))
    mean, var = float(b.mu_x0[400] * -0.5 + b.mu_x1[400] * 0.75), float(b.std_sb[400] ** 2)
    assert abs(draws.mean().item() - mean) < 5 * var**0.5 / m**0.5
    assert abs(draws.var().item() - var) < 5 * var * (2 / (m - 1)) ** 0.5


def test_int_step_broadcasts_and_ot_ode_ignores_noise():
    b = Bridge.symmetric(100, 0.3)
    x0, x1 = torch.randn(3, 2, 4, 4), torch.randn(3, 2, 4, 4)
    a = b.q_sample(37, x0, x1, ot_ode=True)
    c = b.q_sample(torch.full((3,), 37), x0, x1, ot_ode=True, noise=torch.randn(3, 2, 4, 4))
    torch.testing.assert_close(a, c)


# ---------------------------------------------------------------- Eq. 12
def test_target_and_pred_x0_are_inverse():
    b = Bridge.symmetric(1000, 0.3)
    step = torch.randint(0, 1000, (6,))
    x0, x1 = torch.rand(6, 3, 8, 8) * 2 - 1, torch.rand(6, 3, 8, 8) * 2 - 1
    xt = b.q_sample(step, x0, x1)
    label = b.target(step, x0, xt)
    torch.testing.assert_close(b.pred_x0(step, xt, label), x0, rtol=1e-5, atol=1e-5)
    expect = (xt - x0) / b.std_fwd[step].float().view(-1, 1, 1, 1)
    torch.testing.assert_close(label, expect)
    clipped = b.pred_x0(step, xt, label * 50, clip_denoise=True)
    assert clipped.min() >= -1 and clipped.max() <= 1


# ---------------------------------------------------------------- argument checks
def test_argument_validation():
    b = Bridge.symmetric(100, 0.3)
    x = torch.zeros(2, 3, 4, 4)
    with pytest.raises(ValueError, match="same shape"):
        b.q_sample(torch.tensor([1, 2]), x, torch.zeros(2, 3, 4, 5))
    with pytest.raises(ValueError, match="integer"):
        b.q_sample(torch.tensor([1.0, 2.0]), x, x)
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        b.target(torch.tensor([1, 2, 3]), x, x)
    with pytest.raises(ValueError, match="outside"):
        b.pred_x0(100, x, x)
    with pytest.raises(ValueError, match="prev_step"):
        b.posterior_sample(5, 5, x, x)
    with pytest.raises(ValueError, match="noise"):
        b.q_sample(1, x, x, noise=torch.zeros(1))


# ---------------------------------------------------------------- Eq. 4 / Proposition 3.3
def test_posterior_coefficients_are_the_gaussian_product():
    b = Bridge.symmetric(1000, 0.3)
    c_x0, c_xn, std = b.posterior_coefs(200, 300)
    s_prev, s_n = float(b.std_fwd[200] ** 2), float(b.std_fwd[300] ** 2)
    assert c_x0 == pytest.approx((s_n - s_prev) / s_n, rel=1e-12)
    assert c_xn == pytest.approx(s_prev / s_n, rel=1e-12)
    assert std**2 == pytest.approx(s_prev * (s_n - s_prev) / s_n, rel=1e-12)


def test_posterior_sample_noise_rules():
    b = Bridge.symmetric(1000, 0.3)
    xt, x0 = torch.randn(2, 3, 4, 4), torch.randn(2, 3, 4, 4)
    noise = torch.randn(2, 3, 4, 4)
    c_x0, c_xn, std = b.posterior_coefs(100, 400)
    torch.testing.assert_close(b.posterior_sample(100, 400, xt, x0, noise=noise), c_x0 * x0 + c_xn * xt + std * noise)
    # no noise at the last step (prev_step 0) and none for the OT-ODE
    c_x0, c_xn, _ = b.posterior_coefs(0, 400)
    torch.testing.assert_close(b.posterior_sample(0, 400, xt, x0, noise=noise), c_x0 * x0 + c_xn * xt)
    a = b.posterior_sample(100, 400, xt, x0, ot_ode=True)
    torch.testing.assert_close(a, b.posterior_sample(100, 400, xt, x0, ot_ode=True))


@pytest.mark.parametrize("beta_max,nfe", [(0.3, 999), (1.0, 999), (1.0, 10)])
def test_proposition_3_3_ddpm_chain_reproduces_q(beta_max, nfe):
    """Running Eq. 4 from X_N = x1 with the exact x0 gives the marginals q(X_n | X_0, X_1) of Eq. 11.

    The authors' discretisation puts beta_n into both sigma_n^2 and bar sigma_n^2, so sigma^2 + bar sigma^2
    is S + beta_n instead of the constant S of the paper's proof: the chain matches Eq. 11 up to a
    O(beta_n / S) gap, below 0.5 % of the bridge's peak variance (relatively larger only in the last few
    steps, where the chain starts pinned at x1 while Eq. 11 keeps std_sb ~ 1e-2). The tolerance below is
    that exact gap plus 5 standard errors of the Monte Carlo estimate.
    """
    b = Bridge.symmetric(1000, beta_max)
    m = 100_000
    x0_val, x1_val = -0.6, 0.8
    x0 = torch.full((m, 1, 1, 1), x0_val, dtype=torch.float64)
    x1 = torch.full((m, 1, 1, 1), x1_val, dtype=torch.float64)
    steps = b.timesteps(nfe)
    check = [s for s in steps if s in (steps[1], steps[len(steps) // 4], steps[len(steps) // 2], steps[-3])]
    traj = Trajectory(log_steps=check, device="cpu")
    b.sample(lambda xt, step: x0, x1, nfe, generator=torch.Generator().manual_seed(1), callback=traj)
    assert sorted(traj.steps) == sorted(check)
    for n, xs in zip(traj.steps, traj.xs):
        q_mean = float(b.mu_x0[n] * x0_val + b.mu_x1[n] * x1_val)
        q_var = float(b.std_sb[n] ** 2)
        c, v = chain_marginal(b, n, b.n_steps - 1)
        gap_mean, gap_var = abs(x0_val + c * (x1_val - x0_val) - q_mean), abs(v - q_var)
        assert gap_var < 5e-3 * float(b.std_sb.max()) ** 2 and gap_mean < 2e-3  # the gap is small...
        mean, var = xs.mean().item(), xs.var().item()
        assert abs(mean - q_mean) < gap_mean + 5 * (q_var / m) ** 0.5, n  # ...and all the chain differs by
        assert abs(var - q_var) < gap_var + 5 * q_var * (2 / (m - 1)) ** 0.5, n


def test_chain_is_exact_brownian_bridge():
    """The exact chain law (float64) equals the pinned-bridge formula used above, step by step."""
    b = Bridge.symmetric(200, 0.5)
    top = b.n_steps - 1
    coef, var = 1.0, 0.0  # X_top = x1 exactly: x1-coefficient 1, variance 0
    for prev in range(top - 1, -1, -1):
        c_x0, c_xn, std = b.posterior_coefs(prev, prev + 1)
        coef, var = c_xn * coef, c_xn**2 * var + (std**2 if prev > 0 else 0.0)
        if prev > 0:
            c, v = chain_marginal(b, prev, top)
            assert coef == pytest.approx(c, rel=1e-9) and var == pytest.approx(v, rel=1e-9)


# ---------------------------------------------------------------- Prop. 3.4 / Corollary 3.5
def test_ot_ode_is_deterministic_and_follows_posterior_mean():
    b = Bridge.symmetric(1000, 1.0)
    x0 = torch.rand(2, 3, 8, 8, dtype=torch.float64) * 2 - 1
    x1 = torch.rand(2, 3, 8, 8, dtype=torch.float64) * 2 - 1
    traj = Trajectory()
    out1 = b.sample(lambda xt, s: x0, x1, 20, ot_ode=True, generator=torch.Generator().manual_seed(1), callback=traj)
    out2 = b.sample(lambda xt, s: x0, x1, 20, ot_ode=True, generator=torch.Generator().manual_seed(2))
    torch.testing.assert_close(out1, out2, rtol=0, atol=0)
    for n, xs in zip(traj.steps, traj.xs):
        c, _ = chain_marginal(b, n, b.n_steps - 1)
        torch.testing.assert_close(xs, x0 + c * (x1 - x0), rtol=1e-10, atol=1e-12)  # exact path
        q_mean = b.mu_x0[n] * x0 + b.mu_x1[n] * x1  # posterior mean of Eq. 11, up to O(beta/S)
        assert (xs - q_mean).abs().max() < 3e-3


def test_corollary_3_5_constant_beta_gives_ot_displacement():
    """Constant small beta: mu_t = (1-t) x0 + t x1 and the OT-ODE moves at constant velocity."""
    n = 100
    b = Bridge(np.full(n, 1e-5))
    t = (torch.arange(n, dtype=torch.float64) + 1) / (n + 1)  # sigma_n^2 / (sigma_n^2 + bar sigma_n^2)
    torch.testing.assert_close(b.mu_x1, t, rtol=1e-12, atol=0)
    torch.testing.assert_close(b.mu_x0, 1 - t, rtol=1e-12, atol=0)
    x0, x1 = torch.randn(1, 1, 4, 4, dtype=torch.float64), torch.randn(1, 1, 4, 4, dtype=torch.float64)
    traj = Trajectory()
    b.sample(lambda xt, s: x0, x1, n - 1, ot_ode=True, callback=traj)
    path = torch.stack([x1[0]] + [x[0] for x in traj.xs])  # from step n-1 down to 0
    velocity = path[:-1] - path[1:]
    torch.testing.assert_close(velocity, velocity[:1].expand_as(velocity), rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(velocity[0], (x1[0] - x0[0]) / n, rtol=1e-9, atol=1e-12)


# ---------------------------------------------------------------- Algorithm 2 vs the authors
@pytest.mark.parametrize("beta_max", [0.3, 1.0])
@pytest.mark.parametrize("nfe", [1, 3, 10])
def test_sampler_matches_authors_ot_ode(ref, beta_max, nfe):
    b = Bridge.symmetric(1000, beta_max)
    x1, mask = torch.from_numpy(ref["sampler_x1"]), torch.from_numpy(ref["sampler_mask"])
    out = b.sample(toy_predictor, x1, nfe, ot_ode=True)
    np.testing.assert_allclose(out.numpy(), ref[f"sampler_otode_{beta_max}_nfe{nfe}"], rtol=1e-5, atol=1e-5)
    # masked: the hole of x1 is filled with the generator's first N(0,1) draw, as in the fixture
    out = b.sample(toy_predictor, x1, nfe, ot_ode=True, mask=mask, generator=torch.Generator().manual_seed(123))
    np.testing.assert_allclose(out.numpy(), ref[f"sampler_otode_mask_{beta_max}_nfe{nfe}"], rtol=1e-5, atol=1e-5)


def test_sampler_mask_keeps_known_region_and_generator_reproduces():
    b = Bridge.symmetric(1000, 0.3)
    x1 = torch.rand(2, 3, 8, 8) * 2 - 1
    mask = torch.zeros(2, 1, 8, 8)
    mask[..., 2:6, 2:6] = 1
    run = lambda seed: b.sample(toy_predictor, x1, 5, mask=mask, generator=torch.Generator().manual_seed(seed))
    a, a2, c = run(0), run(0), run(1)
    torch.testing.assert_close(a, a2, rtol=0, atol=0)
    assert not torch.equal(a, c)
    known = (1 - mask).bool().expand_as(a)
    assert (a[known] - x1[known]).abs().max() < 0.06  # x1 + std_sb[0] noise, std_sb[0] ~ 0.01
    ode = b.sample(toy_predictor, x1, 5, mask=mask, ot_ode=True, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(ode[known], x1[known])


def test_sampler_nfe_calls_clip_and_trajectory():
    b = Bridge.symmetric(1000, 0.3)
    calls = []

    def predictor(xt, step):
        calls.append(step.clone())
        assert step.dtype == torch.long and step.shape == (xt.shape[0],)
        return xt * 10

    traj = Trajectory(log_steps=[0, 500])
    b.sample(predictor, torch.randn(3, 3, 4, 4), 4, clip_denoise=True, callback=traj)
    assert [int(c[0]) for c in calls] == b.timesteps(4)[1:][::-1]
    assert traj.steps == [500, 0]
    xs, preds = traj.stacked()
    assert xs.shape == preds.shape == (3, 2, 3, 4, 4)
    assert preds.abs().max() <= 1.0


@pytest.mark.parametrize("dtype", [torch.float64, torch.bfloat16])
def test_sampler_keeps_dtype(dtype):
    b = Bridge.symmetric(1000, 0.3)
    x1 = torch.rand(1, 3, 4, 4).to(dtype)
    out = b.sample(lambda xt, s: torch.zeros_like(xt), x1, 3, ot_ode=True)
    assert out.dtype == dtype and out.shape == x1.shape
    ref = b.sample(lambda xt, s: torch.zeros_like(xt), x1.double(), 3, ot_ode=True)
    torch.testing.assert_close(out.double(), ref, rtol=2e-2, atol=2e-2)
