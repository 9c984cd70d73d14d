"""The faster samplers against the authors' sampler, the bridge's law and a fine-grid OT-ODE reference."""

import functools
import math
import sys
from pathlib import Path

import pytest
import torch

from i2sb.bridge import Bridge, Trajectory
from i2sb.core.sampler_coefs import chain_marginal, heun_coefs, implicit_coefs, ode_coefs
from i2sb.core.samplers import (SAMPLERS, bind_sampler, check_sampler, heun_steps, sample_heun, sample_implicit,
                                sampler_eta)
from i2sb.restoration.folder import log_steps

sys.path.insert(0, str(Path(__file__).parent))
from helpers import bridge_restorer, random_image, run_cli, toy_predictor, write_run  # noqa: E402

F64 = torch.float64


def sample(b, denoiser, x1, nfe, *, sampler="ddpm", eta=None, ot_ode=None, mask=None, generator=None,
           callback=None, **knobs):
    """``sample_<sampler>`` as :class:`~i2sb.restoration.Restorer` runs it: the values checked and the steps
    computed once by the caller (the registry), then the sampler called with its one signature."""
    ot_ode = bool(SAMPLERS[sampler].ot_ode) if ot_ode is None else ot_ode
    check_sampler(sampler, ot_ode)
    run = bind_sampler(sampler, nfe, sampler_eta(sampler, eta), ot_ode)
    return run(denoiser, x1, SAMPLERS[sampler].steps(b, nfe), b, mask=mask, generator=generator, callback=callback,
               **knobs)


implicit = functools.partial(sample, sampler="implicit")
heun = functools.partial(sample, sampler="heun")
multistep = functools.partial(sample, sampler="multistep")


def denoiser_like(bridge):
    """x0_hat = X - mu_x1[n] g(X): a smooth guess of x1 - x0 scaled as in Eq. 11, so x0_hat -> X at the clean
    end, as for a trained network (the error-vs-NFE tests need a predictor shaped like a real one)."""

    def predict(xt, step):
        mu_x1 = bridge.mu_x1.to(device=xt.device, dtype=xt.dtype)[step.to(xt.device)].view(-1, 1, 1, 1)
        return xt - mu_x1 * (0.6 * torch.tanh(1.3 * xt) + 0.2)

    return predict


def images(seed, shape=(2, 3, 8, 8), dtype=F64):
    g = torch.Generator().manual_seed(seed)
    return (torch.rand(shape, generator=g, dtype=dtype) * 2 - 1)


def hole(shape=(2, 1, 8, 8)):
    mask = torch.zeros(shape)
    mask[..., 2:6, 3:7] = 1
    return mask


# ---------------------------------------------------------------------------- implicit: eta = 1 is Eq. 4
@pytest.mark.parametrize("prev_step,step", [(0, 999), (500, 999), (100, 200), (0, 5), (3, 4), (998, 999)])
def test_eta_one_has_the_ddpm_posterior_coefficients(prev_step, step):
    b = Bridge.symmetric(1000, 1.0)
    c = implicit_coefs(b, prev_step, step, 1.0)
    c_x0, c_xn, std = b.posterior_coefs(prev_step, step)
    assert abs(c.c_x1) < 1e-15
    assert c.c_x0 == pytest.approx(c_x0, rel=1e-12) and c.c_xt == pytest.approx(c_xn, rel=1e-12)
    assert c.std == pytest.approx(std, rel=1e-12)


@pytest.mark.parametrize("nfe", [1, 3, 10])
@pytest.mark.parametrize("masked", [False, True])
def test_eta_one_equals_the_authors_sampler_step_for_step(nfe, masked):
    b = Bridge.symmetric(1000, 0.3)
    x1, mask = images(0), hole() if masked else None
    trajs = Trajectory(), Trajectory()
    ref = b.sample(toy_predictor, x1, nfe, mask=mask, generator=torch.Generator().manual_seed(5), callback=trajs[0])
    out = implicit(b, toy_predictor, x1, nfe, eta=1.0, mask=mask, generator=torch.Generator().manual_seed(5),
                          callback=trajs[1])
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
    assert trajs[0].steps == trajs[1].steps
    for a, c in zip(trajs[0].xs + trajs[0].pred_x0s, trajs[1].xs + trajs[1].pred_x0s):
        torch.testing.assert_close(a, c, rtol=0, atol=1e-12)


