"""The authors' checkpoint format (NVlabs/I2SB results/NAME/): options.pkl, latest.pt, their sampler.

Checkpoints are written here in the authors' layout: ``Image256Net``-style keys with the prefix
``diffusion_model.``, torch_ema's state dict as a plain dict, a pickled ``argparse.Namespace`` with
``PosixPath`` values. Their sampler is re-implemented below from the formulas (make_beta_schedule +
mirror, space_indices, compute_gaussian_product_coef, compute_pred_x0, p_posterior), not from their code.
"""

from __future__ import annotations

import io
import pickle
import pickletools
import sys
from argparse import Namespace
from pathlib import Path, PosixPath

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf
from PIL import Image

import i2sb
from i2sb import degrade
from i2sb.bridge import Bridge
from i2sb.cli import sample_main
from i2sb.config import TaskConfig
from i2sb.nets.guided_diffusion import infer_unet_kwargs
from i2sb.restoration.authors import CORRUPTIONS, read_options, task_from_options
from i2sb.unet import UNet, adm256_kwargs
from i2sb.utils.seeds import image_generator

sys.path.insert(0, str(Path(__file__).parent))
from helpers import ARCH, authors_options, write_authors_dir  # noqa: E402

CONFIGS = Path(__file__).resolve().parents[1] / "configs"

# ---------------------------------------------------------------------------- their sampler, from the formulas
def space_indices(num_steps: int, count: int) -> list[int]:
    stride = (num_steps - 1) / (count - 1)
    return [round(k * stride) for k in range(count)]


