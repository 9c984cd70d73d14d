"""Tests of i2sb.unet: shapes, initialisation, gradients, attention layouts, precision and memory formats,
and equivalence with guided-diffusion's UNetModel (fixture tests/fixtures/unet_guided_diffusion.pt)."""

import hashlib
import io
import math
from pathlib import Path

import pytest
import torch

from i2sb.nets.unet import AttentionBlock, UNet, adm256_kwargs, attention_ds, timestep_embedding, upsample_nearest

FIXTURE = Path(__file__).parent / "fixtures" / "unet_guided_diffusion.pt"

TINY = dict(image_size=16, in_channels=3, model_channels=32, out_channels=3, num_res_blocks=1,
            attention_resolutions=(2,), channel_mult=(1, 2), num_head_channels=16,
            use_scale_shift_norm=True, resblock_updown=True)
# sha256 of "key:shape" lines (state_dict order) of guided-diffusion's UNetModel(**TINY) and of ADM-256.
TINY_KEYS_SHA256 = "b0af4283a90504fdb7c44b10a0fa42fcb0104e18ef6cc93de16e6e115ec97e37"
TINY_NUM_KEYS = 144
ADM256_KEYS_SHA256 = "ccf156f498760ebcdfc72e57bade71a8a7f656b10a5630bcba4bbd703e7e2cd8"
ADM256_NUM_PARAMS = 552_807_171  # guided-diffusion create_model(256 px, learn_sigma=False), 3 in-channels


def hashed_state_dict(shapes: dict[str, tuple[int, ...]], salt: int) -> dict[str, torch.Tensor]:
    """Deterministic pseudo-random parameters without any RNG (an integer hash of the element index).

    Weights (ndim > 1): uniform with unit fan-in variance; 1-D ``*.weight`` (norm gains): 1 +- 0.25;
    other 1-D tensors (biases): +- 0.25. Used to fill both guided-diffusion's model and ours.
    """
    out, offset = {}, salt * 7919
    for key, shape in shapes.items():
        n = math.prod(shape)
        x = (torch.arange(n, dtype=torch.int64) + offset) & 0xFFFFFFFF
        for _ in range(2):  # the "hash32" integer mixer; all products stay below 2**63
            x = ((x ^ (x >> 16)) * 0x45D9F3B) & 0xFFFFFFFF
        u = ((x ^ (x >> 16)).double() / 2**32 * 2 - 1).reshape(shape)  # uniform in [-1, 1)
        if len(shape) > 1:
            value = u * math.sqrt(3 / math.prod(shape[1:]))
        else:
            value = 0.25 * u + (1.0 if key.endswith("weight") else 0.0)
        out[key] = value.float()
        offset += n
    return out


def randomize_(model: torch.nn.Module, salt: int = 1) -> torch.nn.Module:
    """Overwrite every parameter (zero-initialised ones included) with hashed pseudo-random values."""
    shapes = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    model.load_state_dict(hashed_state_dict(shapes, salt))
    return model


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.double() - b.double()).norm() / b.double().norm()).item()


def keys_sha256(state_dict: dict) -> str:
    lines = "\n".join(f"{k}:{tuple(v.shape)}" for k, v in state_dict.items())
    return hashlib.sha256(lines.encode()).hexdigest()


def tiny_inputs(batch: int = 2, channels: int = 3, size: tuple[int, int] = (16, 16)):
    x = torch.randn(batch, channels, *size)
    t = torch.tensor([0.1, 37.5, 999.0, 512.25])[:batch]
    return x, t


# ---------------------------------------------------------------------------------------------- shapes
@pytest.mark.parametrize("cfg, size", [
    (TINY, (16, 16)),
    (dict(TINY, resblock_updown=False, conv_resample=False, use_scale_shift_norm=False), (16, 24)),
    (dict(TINY, channel_mult=(1, 1, 2), attention_resolutions=(1, 4), out_channels=5), (8, 16)),
])
def test_output_shape_and_dtype(cfg, size):
    model = randomize_(UNet(**cfg))
    x, t = tiny_inputs(size=size)
    out = model(x, t)
    assert out.shape == (2, cfg["out_channels"], *size) and out.dtype == torch.float32
    assert torch.isfinite(out).all() and out.abs().mean() > 1e-3