def test_booting_step_is_eq4_for_every_eta():
    b = Bridge.symmetric(1000, 0.3)
    for eta in (0.0, 0.4, 1.0):
        assert implicit_coefs(b, 300, 999, eta) == implicit_coefs(b, 300, 999, 1.0)


# ---------------------------------------------------------------------------- implicit: the law of every eta
def test_coefficients_keep_the_chain_law_for_every_eta():
    """c^2 V_t + std^2 = V_s, and the mean map sends m_t to m_s, for a grid of eta and step pairs (exact)."""
    b = Bridge.symmetric(1000, 1.0)
    for prev_step, step in [(0, 7), (10, 400), (399, 400), (250, 998)]:
        (a_s, v_s), (a_t, v_t) = chain_marginal(b, prev_step), chain_marginal(b, step)
        for eta in (0.0, 0.25, 0.5, 0.9, 1.0):
            c = implicit_coefs(b, prev_step, step, eta)
            assert c.c_xt**2 * v_t + c.std**2 == pytest.approx(v_s, rel=1e-10)
            assert c.c_x0 + c.c_xt * (1 - a_t) == pytest.approx(1 - a_s, abs=1e-12)
            assert c.c_x1 + c.c_xt * a_t == pytest.approx(a_s, abs=1e-12)
            assert c.std == pytest.approx(eta * b.posterior_coefs(prev_step, step)[2], rel=1e-12)


@pytest.mark.parametrize("eta", [0.0, 0.5, 1.0])
def test_every_eta_samples_the_bridge_marginals(eta):
    """Monte Carlo with the exact x0: X_n ~ the chain's law exactly, i.e. Eq. 11 up to its O(beta/S) gap."""
    b = Bridge.symmetric(1000, 1.0)
    m, x0_val, x1_val = 200_000, -0.6, 0.8
    x0 = torch.full((m, 1, 1, 1), x0_val, dtype=F64)
    x1 = torch.full((m, 1, 1, 1), x1_val, dtype=F64)
    steps = b.timesteps(10)
    traj = Trajectory(log_steps=steps[1:-1])
    implicit(b, lambda xt, s: x0, x1, 10, eta=eta, generator=torch.Generator().manual_seed(11), callback=traj)
    assert traj.steps == steps[1:-1][::-1]
    for n, xs in zip(traj.steps, traj.xs):
        a, v = chain_marginal(b, n)
        mean, var = xs.mean().item(), xs.var().item()
        assert abs(mean - (x0_val + a * (x1_val - x0_val))) < 5 * (v / m) ** 0.5, n
        assert abs(var - v) < 5 * v * (2 / (m - 1)) ** 0.5, n
        q_mean, q_var = float(b.mu_x0[n] * x0_val + b.mu_x1[n] * x1_val), float(b.std_sb[n] ** 2)
        gap_mean, gap_var = abs(x0_val + a * (x1_val - x0_val) - q_mean), abs(v - q_var)
        assert gap_var < 5e-3 * float(b.std_sb.max()) ** 2 and gap_mean < 2e-3  # Eq. 11 vs the chain
        assert abs(mean - q_mean) < gap_mean + 5 * (q_var / m) ** 0.5
        assert abs(var - q_var) < gap_var + 5 * q_var * (2 / (m - 1)) ** 0.5


