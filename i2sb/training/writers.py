"""Training observability: JSONL metrics in the run directory, optional TensorBoard / W&B writers."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Protocol

from torch import Tensor

from ..utils.file_formats import METRICS


class Writer(Protocol):
    def scalars(self, step: int, values: dict[str, float]) -> None: ...
    def image(self, step: int, name: str, image: Tensor) -> None: ...
    def close(self) -> None: ...


class JsonlWriter:
    """Appends one JSON object per call to ``run_dir/metrics.jsonl`` (flushed each line)."""

    def __init__(self, run_dir: Path):
        self.path = Path(run_dir) / METRICS
        self._file = self.path.open("a", encoding="utf-8")

    def scalars(self, step: int, values: dict[str, float]) -> None:
        record = {"step": step, "time": round(time.time(), 3), **{k: _plain(v) for k, v in values.items()}}
        self._file.write(json.dumps(record) + "\n")
        self._file.flush()

    def image(self, step: int, name: str, image: Tensor) -> None:
        pass  # images are written as PNG files by the trainer

    def close(self) -> None:
        self._file.close()


class TensorBoardWriter:
    def __init__(self, run_dir: Path):
        try:
            from torch.utils.tensorboard import SummaryWriter  # optional: pip install tensorboard
        except ImportError as err:
            raise ValueError("logging.tensorboard=true needs the 'tensorboard' package: pip install tensorboard") from err
        self._writer = SummaryWriter(log_dir=str(Path(run_dir) / "tensorboard"))

    def scalars(self, step: int, values: dict[str, float]) -> None:
        for key, value in values.items():
            self._writer.add_scalar(key, value, global_step=step)

    def image(self, step: int, name: str, image: Tensor) -> None:
        self._writer.add_image(name, image.clamp(0, 1), global_step=step)

    def close(self) -> None:
        self._writer.close()


class WandbWriter:
    def __init__(self, run_dir: Path, project: str, config: dict[str, Any]):
        try:
            import wandb  # optional: pip install wandb
        except ImportError as err:
            raise ValueError("logging.wandb=true needs the 'wandb' package: pip install wandb") from err
        self._wandb = wandb
        self._run = wandb.init(project=project, dir=str(run_dir), config=config, name=Path(run_dir).name, resume="allow")

    def scalars(self, step: int, values: dict[str, float]) -> None:
        self._run.log(dict(values), step=step)

    def image(self, step: int, name: str, image: Tensor) -> None:
        array = (image.clamp(0, 1) * 255).round().byte().permute(1, 2, 0).cpu().numpy()
        self._run.log({name: self._wandb.Image(array)}, step=step)

    def close(self) -> None:
        self._run.finish()


class MultiWriter:
    """Fans calls out to several writers."""

    def __init__(self, writers: list[Writer]):
        self.writers = writers

    def scalars(self, step: int, values: dict[str, float]) -> None:
        for w in self.writers:
            w.scalars(step, values)

    def image(self, step: int, name: str, image: Tensor) -> None:
        for w in self.writers:
            w.image(step, name, image)

    def close(self) -> None:
        for w in self.writers:
            w.close()


def build_writer(run_dir: Path, tensorboard: bool, wandb: bool, project: str, config: dict[str, Any]) -> MultiWriter:
    """JSONL always; TensorBoard and W&B only when chosen (imported only then)."""
    writers: list[Writer] = [JsonlWriter(run_dir)]
    if tensorboard:
        writers.append(TensorBoardWriter(run_dir))
    if wandb:
        writers.append(WandbWriter(run_dir, project, config))
    return MultiWriter(writers)


def read_metrics(run_dir: str | Path) -> list[dict[str, Any]]:
    """All records of ``run_dir/metrics.jsonl`` (skipping a torn last line after a crash)."""
    path = Path(run_dir) / METRICS
    records = []
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
    return records


def _plain(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.item()
    return value