@pytest.mark.parametrize("dims, spatial", [(1, (16,)), (3, (2, 8, 8))])
def test_other_dims(dims, spatial):
    model = randomize_(UNet(**dict(TINY, dims=dims)))
    out = model(torch.randn(2, 3, *spatial), torch.tensor([1.0, 2.0]))
    assert out.shape == (2, 3, *spatial)


# ---------------------------------------------------------------------------------------------- init
def test_zero_initialised_layers_and_output():
    model = UNet(**dict(TINY, num_classes=4))
    zero_init = {n for n, _ in model.named_parameters()
                 if n.startswith("out.2.") or ".out_layers.3." in n or ".proj_out." in n}
    zero_weights = {n for n, p in model.named_parameters() if p.ndim > 1 and not p.any()}
    assert len(zero_init) == 2 * (10 + 4 + 1)  # 10 residual blocks, 4 attention blocks, output conv
    assert all(not p.any() for n, p in model.named_parameters() if n in zero_init)
    assert zero_weights == {n for n in zero_init if n.endswith("weight")}
    x, t = tiny_inputs()
    assert torch.equal(model(x, t, y=torch.tensor([0, 3])), torch.zeros(2, 3, 16, 16))


# ---------------------------------------------------------------------------------------------- keys
def test_state_dict_keys_match_guided_diffusion():
    state = UNet(**TINY).state_dict()
    assert len(state) == TINY_NUM_KEYS
    assert keys_sha256(state) == TINY_KEYS_SHA256
    assert {"time_embed.0.weight", "input_blocks.0.0.weight", "input_blocks.3.0.in_layers.2.weight",
            "middle_block.1.qkv.weight", "output_blocks.1.1.proj_out.bias", "out.2.weight"} <= set(state)


def test_adm256_kwargs_build_the_authors_network():
    kw = adm256_kwargs(cond_x1=False)
    assert kw["attention_resolutions"] == (8, 16, 32) and kw["channel_mult"] == (1, 1, 2, 2, 4, 4)
    with torch.device("meta"):
        uncond, cond = UNet(**kw), UNet(**adm256_kwargs(cond_x1=True))
    assert sum(p.numel() for p in uncond.parameters()) == ADM256_NUM_PARAMS
    assert keys_sha256(uncond.state_dict()) == ADM256_KEYS_SHA256
    assert cond.input_blocks[0][0].weight.shape == (256, 6, 3, 3)
    assert cond.out[2].weight.shape == (3, 256, 3, 3)


def test_state_dict_round_trip_gives_equal_outputs():
    cfg = dict(TINY, num_classes=3)
    model = randomize_(UNet(**cfg))
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    clone = UNet(**cfg)
    clone.load_state_dict(torch.load(buffer, weights_only=True), strict=True)
    x, t = tiny_inputs()
    y = torch.tensor([2, 0])
    assert torch.equal(model(x, t, y), clone(x, t, y))


# ---------------------------------------------------------------------------------------------- gradients
def test_every_parameter_gets_a_gradient():
    model = randomize_(UNet(**dict(TINY, num_classes=3, attention_resolutions=(1, 2))))
    x, t = tiny_inputs()
    model(x, t, torch.tensor([0, 2])).square().mean().backward()
    missing = [n for n, p in model.named_parameters()
               if p.grad is None or not torch.isfinite(p.grad).all() or not p.grad.any()]
    assert missing == []


def test_gradient_checkpointing_gives_same_outputs_and_grads():
    cfg = dict(TINY, attention_resolutions=(1, 2))
    plain = randomize_(UNet(**cfg))
    ckpt = UNet(**dict(cfg, use_checkpoint=True))
    ckpt.load_state_dict(plain.state_dict())
    calls = []
    ckpt.middle_block[1].norm.register_forward_hook(lambda *_: calls.append(1))
    x, t = tiny_inputs()
    outs = [m(x, t) for m in (plain, ckpt)]
    for out in outs:
        out.square().mean().backward()
    assert torch.allclose(outs[0], outs[1], rtol=0, atol=1e-6)
    assert len(calls) == 2  # the attention block ran again in backward: it was checkpointed
    for (name, p), q in zip(plain.named_parameters(), ckpt.parameters()):
        assert torch.allclose(p.grad, q.grad, rtol=1e-5, atol=1e-7), name