# ---------------------------------------------------------------------------- implicit: eta = 0
def test_eta_zero_is_deterministic_given_the_booting_noise():
    b = Bridge.symmetric(1000, 0.3)
    x1, boot = images(1), torch.randn(2, 3, 8, 8, dtype=F64, generator=torch.Generator().manual_seed(2))
    run = lambda seed, z: implicit(b, toy_predictor, x1, 8, eta=0.0, boot_noise=z,
                                          generator=torch.Generator().manual_seed(seed))
    torch.testing.assert_close(run(0, boot), run(1, boot), rtol=0, atol=0)
    assert (run(0, boot) - run(0, -boot)).abs().max() > 1e-3
    # without boot_noise, eta = 0 reads the generator once: the same as passing that first draw
    first = torch.randn(2, 3, 8, 8, dtype=F64, generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(run(7, None), run(3, first), rtol=0, atol=0)


def test_eta_zero_with_exact_x0_keeps_its_noise():
    """With the true x0, eta = 0 moves along X_n = m_n + sqrt(V_n) z (z the booting noise), exactly."""
    b = Bridge.symmetric(1000, 1.0)
    x0, x1, z = images(2), images(3), images(4)
    traj = Trajectory()
    implicit(b, lambda xt, s: x0, x1, 12, eta=0.0, boot_noise=z, callback=traj)
    for n, xs in zip(traj.steps[:-1], traj.xs[:-1]):
        a, v = chain_marginal(b, n)
        torch.testing.assert_close(xs, x0 + a * (x1 - x0) + math.sqrt(v) * z, rtol=0, atol=1e-12)
    a, v = chain_marginal(b, 0)  # the last step drops its noise, as the authors' sampler does
    assert (traj.xs[-1] - (x0 + a * (x1 - x0))).abs().max() < 3 * math.sqrt(v) * z.abs().max()


# ---------------------------------------------------------------------------- OT-ODE solvers
def test_ode_coefficients():
    b = Bridge.symmetric(1000, 0.3)
    for prev_step, step in [(0, 999), (0, 1), (300, 310), (500, 999)]:
        r, g, delta = ode_coefs(b, prev_step, step)
        c_x0, c_xn, _ = b.posterior_coefs(prev_step, step)
        assert r == pytest.approx(c_xn, rel=1e-12) and 0 < r <= g < 1
        assert delta == pytest.approx(float(b.std_fwd[step] ** 2 - b.std_fwd[prev_step] ** 2), rel=1e-12)
        c_xt, c_t, c_s = heun_coefs(b, prev_step, step)
        assert c_t >= 0 and c_s >= 0 and c_xt + c_t + c_s == pytest.approx(1.0, abs=1e-12)
    _, c_t, c_s = heun_coefs(b, 500, 501)  # small steps: the trapezoid rule
    assert c_t == pytest.approx(c_s, rel=1e-2)


@pytest.mark.parametrize("run", [heun, multistep])
@pytest.mark.parametrize("nfe", [1, 2, 3, 7])
def test_second_order_is_exact_for_a_constant_prediction(run, nfe):
    """With the true x0 every solver lands on the exact OT-ODE path (Prop. 3.4), so they all agree."""
    b = Bridge.symmetric(1000, 1.0)
    x0, x1 = images(5), images(6)
    first = b.sample(lambda xt, s: x0, x1, nfe, ot_ode=True)
    out = run(b, lambda xt, s: x0, x1, nfe)
    torch.testing.assert_close(out, first, rtol=0, atol=1e-12)
    a, _ = chain_marginal(b, 0)
    torch.testing.assert_close(out, x0 + a * (x1 - x0), rtol=0, atol=1e-12)


@pytest.mark.parametrize("run,nfe", [(heun, 1), (heun, 2), (multistep, 1)])
def test_low_nfe_second_order_reduces_to_the_authors_step(run, nfe):
    b = Bridge.symmetric(1000, 0.3)
    x1, mask = images(7), hole()
    for m in (None, mask):
        ref = b.sample(toy_predictor, x1, nfe, ot_ode=True, mask=m, generator=torch.Generator().manual_seed(1))
        out = run(b, toy_predictor, x1, nfe, mask=m, generator=torch.Generator().manual_seed(1))
        torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)


