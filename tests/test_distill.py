"""Bridge distillation's pieces on image tensors: losses' shapes and stop-gradients, the generator, K steps.

The math against known answers is in test_distill_gaussian.py; here the tiny ADM U-Net plays teacher,
auxiliary model and student.
"""

import copy
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from i2sb.core.bridge import Bridge
from i2sb.core.denoiser import BridgeDenoiser
from i2sb.distill.alternate import aux_step, draw_loss_steps, frozen, ibmd_iteration, student_step
from i2sb.distill.generator import (BridgeGenerator, add_input_channels, draw_pair, draw_z, generate,
                                    student_steps)
from i2sb.distill.objective import aux_loss, bridge_point, end_coefs, loss_weight, student_loss
from i2sb.nets.unet import UNet, input_channels

sys.path.insert(0, str(Path(__file__).parent))
from distill_gaussian import one_thread  # noqa: E402,F401  (autouse fixture)

N_STEPS = 100


def tiny_unet(cond_x1: bool, seed: int = 0) -> UNet:
    """The tiny test U-Net with every weight perturbed (ADM zero-initialises its output layer)."""
    torch.manual_seed(seed)
    net = UNet(image_size=16, in_channels=input_channels(cond_x1), model_channels=32, out_channels=3,
               num_res_blocks=1, attention_resolutions=(2,), channel_mult=(1, 1), num_head_channels=32,
               use_scale_shift_norm=True)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return net


@pytest.fixture(scope="module")
def bridge():
    return Bridge.symmetric(N_STEPS, 0.3)


def models(bridge, cond_x1=True):
    """(teacher, aux, student): x0-predictors from one teacher U-Net, the student widened by 3 z channels."""
    teacher = BridgeDenoiser(tiny_unet(cond_x1), bridge, cond_x1=cond_x1).requires_grad_(False)
    aux = copy.deepcopy(teacher).requires_grad_(True)
    student = BridgeGenerator.from_denoiser(teacher, z_channels=3, generator=torch.Generator().manual_seed(1))
    return teacher, aux, student


def images(batch=2, seed=0):
    return torch.rand(batch, 3, 16, 16, generator=torch.Generator().manual_seed(seed)) * 2 - 1


# ---------------------------------------------------------------------------- the objective's pieces
def test_loss_weight(bridge):
    step = torch.tensor([0, 10, N_STEPS - 1])
    x = torch.zeros(3, 3, 4, 4)
    torch.testing.assert_close(loss_weight(bridge, step, x), (bridge.std_fwd[step] ** -2).float())
    torch.testing.assert_close(loss_weight(bridge, step, x, "x0"), torch.ones(3))
    with pytest.raises(ValueError, match="weighting must be one of eps, x0"):
        loss_weight(bridge, step, x, "v")


def test_bridge_point_is_eq11_or_the_ddpm_posterior(bridge):
    """Without an end step it is q_sample (Eq. 11); with one, Bridge.posterior_coefs (Eq. 4), per sample."""
    x0, x1, noise = images(seed=1), images(seed=2), images(seed=3)
    step = torch.tensor([3, 70])
    torch.testing.assert_close(bridge_point(bridge, step, x0, x1, noise=noise),
                               bridge.q_sample(step, x0, x1, noise=noise))
    end = torch.tensor([50, 90])
    c_x0, c_end, std = end_coefs(bridge, step, end, x0)
    for i in range(2):
        ref = bridge.posterior_coefs(int(step[i]), int(end[i]))
        torch.testing.assert_close(torch.stack([c_x0[i, 0, 0, 0], c_end[i, 0, 0, 0], std[i, 0, 0, 0]]),
                                   torch.tensor(ref, dtype=torch.float32))


def test_losses_are_scalars_and_gap_is_detached(bridge):
    teacher, aux, G = models(bridge)
    x1 = images()
    x0 = G(x1, N_STEPS - 1, x1, draw_z(G, x1))
    step = torch.tensor([5, 60])
    assert aux_loss(aux, bridge, x0, x1, step, x1).shape == ()
    loss, gap = student_loss(teacher, aux, bridge, x0, x1, step, x1)
    assert loss.shape == gap.shape == () and loss.requires_grad and not gap.requires_grad
    mask = torch.zeros(2, 1, 16, 16)
    assert float(aux_loss(aux, bridge, x0, x1, step, x1, mask=mask).detach()) == 0.0  # nothing in the hole


def test_aux_step_updates_only_the_aux_model(bridge):
    teacher, aux, G = models(bridge)
    loss = aux_step(aux, G, bridge, (images(), images()), student_steps(bridge, 1))
    loss.backward()
    assert all(p.grad is not None for p in aux.parameters())
    assert all(p.grad is None for p in G.parameters())  # the pair is sg[G(x1, z)]
    assert all(p.grad is None for p in teacher.parameters())


def test_student_step_updates_only_the_student_and_restores_the_aux(bridge):
    """Gradients reach the generator (through x0 and through both networks' input), none of the networks'
    parameters; the auxiliary model is trainable again afterwards."""
    teacher, aux, G = models(bridge)
    x1 = images()
    loss, _ = student_step(G, teacher, aux, bridge, (x1, x1), student_steps(bridge, 1))
    loss.backward()
    assert all(p.grad is not None for p in G.parameters() if p.requires_grad)
    assert all(p.grad is None for p in aux.parameters()) and all(p.requires_grad for p in aux.parameters())
    assert all(p.grad is None for p in teacher.parameters())


def test_frozen_restores_flags():
    net = nn.Linear(2, 2)
    net.bias.requires_grad_(False)
    with frozen(net, "not a module"):
        assert not any(p.requires_grad for p in net.parameters())
    assert net.weight.requires_grad and not net.bias.requires_grad


