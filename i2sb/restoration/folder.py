"""``i2sb-sample``: restore every image of a folder with a :class:`~i2sb.restoration.restorer.Restorer`.

Outputs keep the input's relative path and name with the format's extension, ``.png`` by default (``NAME_s0.png``,
``NAME_s1.png``, ... with ``n_samples > 1``) and are written atomically; files already there are left as they are
(their images skipped and counted) unless ``overwrite=true`` (:mod:`.outputs`). The output folder is checked
writable before the model is loaded. Photos over a few megapixels get an estimate before work and a bar over
their tiles and steps (:mod:`.progress`). Images of equal size are
batched; every image draws its noise from its own generator, seeded with (``seed``, its relative path, the
sample index), so it is restored to the same bits alone, in a folder or with any ``batch_size`` (and through
``i2sb.load(...).restore`` with :func:`i2sb.utils.seeds.image_generator`). A file that cannot be read, a
missing mask or a failed batch is reported in one line and the run goes on; the exit status is 1 if anything
failed.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from tqdm.auto import tqdm

from .. import degrade
from ..baselines.ddnm import DDNMOptions
from ..config import ConfigError, SampleConfig, to_sample_config
from ..core.bridge import space_indices
from ..core.trajectory import Trajectory
from ..utils.images import IMAGE_EXTENSIONS, Listing, read_header, read_metadata, require_listing, save_image
from ..utils.seeds import image_generator
from .inputs import lift_inputs, read_input, read_mask
from .loading import load, load_ddnm
from .outputs import TRAJECTORY_WRITERS, check_writable, decision_line, encoder_options, existing_outputs, suffix
from .progress import Estimates, evaluation_bar
from .restorer import OptionError, Restorer, SamplingOptions

PROG = "i2sb-sample"


@dataclass
class Item:
    """One input image: its file, path relative to the input root, size (H, W), output files (one per sample)
    and the samples to write (those whose files are not there yet, or all with ``overwrite``)."""

    source: Path
    rel: Path
    size: tuple[int, int]
    outputs: list[Path]
    todo: list[int] = field(default_factory=list)


@dataclass
class Report:
    """Counts and one-line failure messages of a run."""

    restored: int = 0
    skipped: int = 0
    files: int = 0
    failures: list[str] = field(default_factory=list)
    write: Callable[[str], None] = print
    alpha: list[Path] = field(default_factory=list)  # inputs (relative paths) whose alpha channel is dropped

    def fail(self, message: str) -> None:
        self.failures.append(message)
        self.write(f"{PROG}: {message}")

    def note(self, message: str | None) -> None:
        if message:
            self.write(f"{PROG}: note: {message}")


# ---------------------------------------------------------------------------- paths
def sample_names(rel: Path, n_samples: int, suffix: str) -> list[Path]:
    """``a/b.jpg`` -> ``[a/b.png]``, or ``[a/b_s0.png, a/b_s1.png, ...]`` with several samples."""
    if n_samples == 1:
        return [rel.with_suffix(suffix)]
    return [rel.with_name(f"{rel.stem}_s{k}{suffix}") for k in range(n_samples)]


def check_folders(cfg: SampleConfig) -> tuple[Path, Path, Path | None]:
    """``(input_root, output, mask_dir)``. The output may not be the input's folder or inside it: for a folder
    input the folder itself, for a single file the folder holding it (so no input, nor any other file there,
    can be overwritten)."""
    source, output = Path(cfg.input), Path(cfg.output)
    if not source.exists():
        raise FileNotFoundError(f"input={source}: no such file or directory")
    root = source if source.is_dir() else source.parent
    if output.exists() and not output.is_dir():
        raise ValueError(f"output={output} exists and is not a folder")
    inp, out = root.resolve(), output.resolve()
    if out == inp or inp in out.parents:
        where = f"input={source}" if source.is_dir() else f"the folder of input={source}"
        raise ValueError(f"output={output} is inside {where}: restored images would mix with (or overwrite) the "
                         f"inputs; choose a folder outside it")
    mask = Path(cfg.mask) if cfg.mask is not None else None
    if mask is not None and not mask.is_dir():
        raise FileNotFoundError(f"mask={mask}: mask folder not found")
    check_writable(output)
    if cfg.save_traj:
        check_writable(traj_folder(cfg, output), "traj_dir")
    return root, output, mask


def traj_folder(cfg: SampleConfig, output: Path) -> Path:
    """Where trajectories go: ``traj_dir``, or ``<output>_traj`` beside the output folder."""
    return Path(cfg.traj_dir) if cfg.traj_dir else output.parent / f"{output.name}_traj"


def find_mask(mask_dir: Path, rel: Path) -> Path:
    """The mask of input ``rel``: same relative path and stem, any image extension (the input's first)."""
    extensions = [rel.suffix.lower()] + sorted(IMAGE_EXTENSIONS - {rel.suffix.lower()})
    for ext in extensions:
        for candidate in (mask_dir / rel.with_suffix(ext), mask_dir / rel.with_suffix(ext.upper())):
            if candidate.is_file():
                return candidate
    raise FileNotFoundError(f"{rel}: mask missing: expected {mask_dir / rel.with_suffix('.png')} "
                            f"(or another image extension)")


# ---------------------------------------------------------------------------- planning
def scan(paths: list[Path], root: Path, output: Path, cfg: SampleConfig, report: Report) -> list[Item]:
    """Read image sizes from the headers; report unreadable files and output-name collisions; note alpha."""
    items, owners = [], {}
    for path in paths:
        rel = path.relative_to(root)
        outputs = [output / name for name in sample_names(rel, cfg.n_samples, suffix(cfg.format))]
        clash = next((owners[o] for o in outputs if o in owners), None)
        if clash is not None:
            report.fail(f"{path}: its output {outputs[0]} would overwrite the restoration of {clash}; rename one")
            continue
        if any(o.resolve() == path.resolve() for o in outputs):
            report.fail(f"{path}: the output would overwrite this input; choose another output folder")
            continue
        try:
            header = read_header(path, cfg.max_pixels)
        except ValueError as err:
            report.fail(str(err))
            continue
        if header.alpha:
            report.alpha.append(rel)
        owners.update({o: path for o in outputs})
        items.append(Item(path, rel, header.size, outputs, list(range(cfg.n_samples))))
    return items


def alpha_note(alpha: list[Path]) -> str | None:
    """One line for the inputs whose transparency is dropped (the models restore RGB)."""
    if not alpha:
        return None
    names = ", ".join(p.as_posix() for p in alpha[:3]) + (", ..." if len(alpha) > 3 else "")
    return (f"{len(alpha)} image(s) with an alpha channel (transparency): restored and written as RGB, the "
            f"transparency dropped ({names})")


def keep_existing(job: Job, items: list[Item], output: Path, report: Report) -> list[Item]:
    """Leave the files already at the outputs (and trajectories) alone unless ``overwrite``: their samples are not
    written, images with nothing left to write are skipped; the decision is one line."""
    cfg = job.cfg
    why = "overwrite=true" if cfg.overwrite else "skip_existing=false" if cfg.skip_existing is False else None
    overwrite = why is not None
    existing, todo_items = [], []
    for item in items:
        found = {k: existing_outputs(job.sample_files(item, k)) for k in range(cfg.n_samples)}
        existing += [p for files in found.values() for p in files]
        if not overwrite:
            item.todo = [k for k in range(cfg.n_samples) if not found[k]]
        if item.todo:
            todo_items.append(item)
    report.skipped = len(items) - len(todo_items)
    report.note(decision_line(output, existing, report.skipped, overwrite, why))
    return todo_items


def batches(items: list[Item], batch_size: int) -> Iterator[list[Item]]:
    """Items grouped by size (in order of first appearance), in chunks of ``batch_size``."""
    groups: dict[tuple[int, int], list[Item]] = {}
    for item in items:
        groups.setdefault(item.size, []).append(item)
    for group in groups.values():
        for start in range(0, len(group), batch_size):
            yield group[start:start + batch_size]


# ---------------------------------------------------------------------------- trajectories
def log_steps(restorer: Restorer, options: SamplingOptions, frames: int) -> list[int]:
    """The authors' logged steps: at most ``frames`` entries spread over the sampler's steps, 0 included."""
    steps = options.steps
    count = len(steps) - 1
    return [steps[i] for i in space_indices(count, min(count, frames))]


# ---------------------------------------------------------------------------- the run
@dataclass
class Job:
    """A validated ``i2sb-sample`` run."""

    cfg: SampleConfig
    restorer: Restorer
    options: SamplingOptions
    mask_dir: Path | None
    traj_dir: Path | None
    upscale: int  # inputs are measurements this many times smaller per side than x1 (SR: 4), else 1

    def traj_file(self, item: Item, sample: int) -> Path | None:
        if self.traj_dir is None:
            return None
        return self.traj_dir / sample_names(item.rel, self.cfg.n_samples, "." + self.cfg.traj_format)[sample]

    def sample_files(self, item: Item, sample: int) -> list[Path]:
        """The files sample ``sample`` of ``item`` writes: the restoration, and its trajectory if saved."""
        traj = self.traj_file(item, sample)
        return [item.outputs[sample]] + ([traj] if traj is not None else [])

    def generators(self, items: list[Item], sample: int) -> list[torch.Generator]:
        """One generator per image, from (seed, its relative path, ``sample``): batch-independent draws."""
        device = self.restorer.device
        return [image_generator(self.cfg.seed, item.rel.as_posix(), sample, device) for item in items]


def _load_inputs(job: Job, batch: list[Item], report: Report) -> tuple[list[Item], Tensor | None, Tensor | None]:
    good, images, masks = [], [], []
    for item in batch:
        try:
            image = read_input(item.source, item.size, job.cfg.max_pixels)
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


def _metadata(job: Job, items: list[Item], size: tuple[int, int]) -> list[Any]:
    """The inputs' EXIF / ICC profile for their outputs of ``size`` with ``keep_exif``, else nothing."""
    return [read_metadata(item.source, size) if job.cfg.keep_exif else None for item in items]


def restore_batch(job: Job, batch: list[Item], report: Report, estimates: Estimates) -> None:
    """Restore one batch of equal-size images for the samples its items still need, and write the results."""
    good, x1, mask = _load_inputs(job, batch, report)
    if not good:
        return
    if job.upscale > 1:  # a low-resolution photo -> x1 as training made it
        x1 = lift_inputs(job.restorer, x1)
    size = (x1.shape[-2], x1.shape[-1])
    for item in good:
        estimates.announce(item.rel.as_posix(), size)
    tiles, metadata = job.restorer.tile_count(*size, job.options), _metadata(job, good, size)
    desc = good[0].rel.name + (f" +{len(good) - 1}" if len(good) > 1 else "")
    failed: set[int] = set()
    for k in sorted({k for item in good for k in item.todo}):
        traj = None
        if job.traj_dir is not None:
            traj = Trajectory(log_steps(job.restorer, job.options, job.cfg.traj_frames))
        try:
            with evaluation_bar(job.restorer, tiles, job.options.nfe, len(good), desc, job.cfg.progress):
                out = job.restorer.restore(x1, mask=mask, generator=job.generators(good, k), callback=traj,
                                           options=job.options)
        except (RuntimeError, ValueError) as err:  # out of memory, values far outside [-1, 1]: these images fail
            reason = " ".join(str(err).split())[:200]
            for item in good:
                report.fail(f"{item.source}: restoration failed: {reason}")
            return
        write_sample(job, good, k, out, traj, metadata, failed, report)
    report.restored += len(good) - len(failed)


def write_sample(job: Job, good: list[Item], k: int, out: Tensor, traj: Trajectory | None, metadata: list[Any],
                 failed: set[int], report: Report) -> None:
    """Write sample ``k`` of the batch ``out`` (B, 3, H, W) (and its trajectories) for the items that want it; an
    item whose file cannot be written joins ``failed``."""
    xs, preds = traj.stacked() if traj is not None else (None, None)
    encoding = encoder_options(job.cfg.format, job.cfg.quality)
    for i, item in enumerate(good):
        if i in failed or k not in item.todo:
            continue
        try:
            save_image(out[i], item.outputs[k], metadata=metadata[i], **encoding)
            if traj is not None:
                TRAJECTORY_WRITERS[job.cfg.traj_format](xs[i], preds[i], job.traj_file(item, k))
        except (OSError, ValueError) as err:
            failed.add(i)
            report.fail(f"{item.outputs[k]}: cannot write: {' '.join(str(err).split())}")
            continue
        report.files += 1


def load_restorer(cfg: SampleConfig) -> Restorer:
    """``ckpt``'s restorer (I2SB; Palette; DDNM for a ddpm run), or DDNM with ``prior`` for ``baseline=ddnm``;
    the ``ddnm.*`` settings go to DDNM either way."""
    ddnm = DDNMOptions(sigma_y=cfg.ddnm.sigma_y, travel_length=cfg.ddnm.travel_length,
                       travel_repeat=cfg.ddnm.travel_repeat)
    if cfg.baseline == "ddnm":
        if cfg.task is not None and cfg.task.degradation is None:
            raise ConfigError(f"config key 'task': task={cfg.task.name} has no degradation; DDNM needs a linear one")
        return load_ddnm(cfg.prior, cfg.task, cfg.device, cfg.use_ema, eta=ddnm.eta, sigma_y=ddnm.sigma_y,
                         travel_length=ddnm.travel_length, travel_repeat=ddnm.travel_repeat, **cfg.model.given())
    return load(cfg.ckpt, cfg.device, cfg.use_ema, ddnm, **cfg.model.given())


def sampling_options(cfg: SampleConfig, restorer: Restorer) -> SamplingOptions:
    """The config's sampling keys resolved and checked against the model, once; errors name the key. Without
    ``nfe``, the model's choice for ``prefer`` (:meth:`Restorer.choose_nfe`), said in one line."""
    nfe = cfg.nfe
    if nfe is None:
        nfe, why = restorer.choose_nfe(cfg.prefer)
        print(f"{PROG}: nfe={nfe}: {why}", flush=True)
    try:
        return restorer.options(nfe=nfe, sampler=cfg.sampler, eta=cfg.eta, ot_ode=cfg.ot_ode,
                                clip_denoise=cfg.clip_denoise, precision=cfg.precision, tile=cfg.tile,
                                tile_overlap=cfg.tile_overlap)
    except OptionError as err:
        raise ConfigError(f"config key '{err.key}': {err.reason}") from None


def prepare(cfg: SampleConfig) -> tuple[Job, Listing, Path, Path]:
    """Every check that needs no image decoding, in order of cost (the output folder's before the model is
    loaded); raises one-line errors."""
    root, output, mask_dir = check_folders(cfg)
    listing = require_listing(cfg.input, arrays=True)
    restorer = load_restorer(cfg)
    options = sampling_options(cfg, restorer)
    if restorer.needs_mask and mask_dir is None:
        raise ValueError(f"the checkpoint's task '{restorer.task.degradation}' fills holes: give mask=DIR "
                         f"(masks with the inputs' names, white = hole)")
    traj_dir = traj_folder(cfg, output) if cfg.save_traj else None
    return Job(cfg, restorer, options, mask_dir, traj_dir, upscale_factor(cfg, restorer)), listing, root, output


def upscale_factor(cfg: SampleConfig, restorer: Restorer) -> int:
    """How much larger per side x1 is than the input files: the SR task's 4 unless ``upscale=false``."""
    task = restorer.task.degradation
    if cfg.upscale is False or task not in degrade.TASKS:
        return 1
    scale = degrade.measurement_scale(task)
    if cfg.upscale and scale == 1:
        raise ValueError(f"config key 'upscale': the checkpoint's task '{task}' is not super-resolution; "
                         f"leave upscale=null")
    return scale


def restore_folder(cfg: Any) -> int:
    """Run ``i2sb-sample`` with a composed config; returns the exit status (0 all good, 1 some failed)."""
    cfg = to_sample_config(cfg)
    job, listing, root, output = prepare(cfg)
    report = Report(write=lambda msg: tqdm.write(msg, file=sys.stderr))
    report.note(listing.note())
    items = scan(listing.images, root, output, cfg, report)
    report.note(alpha_note(report.alpha))
    items = keep_existing(job, items, output, report)
    estimates = Estimates(job.restorer, job.options, cfg.n_samples, lambda msg: report.write(f"{PROG}: {msg}"))
    start = time.perf_counter()
    with tqdm(total=len(items), desc=PROG, unit="img", disable=not cfg.progress, dynamic_ncols=True) as bar:
        for batch in batches(items, cfg.batch_size):
            restore_batch(job, batch, report, estimates)
            bar.update(len(batch))
    seconds = time.perf_counter() - start
    per_image = seconds / max(report.restored, 1)
    print(f"{PROG}: restored {report.restored} image(s) ({report.files} file(s)) into {output}; "
          f"skipped {report.skipped}; failed {len(report.failures)}; {per_image:.3f} s/image "
          f"(nfe={job.options.nfe}, device={job.restorer.device})")
    return 1 if report.failures else 0
