"""Shared pieces of the distillation tests: a 2-D linear-Gaussian task, its bridge, exact models, moment checks."""

from __future__ import annotations

import pytest
import torch
from torch import Tensor

from i2sb.core.bridge import Bridge
from i2sb.distill.linear_gaussian import GaussianBridgeModel, LinearGaussianTask, LinearGenerator

D = 2


@pytest.fixture(autouse=True)
def one_thread():
    """Small tensors: one thread avoids spin-waiting on a loaded 2-core machine (measured 6x faster here)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def make_task() -> LinearGaussianTask:
    """Correlated data, a mixing degradation with a bias, small noise: p(x0 | x1) is narrow and tilted."""
    f64 = dict(dtype=torch.float64)
    return LinearGaussianTask(
        mu=torch.tensor([0.3, -0.2], **f64), Sigma=torch.tensor([[0.25, 0.1], [0.1, 0.15]], **f64),
        A=torch.tensor([[0.8, 0.3], [-0.2, 0.6]], **f64), b=torch.tensor([0.05, 0.0], **f64),
        R=0.02 * torch.eye(D, **f64))


def make_bridge() -> Bridge:
    return Bridge.symmetric(1000, 0.3)  # the authors' JPEG/SR schedule


def teacher_of(task: LinearGaussianTask, bridge: Bridge, conditional: bool = True) -> GaussianBridgeModel:
    """The exact teacher: bridge matching's solution on the data's coupling, frozen."""
    W, g, P = task.posterior()
    model = GaussianBridgeModel(bridge, W, g, P, conditional, task.mean1, task.cov1)
    return model.requires_grad_(False)


def aux_of(G: LinearGenerator, task: LinearGaussianTask, bridge: Bridge, conditional: bool = True
           ) -> GaussianBridgeModel:
    """The exact auxiliary model of a linear student: bridge matching's solution on its coupling."""
    with torch.no_grad():
        return GaussianBridgeModel(bridge, G.W, G.g, G.S @ G.S.T, conditional, task.mean1, task.cov1)


def one_step_init(teacher: GaussianBridgeModel, bridge: Bridge, z_scale: float = 0.05) -> LinearGenerator:
    """The student started at the teacher's one-step prediction ``D*(x1, N-1, x1)`` (affine in x1), small S."""
    eye = torch.eye(D, dtype=torch.float64)
    probe = torch.cat([torch.zeros(1, D, dtype=torch.float64), eye])
    with torch.no_grad():
        out = teacher(probe, torch.full((D + 1,), bridge.n_steps - 1), probe)
    return LinearGenerator((out[1:] - out[0]).T, out[0], z_scale * eye)


def as_images(x: Tensor) -> Tensor:
    """(B, d) -> (B, d, 1, 1), the samplers' layout."""
    return x.reshape(x.shape[0], -1, 1, 1)


def moments(x: Tensor) -> tuple[Tensor, Tensor]:
    x = x.reshape(x.shape[0], -1)
    return x.mean(0), torch.cov(x.T)


def moment_z_scores(a: Tensor, b: Tensor | None = None, mean: Tensor | None = None,
                    cov: Tensor | None = None) -> tuple[float, float]:
    """Largest |z|-scores of the mean and covariance entries: samples ``a`` against samples ``b`` or against
    an exact ``(mean, cov)``. Standard errors of Gaussian samples: ``var(mean_i) = V_ii / n``,
    ``var(S_ij) = (V_ii V_jj + V_ij^2) / n``."""
    m_a, v_a = moments(a)
    n_a = a.shape[0]

    def se(v: Tensor, n: int) -> tuple[Tensor, Tensor]:
        d = torch.diagonal(v)
        return d / n, (torch.outer(d, d) + v**2) / n

    sm_a, sv_a = se(v_a, n_a)
    if b is not None:
        mean, cov = moments(b)
        sm_b, sv_b = se(cov, b.shape[0])
    else:
        sm_b, sv_b = torch.zeros_like(sm_a), torch.zeros_like(sv_a)
    z_mean = (m_a - mean).abs() / (sm_a + sm_b).sqrt()
    z_cov = (v_a - cov).abs() / (sv_a + sv_b).sqrt()
    return float(z_mean.max()), float(z_cov.max())
