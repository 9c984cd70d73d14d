"""Inference-only model folders: ``model.safetensors`` + ``config.json`` + a model card, loadable without pickle.

``i2sb-export ckpt=RUN output=DIR`` writes, from a training run of this project or the authors' ``results/NAME/``:

* ``model.safetensors`` -- the U-Net weights (EMA by default), plain tensors: no code can hide in them;
* ``config.json``       -- the network's arguments, the bridge / task, the training method, image size, default NFE;
* ``README.md``         -- a model card (task, training steps and data, validation metrics, how to restore), with
  the front matter model hubs read, so the folder can be uploaded as it is.

``i2sb.load(DIR)`` and ``i2sb-sample ckpt=DIR`` read such a folder (:mod:`.export_reader`). The folder is
staged beside ``output`` and renamed into place, so a failed export never leaves a partial model folder.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import save_file

from ..evaluation.record import ValidationRecord
from ..utils.file_formats import CARD_FILE, CONFIG_FILE, METRICS, MODEL_FORMAT, MODEL_VERSION, OPTIONS_FILE, WEIGHTS_FILE
from ..utils.files import fix_mode
from ..utils.torchfile import load_torch
from .authors import read_options
from .checkpoints import is_i2sb_checkpoint, locate, network_spec
from .export_reader import is_exported
from .trained_network import TrainedNetwork

def _training_info(file: Path) -> dict[str, Any]:
    """What the model card says about training: steps, data, validation metrics (best effort, never fails)."""
    info: dict[str, Any] = {}
    state = load_torch(file, mmap=True)
    if is_i2sb_checkpoint(state):
        cfg = state.get("config") or {}
        info["steps"] = state.get("step")
        info["data"] = {k: cfg.get("data", {}).get(k) for k in ("kind", "root", "image_size")}
        info["trainer"] = {k: cfg.get("trainer", {}).get(k) for k in ("batch_size", "lr", "ema", "precision")}
        info["validation"] = _last_validation(file.parent / METRICS)
    elif (file.parent / OPTIONS_FILE).is_file():
        options = read_options(file.parent / OPTIONS_FILE)
        sched = state.get("sched") or {}
        info["steps"] = sched.get("last_epoch")
        info["data"] = {"kind": "ImageNet (the authors' training set)", "image_size": options.get("image_size")}
        info["trainer"] = {k: options.get(k) for k in ("batch_size", "lr", "ema") if k in options}
        info["authors"] = options.get("name") or options.get("corrupt")
    return info


def _last_validation(path: Path) -> dict[str, Any]:
    """The last record of ``metrics.jsonl`` that holds validation values (``val_*``), or {}."""
    if not path.is_file():
        return {}
    last: dict[str, Any] = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        if any(k.startswith("val_") for k in record):
            last = {k: v for k, v in record.items() if k == "step" or k.startswith("val_")}
    return last


def model_card(spec: TrainedNetwork, info: dict[str, Any], name: str) -> str:
    """The README.md of an exported folder (hub front matter, then what the model is and how to use it)."""
    task = spec.task
    validation = info.get("validation") or {}
    lines = ["---", "library_name: i2sb", "tags: [image-restoration, schrodinger-bridge, diffusion, i2sb]"]
    if info.get("authors"):
        lines.append("license: cc-by-nc-sa-4.0  # the authors' checkpoints (NVlabs/I2SB)")
    lines += ["---", "", f"# {name}: I2SB {task.degradation or task.name}", "",
              f"An Image-to-Image Schrödinger Bridge (Liu et al., ICML 2023) trained with `method={spec.method}` "
              f"for the task `{task.name}` (degradation `{task.degradation}`), exported by `i2sb-export`.", "",
              "| | |", "|---|---|",
              f"| task | `{task.name}`: degradation `{task.degradation}`, beta_max {task.beta_max}, "
              f"{task.n_steps} steps, OT-ODE {str(task.ot_ode).lower()}, cond_x1 {str(task.cond_x1).lower()} |",
              f"| network | ADM U-Net, {spec.unet_kwargs.get('model_channels')} channels, channel_mult "
              f"{list(spec.unet_kwargs.get('channel_mult', []))}, {_parameters(spec):,} parameters |",
              f"| training size | {spec.image_size} px (larger images are restored in seamless tiles) |",
              f"| training steps | {info.get('steps', 'unknown')} |",
              f"| data | {_plain(info.get('data'))} |",
              f"| optimisation | {_plain(info.get('trainer'))} |",
              f"| default NFE | {_default_nfe(spec)} |"]
    if validation:
        lines.append(f"| validation (step {validation.get('step')}) | " + ", ".join(
            f"{k} {v:.2f}" for k, v in validation.items() if k != "step" and isinstance(v, (int, float))) + " |")
    lines += ["", "## Restore images", "", "i2sb is installed from its source (it is not on PyPI): in a copy of the "
              "i2sb repository, `pip install -e .` (after a torch build for your machine).", "", "```bash",
              "i2sb-sample ckpt=PATH/TO/THIS/FOLDER input=degraded/ output=restored/   # [nfe=N] [prefer=realism]",
              "```", "", "```python", "import i2sb", "restorer = i2sb.load(\"PATH/TO/THIS/FOLDER\")",
              "restored = restorer.restore(x1)  # x1: (B, 3, H, W) in [-1, 1]", "```", "",
              "`model.safetensors` holds the weights (no pickle); `config.json` the network, the bridge and the task."]
    return "\n".join(lines) + "\n"


def _default_nfe(spec: TrainedNetwork) -> str:
    """The NFE ``i2sb-sample`` picks without ``nfe=``, and why (the validation record's choices)."""
    record = ValidationRecord.from_dict(spec.validation) if spec.validation else None
    fidelity = record.best("fidelity") if record is not None else None
    if fidelity is None:
        return str(spec.default_nfe)
    realism = record.best("realism")
    other = f"; `prefer=realism`: NFE {realism.nfe}, lowest SWD" if realism is not None else ""
    return f"{fidelity.nfe} (best validation PSNR{other})"


def _parameters(spec: TrainedNetwork) -> int:
    return sum(v.numel() for v in spec.weights.values())


def _plain(values: dict[str, Any] | None) -> str:
    return ", ".join(f"{k} {v}" for k, v in (values or {}).items() if v is not None) or "unknown"


def check_output(output: str | Path) -> Path:
    """``output`` as a Path if an export may go there: a new folder, an empty one or an earlier export (replaced);
    any other existing folder or file is a one-line ValueError (never a user's folder of other files)."""
    output = Path(output)
    if output.exists() and (not output.is_dir() or (any(output.iterdir()) and not is_exported(output))):
        raise ValueError(f"output={output} exists and is not an exported model folder; choose a new folder")
    return output


def source_name(source: Path) -> str:
    """What ``config.json`` records of the checkpoint file: its folder and name (``jpeg5/latest.pt``), not where it
    lay on the exporting machine."""
    return f"{source.parent.name}/{source.name}" if source.parent.name else source.name


def export_model(ckpt: str | Path, output: str | Path, use_ema: bool = True,
                 **model_overrides: Any) -> Path:
    """Write the inference-only folder ``output`` for ``ckpt`` (a run, a checkpoint file or ``results/NAME/``)."""
    output = check_output(output)
    source = locate(ckpt)
    spec = network_spec(ckpt, use_ema, model_overrides)
    config = {"format": MODEL_FORMAT, "version": MODEL_VERSION, "method": spec.method, "image_size": spec.image_size,
              "default_nfe": spec.default_nfe, "task": asdict(spec.task), "network": _jsonable(spec.unet_kwargs),
              "weights": "ema" if use_ema else "raw", "source": source_name(source.resolve()),
              "validation": spec.validation, **({"student": spec.student} if spec.student else {})}
    card = model_card(spec, _training_info(source), output.name)
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".partial", dir=output.parent))
    try:
        tensors = {k: v.detach().to("cpu").contiguous() for k, v in spec.weights.items()}
        save_file(tensors, str(staging / WEIGHTS_FILE), metadata={"format": MODEL_FORMAT})
        (staging / CONFIG_FILE).write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
        (staging / CARD_FILE).write_text(card, encoding="utf-8")
        for path in (staging, *staging.iterdir()):
            fix_mode(path)
        _replace_folder(staging, output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return output


def _jsonable(value: Any) -> Any:
    if isinstance(value, (tuple, list)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, torch.Tensor):
        return value.tolist()
    return value


def _replace_folder(staging: Path, output: Path) -> None:
    """Move the complete ``staging`` folder to ``output``; an existing export there is replaced, anything else
    is refused (never a user's folder of other files)."""
    if output.exists():
        check_output(output)
        old = output.with_name(f".{output.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        output.rename(old)
        staging.rename(output)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(output)