# ---------------------------------------------------------------------------------------------- attention
def naive_attention(qkv: torch.Tensor, heads: int, new_order: bool) -> torch.Tensor:
    """guided-diffusion's QKVAttention(Legacy) math: softmax((q * s)^T (k * s)) v, s = ch^(-1/4)."""
    b, width, length = qkv.shape
    ch = width // (3 * heads)
    if new_order:
        q, k, v = (z.reshape(b * heads, ch, length) for z in qkv.chunk(3, dim=1))
    else:
        q, k, v = qkv.reshape(b * heads, 3 * ch, length).split(ch, dim=1)
    s = ch ** -0.25
    weight = torch.softmax(torch.einsum("bct,bcs->bts", q * s, k * s), dim=-1)
    return torch.einsum("bts,bcs->bct", weight, v).reshape(b, heads * ch, length)


@pytest.mark.parametrize("new_order", [False, True])
@pytest.mark.parametrize("heads", [1, 2, 4])
def test_attention_matches_adm_math(heads, new_order):
    block = AttentionBlock(64, num_heads=heads, use_new_attention_order=new_order)
    qkv = torch.randn(2, 3 * 64, 20)
    assert rel_err(block.attend(qkv), naive_attention(qkv, heads, new_order)) < 1e-6


def test_num_head_channels_overrides_num_heads():
    by_heads = randomize_(AttentionBlock(64, num_heads=4))
    by_channels = AttentionBlock(64, num_heads=1, num_head_channels=16)
    by_channels.load_state_dict(by_heads.state_dict())
    one_head = AttentionBlock(64, num_heads=1)
    one_head.load_state_dict(by_heads.state_dict())
    x = torch.randn(2, 64, 4, 4)
    assert by_channels.num_heads == 4
    assert torch.equal(by_heads(x), by_channels(x))
    assert rel_err(one_head(x), by_heads(x)) > 1e-3


def test_attention_orders_differ_only_by_a_channel_permutation():
    channels, heads = 64, 4
    legacy = randomize_(AttentionBlock(channels, num_heads=heads))
    new = AttentionBlock(channels, num_heads=heads, use_new_attention_order=True)
    ch = channels // heads
    # new-order row (j, h, c) takes legacy row (h, j, c)
    perm = torch.arange(3 * channels).reshape(heads, 3, ch).transpose(0, 1).reshape(-1)
    state = legacy.state_dict()
    state["qkv.weight"], state["qkv.bias"] = state["qkv.weight"][perm], state["qkv.bias"][perm]
    new.load_state_dict(state)
    x = torch.randn(2, channels, 4, 4)
    assert rel_err(new(x), legacy(x)) < 1e-6


# ---------------------------------------------------------------------------------------------- precision, layout
def test_channels_last_equals_contiguous():
    model = randomize_(UNet(**TINY))
    x, t = tiny_inputs()
    expected = model(x, t)
    model = model.to(memory_format=torch.channels_last)
    out = model(x.to(memory_format=torch.channels_last), t)
    assert rel_err(out, expected) < 1e-5


@pytest.mark.parametrize("layout", ["contiguous", "channels_last", "strided", "5-D"])
def test_upsample_nearest_is_interpolate_exactly(layout):
    """The up-sampling equals F.interpolate bit for bit, with and without autograd, and keeps the layout."""
    g = torch.Generator().manual_seed(0)
    x, factor = torch.randn(2, 5, 3, 4, generator=g), 2
    if layout == "channels_last":
        x = x.to(memory_format=torch.channels_last)
    elif layout == "strided":
        x = torch.randn(2, 5, 3, 8, generator=g)[..., ::2]
    elif layout == "5-D":
        x, factor = torch.randn(2, 5, 2, 3, 4, generator=g), (1, 2, 2)
    expected = torch.nn.functional.interpolate(x, scale_factor=factor, mode="nearest")
    with torch.no_grad():
        out = upsample_nearest(x, factor)
    assert torch.equal(out, expected)
    assert out.is_contiguous(memory_format=torch.channels_last) == (layout == "channels_last")
    x.requires_grad_()
    grad = torch.randn(expected.shape, generator=g)
    reference = torch.nn.functional.interpolate(x, scale_factor=factor, mode="nearest")
    assert torch.equal(torch.autograd.grad(upsample_nearest(x, factor), x, grad)[0],
                       torch.autograd.grad(reference, x, grad)[0])


