"""``i2sb-sample``: restore every image of a folder with a :class:`~i2sb.restore.Restorer`.

Outputs keep the input's relative path and name with the extension ``.png`` (``NAME_s0.png``,
``NAME_s1.png``, ... with ``n_samples > 1``) and are written atomically. Images of equal size are
batched. A file that cannot be read, a missing mask or a failed batch is reported in one line and the
run goes on; the exit status is 1 if anything failed.
"""

from __future__ import annotations

import os
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from torch import Tensor

from .baselines import DDNMRestorer, load_ddnm
from .bridge import Trajectory, space_indices
from .data.image_io import IMAGE_EXTENSIONS, load_image, require_images, save_image, to_uint8
from .restore import Restorer, load
from .samplers import sampler_steps
from .sample_config import SampleConfig, to_sample_config

PROG = "i2sb-sample"


@dataclass
class Item:
    """One input image: its file, path relative to the input root, size (H, W) and output files."""

    source: Path
    rel: Path
    size: tuple[int, int]
    outputs: list[Path]


@dataclass
class Report:
    """Counts and one-line failure messages of a run."""

    restored: int = 0
    skipped: int = 0
    files: int = 0
    failures: list[str] = field(default_factory=list)
    write: Callable[[str], None] = print

    def fail(self, message: str) -> None:
        self.failures.append(message)
        self.write(f"{PROG}: {message}")


# ---------------------------------------------------------------------------- paths
def sample_names(rel: Path, n_samples: int, suffix: str) -> list[Path]:
    """``a/b.jpg`` -> ``[a/b.png]``, or ``[a/b_s0.png, a/b_s1.png, ...]`` with several samples."""
    if n_samples == 1:
        return [rel.with_suffix(suffix)]
    return [rel.with_name(f"{rel.stem}_s{k}{suffix}") for k in range(n_samples)]


def check_folders(cfg: SampleConfig) -> tuple[Path, Path, Path | None]:
    """``(input_root, output, mask_dir)``; the output may not be (inside) the input folder."""
    source, output = Path(cfg.input), Path(cfg.output)
    if not source.exists():
        raise FileNotFoundError(f"input={source}: no such file or directory")
    root = source if source.is_dir() else source.parent
    if output.exists() and not output.is_dir():
        raise ValueError(f"output={output} exists and is not a folder")
    if source.is_dir():
        inp, out = source.resolve(), output.resolve()
        if out == inp or inp in out.parents:
            raise ValueError(f"output={output} is inside input={source}: restored images would mix with the "
                             f"inputs; choose a folder outside it")
    mask = Path(cfg.mask) if cfg.mask is not None else None
    if mask is not None and not mask.is_dir():
        raise FileNotFoundError(f"mask={mask}: mask folder not found")
    return root, output, mask


def find_mask(mask_dir: Path, rel: Path) -> Path:
    """The mask of input ``rel``: same relative path and stem, any image extension (the input's first)."""
    extensions = [rel.suffix.lower()] + sorted(IMAGE_EXTENSIONS - {rel.suffix.lower()})
    for ext in extensions:
        for candidate in (mask_dir / rel.with_suffix(ext), mask_dir / rel.with_suffix(ext.upper())):
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(f"{rel}: mask missing: expected {mask_dir / rel.with_suffix('.png')} "
                            f"(or another image extension)")


def read_mask(path: Path, size: tuple[int, int]) -> Tensor:
    """Mask file -> (1, H, W) float {0, 1}; white (mean grey >= 0.5) = hole."""
    grey = (load_image(path).mean(0, keepdim=True) + 1.0) / 2.0
    if tuple(grey.shape[-2:]) != size:
        raise ValueError(f"{path}: mask is {grey.shape[-1]}x{grey.shape[-2]} but its image is {size[1]}x{size[0]}")
    return (grey >= 0.5).float()


# ---------------------------------------------------------------------------- planning
def scan(paths: list[Path], root: Path, output: Path, cfg: SampleConfig, report: Report) -> list[Item]:
    """Read image sizes from the headers; report unreadable files and output-name collisions."""
    items, owners = [], {}
    for path in paths:
        rel = path.relative_to(root)
        outputs = [output / name for name in sample_names(rel, cfg.n_samples, ".png")]
        clash = next((owners[o] for o in outputs if o in owners), None)
        if clash is not None:
            report.fail(f"{path}: its output {outputs[0]} would overwrite the restoration of {clash}; rename one")
            continue
        if any(o.resolve() == path.resolve() for o in outputs):
            report.fail(f"{path}: the output would overwrite this input; choose another output folder")
            continue
        try:
            with Image.open(path) as image:
                width, height = image.size
        except Exception as err:  # Pillow raises many types for broken files
            report.fail(f"{path}: cannot read image: {' '.join(str(err).split()) or type(err).__name__}")
            continue
        owners.update({o: path for o in outputs})
        items.append(Item(path, rel, (height, width), outputs))
    return items


