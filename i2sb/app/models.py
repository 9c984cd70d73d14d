"""The checkpoints an ``i2sb-app`` serves: loaded once at start, named, described for the page.

Only these can be restored with: the page and the API choose a model by its name, never by a path.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..core.samplers import SAMPLERS
from ..restoration import OptionError, Restorer, load
from ..restoration.inputs import input_scale

TASK_LABELS = {  # degradation-name prefix -> what a photographer calls the task
    "jpeg": "JPEG artifacts", "sr4x": "4x super-resolution", "blur": "deblurring", "inpaint": "inpainting",
    "colorize": "colorization",
}


@dataclass(frozen=True)
class ServedModel:
    """One configured checkpoint: its page name, the restorer, and what the page offers for it."""

    name: str
    path: str
    restorer: Restorer
    samplers: tuple[str, ...]  # the samplers this model runs (the first is i2sb-sample's default, ddpm)
    scale: int  # the photo is restored this many times larger per side (SR: 4), else 1
    precision: str = "auto"  # the network's autocast precision (as i2sb-sample's precision=)

    @property
    def max_nfe(self) -> int:
        return self.restorer.kind.max_nfe

    @property
    def needs_mask(self) -> bool:
        return self.restorer.needs_mask

    @property
    def label(self) -> str:
        """``name: task (algorithm)``, e.g. ``jpeg5: JPEG artifacts, quality 5 (I2SB)``."""
        return f"{self.name}: {task_label(self.restorer)} ({self.restorer.kind.name})"


def task_label(restorer: Restorer) -> str:
    """A task's description for people: ``JPEG artifacts, quality 5``, ``4x super-resolution (sr4x_pool)``."""
    task = restorer.task.degradation
    if task is None:
        return f"image-to-image ({restorer.task.name})"
    text = next((label for prefix, label in TASK_LABELS.items() if task.startswith(prefix)), task)
    quality = restorer.task.params.get("quality", {"jpeg5": 5, "jpeg10": 10}.get(task))
    return f"{text}, quality {quality}" if quality is not None else f"{text} ({task})"


def model_samplers(restorer: Restorer) -> tuple[str, ...]:
    """The samplers ``restorer.options`` accepts for this model as trained (I2SB SDE: ddpm, implicit; OT-ODE:
    ddpm, heun, multistep; baselines: ddpm, implicit)."""
    found = []
    for sampler in SAMPLERS:
        try:
            restorer.options(sampler=sampler)
        except OptionError:
            continue
        found.append(sampler)
    return tuple(found)


def model_names(paths: list[str]) -> list[str]:
    """Page names of checkpoint paths: the folder's (or file's) name, made unique with its parent's."""
    bases = [Path(p).resolve().name if Path(p).is_dir() else Path(p).resolve().stem for p in paths]
    names = [f"{Path(p).resolve().parent.name}/{base}" if bases.count(base) > 1 else base
             for p, base in zip(paths, bases)]
    if len(set(names)) < len(names):
        raise ValueError(f"ckpt: the same checkpoint is given twice: {', '.join(paths)}")
    return names


def load_models(paths: list[str], device: str = "auto", precision: str = "auto") -> dict[str, ServedModel]:
    """``{name: ServedModel}`` for every path ``i2sb-sample ckpt=`` reads (run, exported folder, the authors'
    ``results/NAME``); one-line errors name the path or the key."""
    served = {}
    for name, path in zip(model_names(paths), paths):
        if not Path(path).exists():
            raise FileNotFoundError(f"ckpt={path}: no such file or directory")
        restorer = load(path, device=device)
        try:
            restorer.options(precision=precision)
        except OptionError as err:
            raise ValueError(f"config key '{err.key}': {err.reason}") from None
        served[name] = ServedModel(name, path, restorer, model_samplers(restorer), input_scale(restorer), precision)
    return served