def test_bfloat16_autocast_is_close_to_float32():
    model = randomize_(UNet(**dict(TINY, num_classes=3)))
    x, t = tiny_inputs()
    y = torch.tensor([1, 2])
    expected = model(x, t, y)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = model(x, t, y)
    assert torch.isfinite(out).all() and rel_err(out.float(), expected) < 5e-2


def test_convert_to_fp16_converts_only_the_torso_convolutions():
    model = randomize_(UNet(**TINY))
    x, t = tiny_inputs()
    expected = model(x, t)
    model.convert_to_fp16()
    assert model.torso_dtype == torch.float16
    assert model.input_blocks[1][0].in_layers[2].weight.dtype == torch.float16
    assert model.input_blocks[1][0].in_layers[0].weight.dtype == torch.float32  # GroupNorm
    assert model.out[2].weight.dtype == model.time_embed[0].weight.dtype == torch.float32
    out = model(x, t)
    assert out.dtype == torch.float32 and rel_err(out, expected) < 1e-2
    model.convert_to_fp32()
    assert all(p.dtype == torch.float32 for p in model.parameters())


# ---------------------------------------------------------------------------------------------- helpers, errors
def test_timestep_embedding_is_adm_sinusoid():
    t = torch.tensor([0.0, 0.1, 37.5, 999.0])
    emb = timestep_embedding(t, 9)
    freqs = torch.exp(-math.log(10000) * torch.arange(4, dtype=torch.float64) / 4)
    args = t.double()[:, None] * freqs
    expected = torch.cat([args.cos(), args.sin(), torch.zeros(4, 1, dtype=torch.float64)], dim=1)
    assert emb.shape == (4, 9) and emb.dtype == torch.float32
    assert torch.allclose(emb.double(), expected, atol=1e-4)


def test_attention_ds():
    assert attention_ds(256, "32,16,8") == (8, 16, 32)
    assert attention_ds(64, [16]) == (4,)
    with pytest.raises(ValueError, match="does not divide"):
        attention_ds(64, "24")


def test_bad_inputs_raise_value_error():
    model = UNet(**dict(TINY, num_classes=3))
    x, t = tiny_inputs()
    with pytest.raises(ValueError, match="num_classes"):
        model(x, t)
    with pytest.raises(ValueError, match="timesteps"):
        model(x, t[:1], torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="num_head_channels"):
        UNet(**dict(TINY, num_head_channels=24))


# ---------------------------------------------------------------------------------------------- guided-diffusion
GD_CASES = ("updown_scaleshift_headchannels", "legacy_heads_conv_resample", "in6_classes_pool_resample")


@pytest.fixture(scope="module")
def gd_cases() -> dict:
    return torch.load(FIXTURE, weights_only=True)["cases"]


@pytest.mark.parametrize("name", GD_CASES)
def test_matches_guided_diffusion_outputs(gd_cases, name):
    case = gd_cases[name]
    model = UNet(**case["config"])
    shapes = dict(zip(case["keys"], case["shapes"]))
    assert {k: tuple(v.shape) for k, v in model.state_dict().items()} == shapes
    model.load_state_dict(hashed_state_dict(shapes, case["salt"]), strict=True)
    with torch.no_grad():
        out = model(case["x"], case["timesteps"], case.get("y"))
    assert rel_err(out, case["out"]) < 1e-5


@pytest.mark.parametrize("name", GD_CASES)
def test_default_initialisation_matches_guided_diffusion(gd_cases, name):
    case = gd_cases[name]
    torch.manual_seed(0)
    model = UNet(**case["config"])
    l1 = torch.stack([p.detach().double().abs().sum() for p in model.parameters()]).sum()
    assert abs(l1.item() - case["init_l1_seed0"]) < 1e-6 * case["init_l1_seed0"]