def batches(items: list[Item], batch_size: int) -> Iterator[list[Item]]:
    """Items grouped by size (in order of first appearance), in chunks of ``batch_size``."""
    groups: dict[tuple[int, int], list[Item]] = {}
    for item in items:
        groups.setdefault(item.size, []).append(item)
    for group in groups.values():
        for start in range(0, len(group), batch_size):
            yield group[start:start + batch_size]


# ---------------------------------------------------------------------------- trajectories
def _write_atomic(path: Path, write: Callable[[Any], None]) -> None:
    """Call ``write(stream)`` on a temporary file beside ``path``, then rename it over ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    try:
        with open(tmp, "xb") as stream:
            write(stream)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_gif(xs: Tensor, pred_x0s: Tensor, path: Path) -> None:
    """Animation of T frames, each ``[state | x0 prediction]``; ``xs``, ``pred_x0s``: (T, 3, H, W).

    (The GIF encoder merges a frame identical to the previous one into it.)
    """
    frames = [Image.fromarray(to_uint8(torch.cat([x, p], dim=-1))) for x, p in zip(xs, pred_x0s)]
    _write_atomic(path, lambda f: frames[0].save(f, format="GIF", save_all=True, append_images=frames[1:],
                                                 duration=250, loop=0))


def save_strip(xs: Tensor, pred_x0s: Tensor, path: Path) -> None:
    """PNG strip (2H, T*W): states on top, x0 predictions below; ``xs``, ``pred_x0s``: (T, 3, H, W)."""
    rows = [torch.cat(list(xs), dim=-1), torch.cat(list(pred_x0s), dim=-1)]
    save_image(torch.cat(rows, dim=-2), path)


TRAJECTORY_WRITERS: dict[str, Callable[[Tensor, Tensor, Path], None]] = {"gif": save_gif, "png": save_strip}


def log_steps(restorer: Restorer, nfe: int, frames: int, sampler: str = "ddpm") -> list[int]:
    """The authors' logged steps: at most ``frames`` entries spread over the sampler's steps, 0 included."""
    steps = sampler_steps(restorer.bridge, sampler, nfe)
    count = len(steps) - 1
    return [steps[i] for i in space_indices(count, min(count, frames))]


# ---------------------------------------------------------------------------- the run
@dataclass
class Job:
    """A validated ``i2sb-sample`` run."""

    cfg: SampleConfig
    restorer: Restorer
    nfe: int
    mask_dir: Path | None
    traj_dir: Path | None
    generator: torch.Generator


def _load_inputs(job: Job, batch: list[Item], report: Report) -> tuple[list[Item], Tensor | None, Tensor | None]:
    good, images, masks = [], [], []
    for item in batch:
        try:
            image = load_image(item.source)
            if job.mask_dir is not None:
                masks.append(read_mask(find_mask(job.mask_dir, item.rel), item.size))
        except (ValueError, OSError) as err:
            report.fail(str(err))
            continue
        good.append(item)
        images.append(image)
    if not good:
        return good, None, None
    return good, torch.stack(images), torch.stack(masks) if masks else None


def restore_batch(job: Job, batch: list[Item], report: Report) -> None:
    """Restore one batch of equal-size images ``n_samples`` times and write the results."""
    cfg = job.cfg
    good, x1, mask = _load_inputs(job, batch, report)
    if not good:
        return
    failed: set[int] = set()
    for k in range(cfg.n_samples):
        traj = None
        if job.traj_dir is not None:
            traj = Trajectory(log_steps(job.restorer, job.nfe, cfg.traj_frames, cfg.sampler))
        try:
            out = job.restorer.restore(x1, nfe=job.nfe, ot_ode=cfg.ot_ode, mask=mask, clip_denoise=cfg.clip_denoise,
                                       generator=job.generator, precision=cfg.precision, tile=cfg.tile,
                                       tile_overlap=cfg.tile_overlap, callback=traj, sampler=cfg.sampler, eta=cfg.eta)
        except RuntimeError as err:  # e.g. out of memory: these images fail, the run goes on
            reason = " ".join(str(err).split())[:200]
            for item in good:
                report.fail(f"{item.source}: restoration failed: {reason}")
            return
        xs, preds = traj.stacked() if traj is not None else (None, None)
        for i, item in enumerate(good):
            if i in failed:
                continue
            try:
                save_image(out[i], item.outputs[k])
                if traj is not None:
                    name = sample_names(item.rel, cfg.n_samples, "." + cfg.traj_format)[k]
                    TRAJECTORY_WRITERS[cfg.traj_format](xs[i], preds[i], job.traj_dir / name)
            except (OSError, ValueError) as err:
                failed.add(i)
                report.fail(f"{item.outputs[k]}: cannot write: {' '.join(str(err).split())}")
                continue
            report.files += 1
    report.restored += len(good) - len(failed)


def load_restorer(cfg: SampleConfig) -> Restorer:
    """``ckpt``'s restorer (I2SB; Palette; DDNM for a ddpm run), or DDNM with ``prior`` for ``method=ddnm``;
    the ``ddnm.*`` settings go to DDNM either way."""
    ddnm = asdict(cfg.ddnm)
    if cfg.method == "ddnm":
        task, params = (cfg.task.degradation, cfg.task.params) if cfg.task is not None else (None, None)
        if cfg.task is not None and task is None:
            raise ValueError(f"config key 'task': task={cfg.task.name} has no degradation; DDNM needs a linear one")
        return load_ddnm(cfg.prior, task, cfg.device, cfg.use_ema, params, **ddnm, **cfg.model.given())
    restorer = load(cfg.ckpt, cfg.device, cfg.use_ema, **cfg.model.given())
    if isinstance(restorer, DDNMRestorer):
        restorer.set_options(**ddnm)
    return restorer


def prepare(cfg: SampleConfig) -> tuple[Job, list[Path], Path, Path]:
    """Every check that needs no image decoding, in order of cost; raises one-line errors."""
    root, output, mask_dir = check_folders(cfg)
    paths = require_images(cfg.input)
    restorer = load_restorer(cfg)
    n_steps = restorer.bridge.n_steps
    nfe = restorer.default_nfe if cfg.nfe is None else cfg.nfe
    if not 1 <= nfe <= n_steps - 1:
        raise ValueError(f"config key 'nfe': must be in 1..{n_steps - 1} for this checkpoint (n_steps={n_steps}), "
                         f"got {nfe}")
    restorer.tiling(cfg.tile, cfg.tile_overlap)  # raises on a bad tile size
    for key, eta in (("sampler", None), ("eta", cfg.eta)):
        try:
            restorer.validate_sampler(cfg.sampler, eta, cfg.ot_ode)
        except ValueError as err:
            raise ValueError(f"config key '{key}': {err}") from None
    if restorer.needs_mask and mask_dir is None:
        raise ValueError(f"the checkpoint's task '{restorer.task['degradation']}' fills holes: give mask=DIR "
                         f"(masks with the inputs' names, white = hole)")
    traj_dir = None
    if cfg.save_traj:
        traj_dir = Path(cfg.traj_dir) if cfg.traj_dir else output.parent / f"{output.name}_traj"
    generator = torch.Generator(device=restorer.device).manual_seed(cfg.seed)
    return Job(cfg, restorer, nfe, mask_dir, traj_dir, generator), paths, root, output


def restore_folder(cfg: Any) -> int:
    """Run ``i2sb-sample`` with a composed config; returns the exit status (0 all good, 1 some failed)."""
    from tqdm.auto import tqdm

    cfg = to_sample_config(cfg)
    job, paths, root, output = prepare(cfg)
    report = Report(write=lambda msg: tqdm.write(msg, file=sys.stderr))
    items = scan(paths, root, output, cfg, report)
    if cfg.skip_existing:
        todo = [it for it in items if not all(o.is_file() for o in it.outputs)]
        report.skipped, items = len(items) - len(todo), todo
    start = time.perf_counter()
    with tqdm(total=len(items), desc=PROG, unit="img", disable=not cfg.progress, dynamic_ncols=True) as bar:
        for batch in batches(items, cfg.batch_size):
            restore_batch(job, batch, report)
            bar.update(len(batch))
    seconds = time.perf_counter() - start
    per_image = seconds / max(report.restored, 1)
    print(f"{PROG}: restored {report.restored} image(s) ({report.files} file(s)) into {output}; "
          f"skipped {report.skipped}; failed {len(report.failures)}; {per_image:.3f} s/image "
          f"(nfe={job.nfe}, device={job.restorer.device})")
    return 1 if report.failures else 0