@pytest.mark.parametrize("sampler", ["ddpm", "implicit", "heun", "multistep"])
@pytest.mark.parametrize("nfe", [1, 2, 5, 6])
def test_every_sampler_spends_exactly_nfe_evaluations(sampler, nfe):
    b = Bridge.symmetric(1000, 0.3)
    calls = []

    def predictor(xt, step):
        calls.append(int(step[0]))
        assert step.dtype == torch.long and step.shape == (xt.shape[0],)
        return torch.tanh(xt)

    traj = Trajectory()
    sample(b, predictor, images(8), nfe, sampler=sampler, ot_ode=SAMPLERS[sampler].ot_ode or False, callback=traj)
    assert len(calls) == nfe
    steps = SAMPLERS[sampler].steps(b, nfe)
    assert steps[0] == 0 and steps[-1] == 999 and traj.steps == steps[:-1][::-1]
    assert set(calls) <= set(steps)


def test_second_order_converges_faster():
    """A smooth predictor shaped like a trained one: at equal NFE the 2nd-order solvers are closer to a fine-grid
    reference than the authors' first-order OT-ODE sampler, and their error falls ~4x per doubled NFE."""
    b = Bridge.symmetric(1000, 1.0)
    predict, x1 = denoiser_like(b), images(9, (1, 3, 8, 8))
    ref = heun(b, predict, x1, 999)
    assert (b.sample(predict, x1, 999, ot_ode=True) - ref).abs().max() < 5e-4  # the reference is converged
    err = {(name, nfe): (run(b, predict, x1, nfe) - ref).abs().max().item()
           for name, run in [("euler", lambda br, *a: br.sample(*a, ot_ode=True)), ("heun", heun),
                             ("multistep", multistep)]
           for nfe in (10, 20, 40)}
    for nfe in (10, 20, 40):
        assert err["heun", nfe] < 0.8 * err["euler", nfe] and err["multistep", nfe] < 0.6 * err["euler", nfe]
    assert 1.6 < err["euler", 10] / err["euler", 20] < 2.4  # first order
    assert err["heun", 20] / err["heun", 40] > 3 and err["multistep", 20] / err["multistep", 40] > 3


