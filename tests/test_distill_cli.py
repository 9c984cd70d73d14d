"""``i2sb-distill`` end to end on a tiny teacher: the run directory, resume, SIGTERM, the student's checkpoint read by
``i2sb.load`` / ``i2sb-sample`` / ``i2sb-export`` (default NFE 1, z drawn per sample), ``data=degraded`` folders,
one-line errors; and the student's restoration against the generator it was trained as."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import i2sb
from i2sb.cli.distill import main as distill_main
from i2sb.core.bridge import Bridge
from i2sb.degrade import build
from i2sb.distill import BridgeGenerator
from i2sb.distill.loop import distill
from i2sb.distill.trainer import DistillTrainer
from i2sb.restoration.checkpoints import LATEST
from i2sb.restoration.export_writer import export_model
from i2sb.restoration.loading import load_denoiser
from i2sb.restoration.student import StudentInfo, StudentRestoration, student_denoiser
from i2sb.utils.torchfile import load_torch, save_torch
from helpers import random_image, rgb, run_cli, tiny_task, write_run

FAST = ["device=cpu", "logging.progress=false", "trainer.precision=fp32", "trainer.batch_size=2",
        "trainer.eval_batch=2", "distill.aux_steps=1", "data.params.length=16", "distill.reference_nfe=3"]


@pytest.fixture(scope="module")
def teacher(tmp_path_factory) -> Path:
    """A tiny jpeg teacher (16 px, 100 bridge steps): random weights, instant."""
    return write_run(tmp_path_factory.mktemp("teacher"), task={"ot_ode": False})


def run(capsys, *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        distill_main(list(args))
    captured = capsys.readouterr()
    return exit_info.value.code, captured.out, captured.err


def config(teacher: Path, run_dir: Path, **trainer) -> dict:
    return {"ckpt": str(teacher), "run_dir": str(run_dir), "device": "cpu", "logging": {"progress": False},
            "data": {"kind": "demo", "params": {"length": 16}},
            "distill": {"aux_steps": 1, "reference_nfe": 3},
            "trainer": {"batch_size": 2, "eval_batch": 2, "precision": "fp32", "max_steps": 2, "ckpt_every": 100,
                        "eval_every": 100, "log_every": 1, **trainer}}


def test_cli_writes_a_run_that_resumes(teacher, tmp_path, capsys):
    out = tmp_path / "student"
    code, _, err = run(capsys, f"ckpt={teacher}", f"run_dir={out}", *FAST, "trainer.max_steps=2")
    assert code == 0, err
    for name in ("config.yaml", LATEST, "metrics.jsonl"):
        assert (out / name).is_file(), name
    state = load_torch(out / LATEST)
    assert state["step"] == 2 and state["student"] == {"z_channels": 3, "steps": 1}
    assert state["config"]["method"] == "ibmd" and state["config"]["task"]["n_steps"] == 100
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert {"student_loss", "aux_loss", "gap"} <= set(records[0]) and "val_swd_nfe1" in records[-1]
    code, output, err = run(capsys, f"ckpt={teacher}", f"run_dir={out}", *FAST, "trainer.max_steps=3")
    assert code == 0, err
    assert "resumed from" in output + err and "at step 2" in output + err
    assert load_torch(out / LATEST)["step"] == 3
    code, _, err = run(capsys, f"ckpt={teacher}", f"run_dir={out}", *FAST, "distill.z_channels=2")
    assert code == 2 and "distill.z_channels" in err and len(err.strip().splitlines()) == 1


def test_sigterm_saves_latest_at_the_iteration_boundary(teacher, tmp_path, monkeypatch):
    original = DistillTrainer.train_step

    def step_then_signal(self, batches, degraded):
        values = original(self, batches, degraded)
        if self.step == 2:
            signal.raise_signal(signal.SIGTERM)
        return values

    monkeypatch.setattr(DistillTrainer, "train_step", step_then_signal)
    summary = distill(config(teacher, tmp_path, max_steps=5))
    assert summary["preempted"] and summary["step"] == 2 and summary["stop_reason"] == "SIGTERM"
    assert load_torch(tmp_path / LATEST)["step"] == 2


@pytest.fixture(scope="module")
def student(teacher, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("student")
    distill(config(teacher, out, max_steps=2))
    return out


def test_the_student_loads_samples_and_exports_like_any_checkpoint(student, tmp_path, capsys):
    restorer = i2sb.load(student, device="cpu")
    assert restorer.kind.name == "IBMD student" and restorer.default_nfe == 1
    x1 = torch.rand(2, 3, 16, 16) * 2 - 1
    same = [restorer.restore(x1, generator=torch.Generator().manual_seed(0)) for _ in range(2)]
    other = restorer.restore(x1, generator=torch.Generator().manual_seed(1))
    assert torch.equal(same[0], same[1]) and not torch.allclose(same[0], other)
    folder = tmp_path / "in"
    folder.mkdir()
    random_image(20, 24, seed=0).save(folder / "a.png")
    code, _, err = run_cli(capsys, f"ckpt={student}", f"input={folder}", f"output={tmp_path / 'out'}",
                           "n_samples=2", "device=cpu")
    assert code == 0, err
    s0, s1 = rgb(tmp_path / "out" / "a_s0.png"), rgb(tmp_path / "out" / "a_s1.png")
    assert s0.shape == (20, 24, 3) and not np.array_equal(s0, s1)  # different z per sample
    export_model(student, tmp_path / "exported")
    assert json.loads((tmp_path / "exported" / "config.json").read_text())["student"] == {"z_channels": 3, "steps": 1}
    exported = i2sb.load(tmp_path / "exported", device="cpu")
    assert exported.default_nfe == 1 and exported.kind.info == restorer.kind.info
    assert torch.equal(exported.restore(x1, generator=torch.Generator().manual_seed(0)), same[0])
    code, _, err = run_cli(capsys, f"ckpt={student}", f"input={folder}", f"output={tmp_path / 'o2'}", "nfe=2",
                           "device=cpu")
    assert code == 2 and "nfe" in err


def test_restoration_is_the_generator_it_was_trained_as(teacher):
    """The restorer's student (a BridgeDenoiser fed cat[cond, z]) computes BridgeGenerator's x0 on the same z."""
    denoiser = load_denoiser(teacher, device="cpu")
    task = tiny_task(n_steps=100)
    bridge = Bridge.symmetric(task.n_steps, task.beta_max)
    G = BridgeGenerator.from_denoiser(denoiser, 3, 0.5, torch.Generator().manual_seed(0)).eval()
    from i2sb.restoration import Restorer
    restorer = Restorer(student_denoiser(G.net, task, 3), StudentRestoration(bridge, task, StudentInfo(3, 1)),
                        task, 16)
    x1 = torch.rand(2, 3, 16, 16) * 2 - 1
    z = torch.randn((2, 3, 16, 16), generator=torch.Generator().manual_seed(5))
    out = restorer.restore(x1, generator=torch.Generator().manual_seed(5), nfe=1, precision="fp32", tile=0)
    with torch.no_grad():
        expected = G(x1, task.n_steps - 1, None, z)
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_inpainting_students_keep_the_known_pixels():
    task = tiny_task(degradation="inpaint_center", cond_x1=True)
    net = torch.nn.Conv2d(9, 3, 3, padding=1)  # cat[X_s, x1, z]
    net.config = {"channel_mult": [1]}
    wrapped = student_denoiser(lambda x, t: net(x), task, 3)  # noqa: E731 -- a plain network function
    kind = StudentRestoration(Bridge.symmetric(task.n_steps, task.beta_max), task, StudentInfo(3, 2))
    x1 = torch.rand(1, 3, 8, 8) * 2 - 1
    mask = torch.zeros(1, 1, 8, 8)
    mask[..., 2:6, 2:6] = 1
    g = torch.Generator().manual_seed(0)
    start, cond = kind.boundary(x1, mask, g)
    with torch.no_grad():
        out = kind.sampler(None)(wrapped.configured(cond=cond), start, kind.steps("ddpm", 2), kind.schedule,
                                 mask=mask, generator=g)
    assert torch.equal(out * (1 - mask), x1 * (1 - mask)) and not torch.equal(out * mask, x1 * mask)


def test_two_step_students_restore_at_nfe_two(teacher, tmp_path):
    cfg = config(teacher, tmp_path, max_steps=1)
    cfg["distill"]["steps"] = 2
    distill(cfg)
    restorer = i2sb.load(tmp_path, device="cpu")
    assert restorer.kind.max_nfe == 2 and restorer.fallback_nfe == 2  # NFE K without a validation record
    assert {s.nfe for s in restorer.validation.scores} == {1, 2}  # else the NFE its validation scored best
    assert restorer.default_nfe == restorer.nfe_for("fidelity")
    assert restorer.restore(torch.zeros(1, 3, 16, 16), nfe=2).shape == (1, 3, 16, 16)


def test_degraded_folders_alone_distil_and_validate_against_the_teacher(teacher, tmp_path, capsys):
    folder = tmp_path / "degraded"
    folder.mkdir()
    jpeg = build("jpeg", 32, quality=5)
    for i in range(3):
        x0 = torch.from_numpy(np.array(random_image(32, 32, seed=i))).permute(2, 0, 1)[None].float() / 127.5 - 1
        x1 = jpeg(x0)[0][0].clamp(-1, 1)
        Image.fromarray(((x1.permute(1, 2, 0).numpy() + 1) * 127.5).round().astype(np.uint8)).save(folder / f"{i}.png")
    out = tmp_path / "student"
    fast = [key for key in FAST if not key.startswith("data.params")]
    code, output, err = run(capsys, f"ckpt={teacher}", f"run_dir={out}", "data=degraded", f"data.root={folder}",
                            *fast, "trainer.max_steps=1", "trainer.eval_every=1")
    assert code == 0, err
    assert "against the teacher's NFE-3 restorations" in output + err
    assert load_torch(out / LATEST)["config"]["data"]["kind"] == "degraded"


def test_bad_inputs_are_one_line_errors_before_anything_is_written(teacher, tmp_path, capsys):
    ref = "distill.reference_nfe=3"  # the tiny teacher has 100 bridge steps (the default is 100)
    out = tmp_path / "never"
    code, _, err = run(capsys, f"ckpt={tmp_path / 'missing'}", f"run_dir={out}")
    assert code == 2 and err.startswith("i2sb-distill: error: ckpt:") and len(err.strip().splitlines()) == 1
    prior = tmp_path / "prior"
    prior.mkdir()
    state = load_torch(teacher / LATEST)
    state["config"]["method"] = "ddpm"
    save_torch(state, prior / LATEST)
    code, _, err = run(capsys, f"ckpt={prior}", f"run_dir={out}")
    assert code == 2 and "not an I2SB bridge model" in err and len(err.strip().splitlines()) == 1
    empty = tmp_path / "empty"
    empty.mkdir()
    code, _, err = run(capsys, f"ckpt={teacher}", f"run_dir={out}", ref, "data=degraded", f"data.root={empty}")
    assert code == 2 and "data.root" in err and "no images" in err and len(err.strip().splitlines()) == 1
    photos = tmp_path / "photos"
    photos.mkdir()
    random_image(32, 32, seed=0).save(photos / "a.png")
    code, _, err = run(capsys, f"ckpt={teacher}", f"run_dir={out}", ref, "data=degraded", f"data.root={photos}",
                       "data.params.length=16")
    assert code == 2 and "data.params" in err and "length" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, f"ckpt={teacher}", f"run_dir={out}", ref, "distill.nonsense=1")
    assert code == 2 and "distill.nonsense" in err and len(err.strip().splitlines()) == 1
    code, _, err = run(capsys, f"ckpt={teacher}", f"run_dir={out}", ref, "distill.steps=100")
    assert code == 2 and "distill.steps" in err
    code, _, err = run(capsys, f"ckpt={teacher}")
    assert code == 2 and "run_dir" in err
    assert not out.exists()
