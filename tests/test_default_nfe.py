"""The default NFE follows what the model's own validation found: training records PSNR and SWD per NFE it tried
(latest.pt, metrics.jsonl), an export carries the record, i2sb.load exposes it and i2sb-sample picks the NFE of
prefer=fidelity (best PSNR, the default) or realism (lowest SWD) and says why; a checkpoint without a record keeps
its trainer.eval_nfe."""

from __future__ import annotations

import json

import pytest
import torch

import i2sb
from i2sb.evaluation.record import NFEScore, ValidationRecord
from i2sb.restoration.export_writer import export_model
from i2sb.train import train
from i2sb.utils.torchfile import load_torch, save_torch

from helpers import random_image, run_cli, tiny_config, write_run

RECORD = {"step": 600, "images": 8, "input": {"psnr": 24.5, "swd": 60.0},
          "nfe": [{"nfe": 10, "psnr": 25.2, "swd": 70.0}, {"nfe": 1, "psnr": 26.1, "swd": 90.0},
                  {"nfe": 2, "psnr": 25.9, "swd": 80.0}, {"nfe": 5, "psnr": 25.5, "swd": 69.95}]}


def with_record(run, record=RECORD):
    """Give the run's latest.pt a validation record (as training writes it)."""
    state = load_torch(run / "latest.pt")
    save_torch({**state, "validation": record}, run / "latest.pt")
    return run


# ---------------------------------------------------------------------------- the record's choice
def test_fidelity_takes_the_best_psnr_and_realism_the_lowest_swd():
    record = ValidationRecord.from_dict(RECORD)
    assert [s.nfe for s in record.scores] == [1, 2, 5, 10] and record.input_swd == 60.0
    assert record.best("fidelity").nfe == 1
    assert record.best("realism").nfe == 5  # 69.95 and 70.0 are within 0.1: the cheaper NFE
    assert ValidationRecord.from_dict(record.as_dict()) == record
    assert "highest PSNR in the model's validation (step 600, 8 images: NFE 1 26.10, NFE 2 25.90" in \
        record.reason("fidelity")
    assert record.reason("realism").endswith("NFE 10 70.00); prefer=realism -> NFE 5")
    with pytest.raises(ValueError, match="prefer must be one of fidelity, realism"):
        record.best("sharpness")


def test_ties_go_to_fewer_nfe_and_missing_scores_to_none():
    flat = ValidationRecord(1, 2, (NFEScore(1, 20.0, 50.0), NFEScore(3, 20.005, 50.05)))
    assert flat.best("fidelity").nfe == 1 and flat.best("realism").nfe == 1
    no_swd = ValidationRecord(1, 2, (NFEScore(1, 20.0), NFEScore(3, 21.0)))
    assert no_swd.best("fidelity").nfe == 3 and no_swd.best("realism") is None
    for broken in ({}, {"step": 1}, {"step": 1, "images": 2, "nfe": []}, {"step": "x", "images": 1, "nfe": [{}]},
                   None, [1, 2]):
        assert ValidationRecord.from_dict(broken) is None


# ---------------------------------------------------------------------------- training writes it
def test_training_records_psnr_and_swd_per_nfe_in_the_checkpoint_and_metrics(tmp_path, capsys):
    cfg = tiny_config(tmp_path / "run", trainer={"max_steps": 2, "eval_nfes": [1, 5]})
    train(cfg)
    state = load_torch(tmp_path / "run" / "latest.pt")
    record = ValidationRecord.from_dict(state["validation"])
    assert record.step == 2 and record.images == 2 and [s.nfe for s in record.scores] == [1, 2, 5]
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    logged = [x for x in lines if "val_psnr" in x][-1]
    for score in record.scores:
        assert logged[f"val_psnr_nfe{score.nfe}"] == score.psnr and logged[f"val_swd_nfe{score.nfe}"] == score.swd
        assert score.swd > 0
    assert logged["val_psnr"] == logged["val_psnr_nfe2"] and logged["val_swd_input"] == record.input_swd
    assert "PSNR dB / SWD by NFE 1: " in capsys.readouterr().out
    restorer = i2sb.load(tmp_path / "run")
    assert restorer.validation == record and restorer.default_nfe == record.best("fidelity").nfe
    resumed = train({**cfg, "trainer": {**cfg["trainer"], "max_steps": 3, "eval_every": 1000, "ckpt_every": 1,
                                        "eval_nfes": [1]}})  # resumes; step 3 validates (max_steps) again
    assert resumed["step"] == 3
    assert [s.nfe for s in i2sb.load(tmp_path / "run").validation.scores] == [1, 2]