def test_draw_loss_steps_stay_below_the_end(bridge):
    g = torch.Generator().manual_seed(0)
    top = draw_loss_steps(bridge, 1000, None, g, torch.device("cpu"))
    assert int(top.min()) == 0 and int(top.max()) == N_STEPS - 1
    end = torch.full((1000,), 30)
    below = draw_loss_steps(bridge, 1000, end, g, torch.device("cpu"))
    assert int(below.min()) == 0 and int(below.max()) == 29


def test_ibmd_iteration_moves_student_and_aux_not_teacher(bridge):
    teacher, aux, G = models(bridge, cond_x1=False)
    before = [copy.deepcopy(m.state_dict()) for m in (teacher, aux, G)]
    batches = iter([(images(seed=i), None) for i in range(3)])
    opt_G, opt_aux = torch.optim.Adam(G.parameters(), 1e-3), torch.optim.Adam(aux.parameters(), 1e-3)
    out = ibmd_iteration(G, aux, teacher, bridge, batches, opt_G, opt_aux, student_steps(bridge, 1), aux_steps=2,
                         generator=torch.Generator().manual_seed(0))
    assert set(out) == {"aux_loss", "student_loss", "gap"}
    changed = [any(not torch.equal(v, m.state_dict()[k]) for k, v in b.items())
               for b, m in zip(before, (teacher, aux, G))]
    assert changed == [False, True, True]


# ---------------------------------------------------------------------------- the generator
def test_add_input_channels_keeps_the_network_on_zero_noise():
    net = tiny_unet(cond_x1=False)
    wide = add_input_channels(net, 3, scale=0.1, generator=torch.Generator().manual_seed(0))
    x, t = images(), torch.tensor([10.0, 500.0])
    with torch.no_grad():
        torch.testing.assert_close(wide(torch.cat([x, torch.zeros_like(x)], 1), t), net(x, t))
    old, new = net.input_blocks[0][0].weight, wide.input_blocks[0][0].weight
    assert new.shape[1] == 6 and old.shape[1] == 3  # the teacher is left alone
    assert 0.05 < float((new[:, 3:].std() / old.std()).detach()) < 0.15
    assert wide.config["in_channels"] == 6 and wide.in_channels == 6
    assert add_input_channels(net, 0).input_blocks[0][0].weight.shape[1] == 3


@pytest.mark.parametrize("cond_x1", [False, True])
def test_generator_starts_at_the_teachers_one_step_prediction(bridge, cond_x1):
    """z = 0: exactly the teacher's x0 prediction at the top step (Algorithm 2's first step); z ~ N(0, I):
    near it, and different draws differ (the student is stochastic from the start)."""
    teacher, _, G = models(bridge, cond_x1)
    x1, top = images(), N_STEPS - 1
    cond = x1 if cond_x1 else None
    with torch.no_grad():
        one_step = teacher(x1, torch.full((2,), top), cond)
        torch.testing.assert_close(G(x1, top, cond, torch.zeros(2, 3, 16, 16)), one_step)
        a, b = (G(x1, top, cond, draw_z(G, x1, torch.Generator().manual_seed(s))) for s in (0, 1))
    assert 0 < float((a - b).abs().max()) and float((a - one_step).norm()) < 0.2 * float(one_step.norm())


def test_generator_rejects_missing_inputs(bridge):
    _, _, G = models(bridge, cond_x1=True)
    x1 = images()
    with pytest.raises(ValueError, match="pass cond=x1"):
        G(x1, N_STEPS - 1, None, draw_z(G, x1))
    with pytest.raises(ValueError, match="z with 3 channels"):
        G(x1, N_STEPS - 1, x1, None)


def test_student_steps_are_the_teachers_nfe_steps(bridge):
    assert student_steps(bridge, 1) == [N_STEPS - 1]
    assert student_steps(bridge, 2) == bridge.timesteps(2)[1:][::-1] == [N_STEPS - 1, 50]


class ToyGenerator(nn.Module):
    """G(xs, s, cond, z) = a xs + 0.1 z: a learnable scalar, for the chain's bookkeeping."""

    z_channels = 3

    def __init__(self):
        super().__init__()
        self.a = nn.Parameter(torch.tensor(0.5))
        self.calls = []

    def forward(self, xs, step, cond=None, z=None):
        self.calls.append(step)
        return self.a * xs + 0.1 * z


def test_k_step_chain_and_training_pairs(bridge):
    """K = 1 is one call on x1; K = 2 calls at the NFE-2 steps with Eq. 4 between; a training pair of level k
    is the student's own state X_{s_k} (no gradient) and G's prediction there (with gradient)."""
    G, x1 = ToyGenerator(), images()
    one = generate(G, bridge, x1, None, student_steps(bridge, 1), torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(0)
    torch.testing.assert_close(one, 0.5 * x1 + 0.1 * torch.randn(x1.shape, generator=g))
    G.calls.clear()
    two = generate(G, bridge, x1, None, student_steps(bridge, 2))
    assert G.calls == [N_STEPS - 1, 50] and two.shape == x1.shape

    x0, x_end, end_step = draw_pair(G, bridge, x1, None, student_steps(bridge, 1))
    assert x0.requires_grad and x_end is x1 and end_step is None
    levels = set()
    for seed in range(8):
        x0, x_end, end_step = draw_pair(G, bridge, x1, None, student_steps(bridge, 2),
                                        torch.Generator().manual_seed(seed))
        assert x0.requires_grad and not x_end.requires_grad
        levels.add(None if end_step is None else int(end_step[0]))
        if end_step is not None:
            assert not torch.equal(x_end, x1)
    assert levels == {None, 50}