@torch.no_grad()
def reference_sampling(unet: UNet, x1, options: dict, nfe: int, mask=None, generator=None):
    """Runner.ddpm_sampling with OT-ODE, float32 tables as in their ``Diffusion``."""
    n, beta_max = options["interval"], options["beta_max"]
    b = torch.linspace(1e-4**0.5, (beta_max / n) ** 0.5, n, dtype=torch.float64) ** 2  # make_beta_schedule
    betas = torch.cat([b[: n // 2], torch.flip(b[: n // 2], [0])])
    std_fwd = torch.sqrt(torch.cumsum(betas, 0)).float()
    noise_levels = torch.linspace(options["t0"], options["T"], n) * n
    if mask is not None:  # sample.compute_batch: the hole is noise ...
        x1 = (1 - mask) * x1 + mask * torch.randn(x1.shape, generator=generator)
    cond = x1 if options["cond_x1"] else None
    if mask is not None:  # ... and ddpm_sampling fills it again
        x1 = (1 - mask) * x1 + mask * torch.randn(x1.shape, generator=generator)
    steps = space_indices(n, nfe + 1)
    xt = x1
    for prev, step in reversed(list(zip(steps[:-1], steps[1:]))):
        inp = xt if cond is None else torch.cat([xt, cond], 1)
        out = unet(inp, noise_levels[[step] * xt.shape[0]])
        pred_x0 = xt - std_fwd[step] * out  # compute_pred_x0
        var_prev, var_delta = std_fwd[prev] ** 2, std_fwd[step] ** 2 - std_fwd[prev] ** 2
        xt = var_delta / (var_prev + var_delta) * pred_x0 + var_prev / (var_prev + var_delta) * xt  # p_posterior
        if mask is not None:
            xt = (1 - mask) * x1 + mask * xt
    return xt


@pytest.mark.parametrize("nfe", [1, 2, 3, 7, 10, 999])
def test_the_bridge_visits_the_authors_steps(nfe):
    """Bridge.timesteps spaces the steps as their space_indices (nfe=2 -> [0, 500, 999], DESIGN.md 4)."""
    assert Bridge.symmetric(1000, 0.3).timesteps(nfe) == space_indices(1000, nfe + 1)


def center_mask(batch: int, size: int) -> torch.Tensor:
    mask = torch.zeros(batch, 1, size, size)
    mask[..., size // 4: 3 * size // 4, size // 4: 3 * size // 4] = 1
    return mask


CASES = {
    "jpeg-ema": (dict(corrupt="jpeg-5"), True, False),
    "jpeg-raw": (dict(corrupt="jpeg-5"), False, False),
    "inpaint-center": (dict(corrupt="inpaint-center", beta_max=1.0), True, True),
    "cond-x1": (dict(corrupt="sr4x-pool", cond_x1=True), True, False),
    "cond-x1-mask": (dict(corrupt="inpaint-freeform1020", cond_x1=True, beta_max=1.0), True, True),
}


@pytest.mark.parametrize("case", list(CASES))
def test_restoration_equals_the_authors_sampler(tmp_path, case):
    changes, use_ema, masked = CASES[case]
    options = authors_options(**changes)
    raw, ema = write_authors_dir(tmp_path / "results" / "x", options)
    restorer = i2sb.load(tmp_path / "results" / "x", use_ema=use_ema)
    x1 = torch.rand(2, 3, 16, 16) * 2 - 1
    mask = center_mask(2, 16) if masked else None
    out = restorer.restore(x1, nfe=3, ot_ode=True, mask=mask, generator=torch.Generator().manual_seed(4),
                           precision="fp32")
    expected = reference_sampling(ema if use_ema else raw, x1, options, 3, mask, torch.Generator().manual_seed(4))
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=2e-5)
    other = reference_sampling(raw if use_ema else ema, x1, options, 3, mask, torch.Generator().manual_seed(4))
    assert (out - other).abs().max() > 1e-3  # EMA and raw weights really differ


def test_task_and_size_come_from_the_options(tmp_path):
    options = authors_options("blur-uni", beta_max=1.0, interval=200, t0=1e-3, T=0.9, name="deblur")
    write_authors_dir(tmp_path / "r", options)
    restorer = i2sb.load(tmp_path / "r" / "latest.pt")  # the file works as well as its folder
    assert restorer.task == TaskConfig(name="deblur", degradation="blur_uni", beta_max=1.0, ot_ode=True,
                                       cond_x1=False, add_x1_noise=False, n_steps=200, t0=1e-3, T=0.9)
    assert restorer.image_size == 16 and restorer.kind.schedule.n_steps == 200
    torch.testing.assert_close(restorer.denoiser.noise_levels, torch.linspace(1e-3, 0.9, 200) * 200)


def test_head_layout_override(tmp_path):
    """Heads are not in the weights: a model trained with 32-channel heads needs model.num_head_channels=32."""
    options = authors_options()
    _, ema = write_authors_dir(tmp_path / "r", options, num_head_channels=32)
    x1 = torch.rand(1, 3, 16, 16) * 2 - 1
    expected = reference_sampling(ema, x1, options, 2)
    default = i2sb.load(tmp_path / "r").restore(x1, nfe=2, ot_ode=True, precision="fp32")
    override = i2sb.load(tmp_path / "r", num_head_channels=32).restore(x1, nfe=2, ot_ode=True, precision="fp32")
    torch.testing.assert_close(override, expected, rtol=1e-5, atol=2e-5)
    assert (default - expected).abs().max() > 1e-4


def test_sample_cli_on_an_authors_directory(tmp_path, capsys):
    options = authors_options("inpaint-center", beta_max=1.0)
    write_authors_dir(tmp_path / "results" / "inpaint", options)
    (tmp_path / "in").mkdir()
    (tmp_path / "masks").mkdir()
    pixels = np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(tmp_path / "in" / "a.png")
    Image.fromarray((center_mask(1, 16)[0, 0].numpy() * 255).astype(np.uint8)).save(tmp_path / "masks" / "a.png")
    with pytest.raises(SystemExit) as exit_info:
        sample_main([f"ckpt={tmp_path / 'results' / 'inpaint'}", f"input={tmp_path / 'in'}",
                     f"output={tmp_path / 'out'}", f"mask={tmp_path / 'masks'}", "nfe=3", "progress=false",
                     "precision=fp32"])
    assert exit_info.value.code == 0, capsys.readouterr().err
    x1 = torch.from_numpy(pixels).permute(2, 0, 1)[None].float() / 127.5 - 1
    expected = i2sb.load(tmp_path / "results" / "inpaint").restore(
        x1, nfe=3, mask=center_mask(1, 16), generator=[image_generator(0, "a.png")], precision="fp32")
    expected = ((expected[0].permute(1, 2, 0) + 1) * 127.5 + 0.5).clamp(0, 255).to(torch.uint8).numpy()
    with Image.open(tmp_path / "out" / "a.png") as image:
        np.testing.assert_array_equal(np.asarray(image), expected)


# ---------------------------------------------------------------------------- architecture from the weights
def meta_state(**kwargs) -> dict[str, torch.Tensor]:
    with torch.device("meta"):
        return UNet(**kwargs).state_dict()


@pytest.mark.parametrize("kwargs", [
    adm256_kwargs(False),
    adm256_kwargs(True),
    {**ARCH, "in_channels": 3},
    dict(image_size=32, in_channels=3, model_channels=32, out_channels=6, num_res_blocks=2,
         attention_resolutions=(2, 4), channel_mult=(1, 1, 2), num_heads=2, use_scale_shift_norm=False,
         resblock_updown=False, conv_resample=True),
    dict(image_size=32, in_channels=6, model_channels=32, out_channels=3, num_res_blocks=3,
         attention_resolutions=(), channel_mult=(1, 2, 2, 2), resblock_updown=False, conv_resample=False),
    dict(image_size=8, in_channels=3, model_channels=64, out_channels=3, num_res_blocks=1,
         attention_resolutions=(1,), channel_mult=(1,), num_head_channels=32),
])
def test_architecture_is_inferred_from_the_shapes(kwargs):
    inferred = infer_unet_kwargs(meta_state(**kwargs))
    for key in ("model_channels", "in_channels", "out_channels", "num_res_blocks", "resblock_updown",
                "use_scale_shift_norm"):
        assert inferred[key] == kwargs.get(key, False), key
    assert tuple(inferred["channel_mult"]) == tuple(kwargs["channel_mult"])
    assert tuple(inferred["attention_resolutions"]) == tuple(sorted(kwargs["attention_resolutions"]))
    if not kwargs.get("resblock_updown") and len(kwargs["channel_mult"]) > 1:
        assert inferred["conv_resample"] == kwargs["conv_resample"]


def test_architecture_inference_failure_is_one_line():
    state = meta_state(**{**ARCH, "in_channels": 3})
    del state["out.2.weight"]
    with pytest.raises(ValueError, match="not an ADM U-Net state_dict"):
        infer_unet_kwargs(state, "x.pt")
    state = meta_state(**{**ARCH, "in_channels": 3})
    state["output_blocks.0.0.out_layers.3.weight"] = torch.empty(5, 5, 3, 3)
    with pytest.raises(ValueError, match="cannot infer the U-Net architecture"):
        infer_unet_kwargs(state, "x.pt")


# ---------------------------------------------------------------------------- options.pkl
def test_options_are_read_with_paths_and_plain_values(tmp_path):
    options = authors_options(extra_set={1, 2}, extra_tuple=(1.5, "a"), extra_bytes=b"x", extra_complex=1j)
    path = tmp_path / "options.pkl"
    for protocol in (0, 2, pickle.HIGHEST_PROTOCOL):
        path.write_bytes(pickle.dumps(Namespace(**options), protocol=protocol))
        assert read_options(path) == options


def test_python313_path_module_names_are_accepted(tmp_path):
    """Python 3.13 pickles PosixPath as pathlib._local.PosixPath."""
    data = pickle.dumps(Namespace(p=PosixPath("/data/x")), protocol=0).replace(b"cpathlib\n", b"cpathlib._local\n")
    assert b"pathlib._local" in data
    (tmp_path / "options.pkl").write_bytes(data)
    assert read_options(tmp_path / "options.pkl") == {"p": PosixPath("/data/x")}


class Exploit:
    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        import os

        return (os.system, (self.command,))


@pytest.mark.parametrize("payload,name", [
    (b"cos\nsystem\n(S'touch PWNED'\ntR.", "os.system"),
    (b"cbuiltins\neval\n(S'1+1'\ntR.", "builtins.eval"),
    (b"ctorch\nload\n(S'x'\ntR.", "torch.load"),
])
def test_unpickler_refuses_code(tmp_path, monkeypatch, payload, name):
    monkeypatch.chdir(tmp_path)
    pickletools.dis(io.BytesIO(payload), out=io.StringIO())  # a well-formed pickle
    (tmp_path / "options.pkl").write_bytes(payload)
    with pytest.raises(ValueError, match=f"refusing unsafe global {name} \\(the file wants to run code") as err:
        read_options(tmp_path / "options.pkl")
    assert len(str(err.value).splitlines()) == 1 and str(tmp_path / "options.pkl") in str(err.value)
    assert not (tmp_path / "PWNED").exists()


def test_unpickler_refuses_a_reduce_exploit_in_a_checkpoint_dir(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_authors_dir(tmp_path / "r", authors_options())
    (tmp_path / "r" / "options.pkl").write_bytes(pickle.dumps(Namespace(x=Exploit("touch PWNED"))))
    (tmp_path / "in").mkdir()
    Image.fromarray(np.zeros((16, 16, 3), np.uint8)).save(tmp_path / "in" / "a.png")
    with pytest.raises(SystemExit) as exit_info:
        sample_main([f"ckpt={tmp_path / 'r'}", f"input={tmp_path / 'in'}", f"output={tmp_path / 'out'}"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "refusing unsafe global" in err and "system" in err
    assert not (tmp_path / "PWNED").exists()


@pytest.mark.parametrize("corrupt", [name for name, task in CORRUPTIONS.items() if task is not None])
def test_an_authors_checkpoint_degrades_as_the_i2sb_task_config_of_its_corruption(corrupt):
    """What the authors trained on (``--corrupt``) is what the task config of that name degrades with."""
    task = task_from_options(authors_options(corrupt, beta_max=0.5), "o")
    config = OmegaConf.load(CONFIGS / "task" / f"{task.degradation}.yaml")
    x0 = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 2 - 1
    by_name = degrade.build(task.degradation, 32)(x0, torch.Generator().manual_seed(1))
    by_config = degrade.build(config.degradation, 32, **config.get("params", {}))(x0, torch.Generator().manual_seed(1))
    assert torch.equal(by_name[0], by_config[0]) and not torch.equal(by_name[0], x0)
    assert (by_name[1] is None) == (by_config[1] is None)
    assert task.beta_max == 0.5  # the bridge comes from the checkpoint's own options, not the config


def test_an_unknown_or_mixed_corruption_loads_without_a_degradation():
    assert task_from_options(authors_options("mixture"), "o").degradation is None
    assert task_from_options(authors_options("something-new"), "o").degradation is None
    with pytest.raises(ValueError, match="'interval' is missing"):
        task_from_options({"beta_max": 0.3}, "o.pkl")


# ---------------------------------------------------------------------------- broken checkpoints
def test_broken_authors_checkpoints_are_one_line_errors(tmp_path):
    options = authors_options()
    write_authors_dir(tmp_path / "r", options)
    ckpt = torch.load(tmp_path / "r" / "latest.pt", weights_only=True)
    (tmp_path / "r" / "options.pkl").unlink()
    with pytest.raises(FileNotFoundError, match="options.pkl: missing"):
        i2sb.load(tmp_path / "r")
    cases = {
        "prefix": ({**ckpt, "net": {k.replace("diffusion_model.", ""): v for k, v in ckpt["net"].items()}},
                   "lacks the authors' prefix"),
        "shadow": ({**ckpt, "ema": {**ckpt["ema"], "shadow_params": ckpt["ema"]["shadow_params"][:-1]}},
                   "shadow_params but the U-Net has"),
        "no-ema": ({**ckpt, "ema": None}, "use_ema=false"),
    }
    cases["cond"] = (ckpt, "input channels but the options say cond_x1=True")
    for name, (state, text) in cases.items():
        folder = tmp_path / name
        folder.mkdir()
        torch.save(state, folder / "latest.pt")
        with open(folder / "options.pkl", "wb") as f:
            pickle.dump(Namespace(**{**options, "cond_x1": name == "cond"}), f)
        with pytest.raises(ValueError, match=text):
            i2sb.load(folder)
    assert i2sb.load(tmp_path / "no-ema", use_ema=False).task.degradation == "jpeg5"


def test_unknown_head_layout_asks_for_an_override(tmp_path):
    write_authors_dir(tmp_path / "r", authors_options(), channel_mult=(1, 1), num_head_channels=32)
    with pytest.raises(ValueError, match="model.num_head_channels"):
        i2sb.load(tmp_path / "r")  # 32-channel attention, default 64-channel heads
    assert i2sb.load(tmp_path / "r", num_head_channels=32).image_size == 16
