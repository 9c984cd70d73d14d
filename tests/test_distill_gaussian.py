"""IBMD where the answer is known: Gaussian data, a linear degradation, exact teachers (issue 25, item 4).

The teacher's x0-predictor, the auxiliary model's bridge-matching solution and the law of the teacher's
many-step sampler are all closed-form (:mod:`i2sb.distill.linear_gaussian`), so every claim of the
derivation in :mod:`i2sb.distill.objective` is checked against numbers, not only run.
"""

import sys
from pathlib import Path

import pytest
import torch

from i2sb.distill.alternate import ibmd_iteration
from i2sb.distill.generator import student_steps
from i2sb.distill.linear_gaussian import LinearGenerator, cond_posterior_mean, sampler_law, uncond_posterior_mean
from i2sb.distill.objective import aux_loss, loss_weight, student_loss

sys.path.insert(0, str(Path(__file__).parent))
from distill_gaussian import (D, aux_of, as_images, make_bridge, make_task, moment_z_scores,  # noqa: E402,F401
                              one_step_init, one_thread, teacher_of)

F64 = torch.float64
Z_MAX = 4.5  # |z|-score bound for Monte-Carlo comparisons (per entry)


@pytest.fixture(scope="module")
def task():
    return make_task()


@pytest.fixture(scope="module")
def bridge():
    return make_bridge()


def wrong_student(task):
    """A student off in every parameter: mean map, offset and spread."""
    W, g, P = task.posterior()
    return LinearGenerator(W + torch.tensor([[0.1, -0.05], [0.0, 0.08]], dtype=F64), g + 0.05,
                           0.5 * torch.linalg.cholesky(P) + 0.02)


def draws(task, bridge, n, seed):
    """Common random numbers: x1 (n, d, 1, 1), z, steps, bridge noise."""
    g = torch.Generator().manual_seed(seed)
    x1 = as_images(task.sample(n, g)[1])
    z = torch.randn(x1.shape, generator=g, dtype=F64)
    step = torch.randint(0, bridge.n_steps, (n,), generator=g)
    return x1, z, step, torch.randn(x1.shape, generator=g, dtype=F64)


# ---------------------------------------------------------------------------- the exact teacher
@pytest.mark.parametrize("conditional", [True, False])
def test_bridge_predictor_is_the_least_squares_regression(task, bridge, conditional):
    """The closed-form E[x0 | X_n (, x1)] equals the affine least-squares fit of x0 on samples of Eq. 11."""
    g = torch.Generator().manual_seed(0)
    x0, x1 = task.sample(200_000, g)
    W, gg, P = task.posterior()
    for n in (50, 500, 950):
        step = torch.full((x0.shape[0],), n)
        xt = bridge.q_sample(step, x0, x1, generator=g)
        ones = torch.ones_like(xt[:, :1])
        features = torch.cat([xt, x1, ones] if conditional else [xt, ones], 1)
        coef = torch.linalg.lstsq(features, x0).solution
        fitted = features @ coef
        exact = (cond_posterior_mean(bridge, step, xt, x1, W, gg, P) if conditional
                 else uncond_posterior_mean(bridge, step, xt, W, gg, P, task.mean1, task.cov1))
        assert (fitted - exact).pow(2).mean().sqrt() < 2e-3 * exact.std()


def test_teacher_sampler_reproduces_the_posterior(task, bridge):
    """Algorithm 2 with the exact conditional predictor draws p(x0 | x1): its exact law at NFE 999 is within
    2 % of the closed-form posterior (the DDPM plug-in's discretisation), and the sampler's Monte-Carlo
    draws agree with that law."""
    teacher = teacher_of(task, bridge)
    W, g, P = task.posterior()
    x1 = torch.tensor([0.5, -0.3], dtype=F64)
    mean, cov = sampler_law(bridge, teacher, x1, bridge.n_steps - 1)
    assert (mean - (W @ x1 + g)).abs().max() < 1e-3
    assert (cov - P).norm() < 0.02 * P.norm()
    batch = x1.expand(4000, D).reshape(4000, D, 1, 1)
    samples = bridge.sample(lambda xt, step: teacher(xt, step, batch), batch, 999,
                            generator=torch.Generator().manual_seed(3))
    z_mean, z_cov = moment_z_scores(samples, mean=mean, cov=cov)
    assert z_mean < Z_MAX and z_cov < Z_MAX