def test_a_record_survives_a_save_without_validation(tmp_path):
    cfg = tiny_config(tmp_path / "run", trainer={"max_steps": 2, "eval_nfes": []})
    train(cfg)
    first = load_torch(tmp_path / "run" / "latest.pt")["validation"]
    train({**cfg, "trainer": {**cfg["trainer"], "max_steps": 3, "eval_every": 1000, "ckpt_every": 1}})
    assert load_torch(tmp_path / "run" / "latest.pt")["validation"]["step"] in (first["step"], 3)


def test_eval_nfes_are_checked_against_the_bridge(tmp_path):
    from i2sb.config import ConfigError, to_train_config

    with pytest.raises(ConfigError, match="'trainer.eval_nfes': must be in 1..99, got 100"):
        to_train_config({**tiny_config(tmp_path), "task": {**tiny_config(tmp_path)["task"], "n_steps": 100},
                         "trainer": {**tiny_config(tmp_path)["trainer"], "eval_nfes": [1, 100]}})


# ---------------------------------------------------------------------------- i2sb.load and i2sb-sample use it
def test_load_exposes_the_record_and_the_default(tmp_path):
    run = with_record(write_run(tmp_path / "run"))
    restorer = i2sb.load(run)
    assert restorer.default_nfe == 1 and restorer.nfe_for("realism") == 5 and restorer.fallback_nfe == 3
    assert restorer.options().nfe == 1
    old = i2sb.load(write_run(tmp_path / "old"))  # no record: the checkpoint's trainer.eval_nfe, as before
    assert old.validation is None and old.default_nfe == 3 and old.nfe_for("realism") == 3
    assert old.choose_nfe("realism")[1] == "the checkpoint's default (its trainer.eval_nfe; no validation record)"


@pytest.mark.parametrize("args, nfe, why", [
    ([], 1, "nfe=1: highest PSNR in the model's validation (step 600, 8 images: NFE 1 26.10"),
    (["prefer=realism"], 5, "nfe=5: lowest SWD in the model's validation (step 600"),
    (["nfe=2", "prefer=realism"], 2, None),  # a given nfe wins, nothing to explain
])
def test_sample_picks_the_nfe_of_its_preference_and_says_why(tmp_path, capsys, args, nfe, why):
    run = with_record(write_run(tmp_path / "run"))
    (tmp_path / "in").mkdir()
    random_image(16, 16, 0).save(tmp_path / "in" / "a.png")
    code, out, err = run_cli(capsys, f"ckpt={run}", f"input={tmp_path / 'in'}", f"output={tmp_path / 'out'}", *args)
    assert code == 0, err
    assert f"(nfe={nfe}, device=cpu)" in out
    assert (why in out) if why else "validation" not in out
    if why:
        assert len([line for line in out.splitlines() if line.startswith("i2sb-sample: nfe=")]) == 1


def test_sample_without_record_keeps_eval_nfe_and_refuses_unknown_preferences(tmp_path, capsys):
    run = write_run(tmp_path / "run")
    (tmp_path / "in").mkdir()
    random_image(16, 16, 0).save(tmp_path / "in" / "a.png")
    code, out, _ = run_cli(capsys, f"ckpt={run}", f"input={tmp_path / 'in'}", f"output={tmp_path / 'out'}")
    assert code == 0 and "nfe=3: the checkpoint's default (its trainer.eval_nfe; no validation record)" in out
    code, _, err = run_cli(capsys, f"ckpt={run}", f"input={tmp_path / 'in'}", f"output={tmp_path / 'o2'}",
                           "prefer=sharp")
    assert code == 2 and "error: prefer: must be one of fidelity, realism, got 'sharp'" in err


def test_an_export_carries_the_record(tmp_path):
    run = with_record(write_run(tmp_path / "run"))
    folder = export_model(run, tmp_path / "export")
    assert json.loads((folder / "config.json").read_text())["validation"]["step"] == 600
    restorer = i2sb.load(folder)
    assert restorer.default_nfe == 1 and restorer.nfe_for("realism") == 5
    card = (folder / "README.md").read_text()
    assert "| default NFE | 1 (best validation PSNR; `prefer=realism`: NFE 5, lowest SWD) |" in card
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    assert torch.equal(restorer.restore(x), i2sb.load(run).restore(x, nfe=1))
