"""Every fast path computes what the plain fp32 path computes (no timing here: see scripts/bench.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch
from helpers import tiny_config

from i2sb.config import to_train_config
from i2sb.methods import make_pair, task_degradation
from i2sb.training.dist import DistInfo
from i2sb.training.trainer import Trainer, step_generator

CPU = DistInfo(device=torch.device("cpu"))


def degradation(cfg):
    return task_degradation(cfg.task, cfg.data.image_size)


def perturbed_trainer(tmp_path, **trainer) -> Trainer:
    cfg = to_train_config(tiny_config(tmp_path, trainer={"batch_size": 4, "microbatch": 4, "grad_clip": 0.0, **trainer}))
    t = Trainer(cfg, CPU)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():  # same non-trivial weights in every variant (zero-init layers perturbed)
        for p in t.unet.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=g))
    return t


def loss_and_grads(t: Trainer) -> tuple[torch.Tensor, list[torch.Tensor]]:
    x0 = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(2)) * 2 - 1
    g = step_generator(0, 0, 0, CPU.device)
    pair = make_pair({"x0": x0}, degradation(t.cfg), t.cfg.task, g, CPU.device)
    t.unet.zero_grad()
    loss = t.method.loss(t.denoiser, pair, g)
    loss.backward()
    return loss.detach(), [p.grad.clone() for p in t.unet.parameters()]


def cosine(a: list[torch.Tensor], b: list[torch.Tensor]) -> float:
    va, vb = torch.cat([x.flatten() for x in a]), torch.cat([x.flatten() for x in b])
    return float(torch.nn.functional.cosine_similarity(va, vb, dim=0))


def test_channels_last_equals_contiguous(tmp_path):
    ref_loss, ref_grads = loss_and_grads(perturbed_trainer(tmp_path))
    loss, grads = loss_and_grads(perturbed_trainer(tmp_path, channels_last=True))
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-6)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def test_bf16_autocast_is_close_to_fp32(tmp_path):
    ref_loss, ref_grads = loss_and_grads(perturbed_trainer(tmp_path))
    loss, grads = loss_and_grads(perturbed_trainer(tmp_path, precision="bf16"))
    assert abs(float(loss) - float(ref_loss)) < 0.02 * float(ref_loss)
    assert cosine(grads, ref_grads) > 0.99


def test_fused_adamw_equals_foreach(tmp_path):
    """Same AdamW trajectory. Some weights have an exactly-zero true gradient (conv biases feeding a GroupNorm;
    the key part of an attention qkv bias, since softmax ignores a constant added to every logit of a query):
    their round-off gradients (~1e-9) are normalised by Adam into arbitrary +-lr steps in either implementation,
    so those elements are only checked to move by at most lr per step."""
    states, grads = [], []
    for fused in (False, True):
        t = perturbed_trainer(tmp_path / str(fused), fused_optimizer=fused)
        deg = degradation(t.cfg)
        x0 = torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(3)) * 2 - 1
        for _ in range(3):
            t.train_step([{"x0": x0}], deg)
        states.append(t.unet.state_dict())
        grads.append({n: p.grad for n, p in t.unet.named_parameters()})
    lr = t.cfg.trainer.lr
    for key in states[0]:
        real = grads[0][key].abs() > 1e-6
        torch.testing.assert_close(states[0][key][real], states[1][key][real], rtol=1e-4, atol=1e-3 * lr)
        assert ((states[0][key] - states[1][key]).abs() * ~real).max() <= 2 * 3 * lr, key


def test_gradient_checkpointing_is_exact(tmp_path):
    ref_loss, ref_grads = loss_and_grads(perturbed_trainer(tmp_path))
    cfg = tiny_config(tmp_path / "ckpt", trainer={"batch_size": 4, "microbatch": 4, "grad_clip": 0.0},
                      model={"use_checkpoint": True})
    t = Trainer(to_train_config(cfg), CPU)
    g = torch.Generator().manual_seed(1)
    with torch.no_grad():
        for p in t.unet.parameters():
            p.add_(0.02 * torch.randn(p.shape, generator=g))
    loss, grads = loss_and_grads(t)
    torch.testing.assert_close(loss, ref_loss, rtol=1e-6, atol=0)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-7)


@pytest.mark.slow
def test_torch_compile_matches_eager(tmp_path):
    """Compiled forward equals eager (inductor needs a C++ compiler; skipped where compile cannot run)."""
    t = perturbed_trainer(tmp_path)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    step = torch.tensor([10, 700])
    with torch.no_grad():
        ref = t.denoiser(x, step)
        try:
            out = torch.compile(t.denoiser)(x, step)
        except Exception as err:  # no compiler / unsupported platform
            pytest.skip(f"torch.compile unavailable here: {type(err).__name__}")
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


def test_bf16_group_norm_mixed_kernel_equals_float32_path():
    from i2sb.nets.unet import GroupNorm32

    gn = GroupNorm32(64)
    with torch.no_grad():
        gn.weight.normal_()
        gn.bias.normal_()
    x = torch.randn(4, 64, 16, 16).bfloat16()
    ref = torch.nn.functional.group_norm(x.float(), 32, gn.weight, gn.bias, gn.eps).bfloat16()
    out = gn(x)
    assert out.dtype == torch.bfloat16
    torch.testing.assert_close(out.float(), ref.float(), rtol=8e-3, atol=1e-4)  # within one bf16 ulp


def test_auto_precision_resolves_per_device(tmp_path, monkeypatch):
    from i2sb.core import precision

    assert precision.resolve_precision("fp16", "cpu") == "fp16"
    monkeypatch.setattr(precision, "_cpu_has_bf16", lambda: True)  # CUDA: tests/test_cuda_fakes.py
    monkeypatch.setattr(precision, "_onednn_runs_bf16", lambda: True)
    assert precision.resolve_precision("auto", "cpu") == "bf16"
    monkeypatch.setattr(precision, "_onednn_runs_bf16", lambda: False)
    assert precision.resolve_precision("auto", "cpu") == "fp32"
    t = Trainer(to_train_config(tiny_config(tmp_path, trainer={"precision": "auto"})), CPU)
    assert t.cfg.trainer.precision == "fp32"  # resolved for this device when the trainer is built


def test_auto_precision_is_fp32_when_onednn_is_capped_below_bf16():
    """A CPU with AVX512-BF16 whose oneDNN is capped at AVX2 runs bf16 convolutions emulated: auto -> fp32."""
    code = "from i2sb.core.precision import resolve_precision as r; print(r('auto', 'cpu'))"
    env = {**os.environ, "ONEDNN_MAX_CPU_ISA": "AVX2"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "fp32"


@pytest.mark.parametrize("conditional", [False, True])
def test_restoration_feeds_the_network_channels_last_and_predicts_as_nchw(conditional):
    """A denoiser built with ``channels_last`` (restoration's on CPUs) hands the network channels-last images
    (x_t and the bound x1 condition) and returns a contiguous x0 equal to the NCHW one; the baselines' ε alike."""
    from i2sb.baselines.eps import EpsDenoiser
    from i2sb.bridge import Bridge
    from i2sb.core.denoiser import BridgeDenoiser
    from i2sb.unet import UNet

    torch.manual_seed(0)
    net = UNet(image_size=16, in_channels=6 if conditional else 3, model_channels=32, out_channels=3,
               num_res_blocks=1, attention_resolutions=(2,), channel_mult=(1, 2), num_head_channels=16,
               use_scale_shift_norm=True, resblock_updown=True).eval()
    with torch.no_grad():  # non-trivial outputs: perturb the zero-initialised layers
        for p in net.parameters():
            p.add_(0.02 * torch.randn_like(p))
    seen = []
    net.register_forward_pre_hook(lambda _, args: seen.append(args[0].is_contiguous(memory_format=torch.channels_last)))
    g = torch.Generator().manual_seed(3)
    x1 = torch.rand(2, 3, 16, 16, generator=g) * 2 - 1
    cond = torch.rand(2, 3, 16, 16, generator=g) * 2 - 1 if conditional else None
    step = torch.full((2,), 700)
    bridge = Bridge.symmetric(1000, 0.3)
    nchw, eps_nchw = BridgeDenoiser(net, bridge, cond_x1=conditional), EpsDenoiser(net, conditional)
    with torch.no_grad():
        pred = nchw.configured(channels_last=True, cond=cond)(x1, step)
        eps = eps_nchw.configured(channels_last=True, cond=cond).output(x1, step)
        assert seen and all(seen)
        seen.clear()
        expected_pred, expected_eps = nchw(x1, step, cond), eps_nchw.output(x1, step, cond)
    assert seen and not any(seen)
    assert pred.is_contiguous() and eps.is_contiguous()
    torch.testing.assert_close(pred, expected_pred, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(eps, expected_eps, rtol=1e-5, atol=1e-5)