def test_unconditional_teacher_sampler_has_another_coupling(task, bridge):
    """Without x1 as input the teacher is the Markovian projection: its sampler keeps the marginals but not the
    coupling -- its law given x1 is far from p(x0 | x1) (why the distillation test uses the conditional
    teacher; IBMD's fixed point is the data's coupling either way, see the unconditional test below)."""
    teacher = teacher_of(task, bridge, conditional=False)
    _, _, P = task.posterior()
    _, cov = sampler_law(bridge, teacher, torch.tensor([0.5, -0.3], dtype=F64), bridge.n_steps - 1)
    assert (cov - P).norm() > P.norm()


# ---------------------------------------------------------------------------- the objective
def test_aux_loss_minimiser_is_the_conditional_expectation(task, bridge):
    """Bridge matching on a (wrong) student's pairs, fitted from the teacher's starting point, converges to
    that student's own coupling: W, g and S S^T of the generator (module docstring of the objective)."""
    G, teacher = wrong_student(task), teacher_of(task, bridge)
    aux = teacher_of(task, bridge).requires_grad_(True)
    x1, z, step, noise = draws(task, bridge, 20_000, 1)
    with torch.no_grad():
        x0 = G(x1, 0, None, z)
    opt = torch.optim.LBFGS(aux.parameters(), lr=1, max_iter=200, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = aux_loss(aux, bridge, x0, x1, step, x1, noise=noise)
        loss.backward()
        return loss

    opt.step(closure)
    P = G.S @ G.S.T
    assert (aux.W - G.W).abs().max() < 0.02
    assert (aux.g - G.g).abs().max() < 0.01
    assert (aux.P - P).norm() < 0.05 * P.norm()
    assert (aux.W - teacher.W).abs().max() > 0.05  # it moved away from the teacher, to the student


def test_student_loss_value_is_the_bridge_matching_discrepancy(task, bridge):
    """Theorem 3.2's identity: with the exact auxiliary model the loss' expectation equals
    E w ||D* - m_theta||^2 (its ``gap``), strictly positive for a wrong student."""
    G, teacher = wrong_student(task), teacher_of(task, bridge)
    aux = aux_of(G, task, bridge)
    x1, z, step, noise = draws(task, bridge, 100_000, 2)
    with torch.no_grad():
        loss, gap = student_loss(teacher, aux, bridge, G(x1, 0, None, z), x1, step, x1, noise=noise)
    assert gap > 0
    assert abs(loss - gap) < 0.05 * gap


def test_student_gradient_is_the_envelope_of_the_inverse_objective(task, bridge):
    """With phi frozen at its optimum, d loss / d theta estimates d/dtheta E w ||D* - m_theta||^2 with m_theta
    re-solved for every theta (Danskin); dropping the path through X_n (the networks' input) does not."""
    G, teacher = wrong_student(task), teacher_of(task, bridge)
    x1, z, step, noise = draws(task, bridge, 400_000, 4)
    x0 = G(x1, 0, None, z)
    xt = bridge.q_sample(step, x0, x1, noise=noise)
    m_theta = cond_posterior_mean(bridge, step, xt.flatten(1), x1.flatten(1), G.W, G.g, G.S @ G.S.T)
    w = loss_weight(bridge, step, x0)
    J = (w * (teacher(xt, step, x1).flatten(1) - m_theta).pow(2).mean(1)).mean()
    exact = torch.autograd.grad(J, list(G.parameters()))
    aux = aux_of(G, task, bridge).requires_grad_(False)
    loss, _ = student_loss(teacher, aux, bridge, G(x1, 0, None, z), x1, step, x1, noise=noise)
    ours = torch.autograd.grad(loss, list(G.parameters()))
    exact_flat, ours_flat = torch.cat([g.flatten() for g in exact]), torch.cat([g.flatten() for g in ours])
    assert (ours_flat - exact_flat).norm() < 0.03 * exact_flat.norm()  # measured 0.3-0.6 %

    x0 = G(x1, 0, None, z)
    xt = bridge.q_sample(step, x0, x1, noise=noise).detach()  # the input's path cut
    d_t, d_a = teacher(xt, step, x1), aux(xt, step, x1)
    cut = (w * ((d_t - d_a) * (d_t + d_a - 2 * x0)).flatten(1).mean(1)).mean()
    cut_flat = torch.cat([g.flatten() for g in torch.autograd.grad(cut, list(G.parameters()))])
    assert (cut_flat - exact_flat).norm() > 0.3 * exact_flat.norm()  # measured 54 %


def test_loss_and_gradient_vanish_at_the_exact_student(task, bridge):
    """Student = the posterior sampler, aux = its exact bridge-matching solution (computed from the student,
    equal to the teacher): loss and gap are zero for every sample, the generator's gradient is zero."""
    W, g, P = task.posterior()
    G, teacher = LinearGenerator(W, g, torch.linalg.cholesky(P)), teacher_of(task, bridge)
    aux = aux_of(G, task, bridge).requires_grad_(False)
    x1, z, step, noise = draws(task, bridge, 4096, 5)
    loss, gap = student_loss(teacher, aux, bridge, G(x1, 0, None, z), x1, step, x1, noise=noise)
    grads = torch.autograd.grad(loss, list(G.parameters()))
    assert abs(float(loss.detach())) < 1e-12 and float(gap) < 1e-12
    assert max(float(g.abs().max()) for g in grads) < 1e-10
    wrong = wrong_student(task)  # the same check is not vacuous: a wrong student has a gradient
    loss, _ = student_loss(teacher, aux_of(wrong, task, bridge), bridge, wrong(x1, 0, None, z), x1, step, x1,
                           noise=noise)
    assert max(float(g.abs().max()) for g in torch.autograd.grad(loss, list(wrong.parameters()))) > 1e-3


# ---------------------------------------------------------------------------- the distillation
def distil(task, bridge, teacher, conditional, iterations, seed=0):
    """IBMD (Algorithm 1, 5 aux updates per student update) from the teacher's one-step prediction."""
    G, aux = one_step_init(teacher, bridge), teacher_of(task, bridge, conditional).requires_grad_(True)
    gen = torch.Generator().manual_seed(seed)

    def batches():
        while True:
            x1 = as_images(task.sample(2048, gen)[1])
            yield x1, x1 if conditional else None

    opt_G, opt_aux = torch.optim.Adam(G.parameters(), lr=1e-2), torch.optim.Adam(aux.parameters(), lr=1e-2)
    decay = [torch.optim.lr_scheduler.MultiStepLR(o, [iterations // 2], 0.2) for o in (opt_G, opt_aux)]
    it = batches()
    for _ in range(iterations):
        ibmd_iteration(G, aux, teacher, bridge, it, opt_G, opt_aux, student_steps(bridge, 1), generator=gen)
        for d in decay:
            d.step()
    return G


def test_distilled_student_matches_the_teachers_many_step_samples(task, bridge):
    """From degraded samples only, the one-step student learns p(x0 | x1): its draws given x1 match the exact
    teacher's NFE-999 draws in mean and covariance (within Monte-Carlo error) at three inputs, and its
    parameters the closed-form posterior."""
    teacher = teacher_of(task, bridge)
    G = distil(task, bridge, teacher, conditional=True, iterations=300)
    W, g, P = task.posterior()
    assert (G.W - W).abs().max() < 0.01 and (G.g - g).abs().max() < 0.005  # seeds 0-2: < 0.004, < 0.001
    assert (G.S @ G.S.T - P).norm() < 0.04 * P.norm()  # seeds 0-2: < 2 %

    gen = torch.Generator().manual_seed(11)
    inputs = torch.tensor([[0.5, -0.3], [-0.4, 0.2], [0.9, 0.4]], dtype=F64)
    n = 4000
    x1 = as_images(inputs.repeat_interleave(n, 0))
    with torch.no_grad():
        student = G(x1, 0, None, torch.randn(x1.shape, generator=gen, dtype=F64))
    teacher_draws = bridge.sample(lambda xt, step: teacher(xt, step, x1), x1, 999, generator=gen)
    for i in range(len(inputs)):
        part = slice(i * n, (i + 1) * n)
        z_mean, z_cov = moment_z_scores(student[part], teacher_draws[part])
        assert z_mean < Z_MAX and z_cov < Z_MAX, (inputs[i], z_mean, z_cov)


@pytest.mark.slow
def test_unconditional_teacher_distils_to_the_data_coupling(task, bridge):
    """An unconditional teacher's inverse problem has the data's coupling as its solution (IBMD's fixed point),
    not its sampler's coupling: the student converges to p(x0 | x1) although the teacher's sampler does not
    draw it (test above)."""
    G = distil(task, bridge, teacher_of(task, bridge, conditional=False), conditional=False, iterations=600)
    W, g, P = task.posterior()
    assert (G.W - W).abs().max() < 0.015 and (G.g - g).abs().max() < 0.008  # seeds 0-2: < 0.006, < 0.003
    assert (G.S @ G.S.T - P).norm() < 0.12 * P.norm()  # seeds 0-2: < 7 %