def test_ode_solvers_are_deterministic_and_keep_the_known_region():
    b = Bridge.symmetric(1000, 1.0)
    x1, mask = images(10), hole()
    for run in (heun, multistep):
        a = run(b, toy_predictor, x1, 5, generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(a, run(b, toy_predictor, x1, 5, generator=torch.Generator().manual_seed(1)),
                                   rtol=0, atol=0)
        m1 = run(b, toy_predictor, x1, 5, mask=mask, generator=torch.Generator().manual_seed(0))
        m2 = run(b, toy_predictor, x1, 5, mask=mask, generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(m1, m2, rtol=0, atol=0)  # the hole's fill is the only draw
        known = (mask == 0).expand_as(m1)
        torch.testing.assert_close(m1[known], x1[known], rtol=0, atol=0)
        assert (m1[~known] - a[~known]).abs().max() > 1e-3


def test_implicit_mask_keeps_the_known_region_near_x1():
    b = Bridge.symmetric(1000, 0.3)
    x1, mask = images(11), hole()
    known = (mask == 0).expand_as(x1)
    for eta in (0.0, 0.5):
        out = implicit(b, toy_predictor, x1, 6, eta=eta, mask=mask, generator=torch.Generator().manual_seed(3))
        assert (out[known] - x1[known]).abs().max() < 6 * float(b.std_sb[0])
    # eta = 0 freezes the known region's noise after the booting step: zeta = the boot noise at every step
    z, traj = images(12), Trajectory()
    implicit(b, toy_predictor, x1, 6, eta=0.0, mask=mask, boot_noise=z, callback=traj)
    for n, xs in zip(traj.steps, traj.xs):
        torch.testing.assert_close(xs[known], (x1 + float(b.std_sb[n]) * z)[known], rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------- dtype, device, dispatch, errors
@pytest.mark.parametrize("sampler", ["implicit", "heun", "multistep"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_samplers_keep_dtype_and_device(sampler, dtype):
    b = Bridge.symmetric(1000, 0.3)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    x1, z = images(13, (1, 3, 4, 4)).to(device), images(14, (1, 3, 4, 4)).to(device)
    pred = lambda xt, s: 0.9 * xt
    run = {"implicit": lambda x, **kw: implicit(b, pred, x, 3, eta=0.2, boot_noise=z.to(x), **kw),
           "heun": lambda x, **kw: heun(b, pred, x, 3, **kw),
           "multistep": lambda x, **kw: multistep(b, pred, x, 3, **kw)}[sampler]
    out = run(x1.to(dtype), mask=hole((1, 1, 4, 4)).to(device), generator=torch.Generator(device=device).manual_seed(0))
    assert out.dtype == dtype and out.device == x1.device and out.shape == x1.shape
    if sampler == "implicit":  # eta > 0 draws noise after the first step: compare the deterministic eta = 0
        run = lambda x, **kw: implicit(b, pred, x, 3, eta=0.0, boot_noise=z.to(x), **kw)
    tol = 5e-2 if dtype == torch.bfloat16 else 1e-5
    torch.testing.assert_close(run(x1.to(dtype)).double(), run(x1), rtol=tol, atol=tol)


def test_dispatch_equals_direct_calls():
    b = Bridge.symmetric(1000, 0.3)
    x1 = images(14)
    g = lambda: torch.Generator().manual_seed(4)
    torch.testing.assert_close(sample(b, toy_predictor, x1, 4, generator=g()),
                               b.sample(toy_predictor, x1, 4, generator=g()), rtol=0, atol=0)
    torch.testing.assert_close(sample(b, toy_predictor, x1, 4, sampler="implicit", generator=g()),
                               sample_implicit(toy_predictor, x1, b.timesteps(4), b, eta=0.0, generator=g()),
                               rtol=0, atol=0)
    torch.testing.assert_close(sample(b, toy_predictor, x1, 4, sampler="implicit", eta=0.3, generator=g()),
                               sample_implicit(toy_predictor, x1, b.timesteps(4), b, eta=0.3, generator=g()),
                               rtol=0, atol=0)
    torch.testing.assert_close(sample(b, toy_predictor, x1, 5, sampler="heun"),
                               sample_heun(toy_predictor, x1, b.timesteps(3), b, correct_first=True), rtol=0, atol=0)
    assert heun_steps(b, 5) == b.timesteps(3) and heun_steps(b, 6) == b.timesteps(4)


def test_argument_validation():
    """The checks at the edge (the samplers below them trust their values): sampler names and eta once, and the
    notebook's :meth:`Bridge.sample` / :meth:`Bridge.timesteps` on what a user passes them."""
    b = Bridge.symmetric(100, 0.3)
    x1 = torch.zeros(1, 3, 4, 4)
    cases = [
        (lambda: check_sampler("ddim", False), "must be one of"),
        (lambda: check_sampler("implicit", True), "SDE-trained"),
        (lambda: check_sampler("heun", False), "OT-ODE"),
        (lambda: sampler_eta("ddpm", 0.5), "eta applies"),
        (lambda: sampler_eta("implicit", 1.5), "must be in"),
        (lambda: sampler_eta("implicit", -0.1), "must be in"),
        (lambda: sampler_eta("implicit", True), "must be in"),
        (lambda: b.timesteps(0), "nfe"),
        (lambda: b.timesteps(100), "nfe"),
        (lambda: b.sample(toy_predictor, torch.zeros(3, 4, 4), 2), "x1 must be"),
        (lambda: b.sample(toy_predictor, x1, 2, mask=torch.zeros(1, 1, 5, 4)), "mask must"),
    ]
    for call, message in cases:
        with pytest.raises(ValueError, match=message):
            call()
    assert sampler_eta("implicit", None) == 0.0 and sampler_eta("heun", None) is None


# ---------------------------------------------------------------------------- Restorer and i2sb-sample
class PixelNet(torch.nn.Module):
    """A tiny per-pixel network with the U-Net interface (``config["channel_mult"]``, ``net(x, t)``)."""

    config = {"channel_mult": (1, 1)}

    def __init__(self):
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 3, 1)
        with torch.no_grad():
            self.conv.weight.copy_(torch.eye(3).view(3, 3, 1, 1) * 0.8 + 0.05)
            self.conv.bias.fill_(0.1)

    def forward(self, x, t):
        return torch.tanh(self.conv(x)) * (1 + t[:, None, None, None] / 200)


def pixel_restorer(ot_ode: bool):
    return bridge_restorer(PixelNet(), ot_ode=ot_ode)


def test_restorer_runs_every_sampler():
    x1 = torch.rand(2, 3, 16, 16) * 2 - 1
    g = lambda: torch.Generator().manual_seed(2)
    sde, ode = pixel_restorer(False), pixel_restorer(True)
    sde.restore = functools.partial(sde.restore, precision="fp32")  # exact comparisons below
    ode.restore = functools.partial(ode.restore, precision="fp32")
    torch.testing.assert_close(sde.restore(x1, nfe=4, sampler="implicit", eta=1.0, generator=g()),
                               sde.restore(x1, nfe=4, generator=g()), rtol=0, atol=1e-6)
    deterministic = sde.restore(x1, nfe=4, sampler="implicit", generator=g())  # eta = 0
    assert (deterministic - sde.restore(x1, nfe=4, generator=g())).abs().max() > 1e-3
    bridge = ode.kind.schedule
    for name, run in [("heun", heun), ("multistep", multistep)]:
        with torch.no_grad():
            expected = run(bridge, ode.denoiser, x1, 5)
        torch.testing.assert_close(ode.restore(x1, nfe=5, sampler=name), expected)
    with pytest.raises(ValueError, match="OT-ODE"):
        sde.restore(x1, sampler="heun")
    with pytest.raises(ValueError, match="SDE-trained"):
        ode.restore(x1, sampler="implicit")
    with pytest.raises(ValueError, match="eta applies"):
        ode.restore(x1, sampler="multistep", eta=0.5)
    ode.restore(x1, nfe=2, sampler="implicit", ot_ode=False)  # explicit override: allowed


def test_cli_sampler_keys(tmp_path, capsys):
    run = write_run(tmp_path / "run")  # an OT-ODE checkpoint (task.ot_ode: true), n_steps 100
    (tmp_path / "in").mkdir()
    random_image(16, 16, 0).save(tmp_path / "in" / "cat.png")
    base = [f"ckpt={run}", f"input={tmp_path / 'in'}"]
    code, _, err = run_cli(capsys, *base, f"output={tmp_path / 'heun'}", "sampler=heun", "nfe=5", "save_traj=true",
                           "traj_format=png")
    assert code == 0, err
    assert (tmp_path / "heun" / "cat.png").is_file() and (tmp_path / "heun_traj" / "cat.png").is_file()
    restorer = pixel_restorer(True)
    bridge = restorer.kind.schedule
    assert log_steps(restorer, restorer.options(nfe=5, sampler="heun"), 10) == heun_steps(bridge, 5)[:-1]
    assert log_steps(restorer, restorer.options(nfe=6), 10) == bridge.timesteps(6)[:-1]
    code, _, err = run_cli(capsys, *base, f"output={tmp_path / 'imp'}", "sampler=implicit", "ot_ode=false", "eta=0.5")
    assert code == 0, err
    for args, text in [(["sampler=ddim"], "error: sampler: must be one of"), (["eta=1.5"], "error: eta: must be in"),
                       (["sampler=implicit"], "error: sampler: sampler=implicit is for SDE-trained"),
                       (["eta=0.5"], "error: eta: eta applies to sampler=implicit only")]:
        code, _, err = run_cli(capsys, *base, f"output={tmp_path / 'bad'}", *args)
        assert code != 0 and text in err and len(err.strip().splitlines()) == 1, err
