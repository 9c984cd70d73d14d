"""Evaluate a folder of restored images: PSNR, SSIM, FID, ResNet-50 accuracy (what ``i2sb-eval`` runs).

Pairs are matched by relative path without extension (``restored/a/x.png`` <-> ``reference/a/x.jpg``).
Images are read with PIL and converted to 8-bit RGB, as clean-fid reads them. PSNR and SSIM are computed
per pair on the [0, 255] RGB values (see :mod:`i2sb.metrics`) and averaged over the pairs. FID compares
every readable restored image with the FID reference: ``fid_ref`` (an image folder, or an ``.npz`` with
``mu``/``sigma``) or else the reference folder. Accuracy is the classifier's top-1 accuracy on the
restored images that have a label.
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..utils.images import IMAGE_EXTENSIONS, read_uint8, require_images
from . import metrics

FeatureExtractor = Callable[[Tensor], Tensor]  # (B, 3, H, W) in [0, 255] -> (B, D)
Classifier = Callable[[Tensor], Tensor]  # (B, 3, H, W) in [-1, 1] -> (B, K) logits


class EvaluationWarning(UserWarning):
    """A problem that skips a file (unreadable, unpaired) but not the evaluation."""


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------


def image_key(relative: str | Path) -> str:
    """Pairing key of an image: its relative path with '/' separators, without an image extension."""
    path = Path(relative)
    return (path.with_suffix("") if path.suffix.lower() in IMAGE_EXTENSIONS else path).as_posix()


def list_images(folder: str | Path) -> dict[str, Path]:
    """Images under ``folder`` (recursively, hidden files skipped) as ``{image_key: path}``, sorted by key."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    found: dict[str, Path] = {}
    for path in require_images(folder):
        key = image_key(path.relative_to(folder))
        if key in found:
            raise ValueError(f"two images share the name {key!r} in {folder}: {found[key].name}, {path.name}")
        found[key] = path
    return dict(sorted(found.items()))


def read_image(path: Path) -> np.ndarray | None:
    """8-bit RGB ``(H, W, 3)`` uint8, or ``None`` with an :class:`EvaluationWarning` if unreadable."""
    try:
        return read_uint8(path)
    except (OSError, ValueError) as err:
        reason = " ".join(str(err).split()).removeprefix(f"{path}: ")
        warnings.warn(f"skipping unreadable image {path}: {reason}", EvaluationWarning, stacklevel=2)
        return None


_LABEL_LINE = re.compile(r"(.+?)[\s,;]+(-?\d+)")


def read_labels(path: str | Path) -> dict[str, int]:
    """Class indices from a text/CSV file of ``NAME,INDEX`` (or ``NAME INDEX``) lines, ``{image_key: INDEX}``.

    ``NAME`` is an image path, relative or absolute, with or without extension. Lines starting with '#'
    and a header line are skipped. The authors' pair of files (``dataset/val_..._fn.txt`` and
    ``..._label.txt``) becomes one with ``paste -d, FN.txt LABEL.txt > labels.csv``.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"labels file not found: {path}")
    lines = [(n, s.strip()) for n, s in enumerate(path.read_text().splitlines(), 1)]
    lines = [(n, s) for n, s in lines if s and not s.startswith("#")]
    labels: dict[str, int] = {}
    for i, (lineno, line) in enumerate(lines):
        match = _LABEL_LINE.fullmatch(line)
        if match is None and i == 0:
            continue  # header
        if match is None:
            raise ValueError(f"{path}:{lineno}: expected 'NAME,CLASS_INDEX', got {line!r}")
        key, label = image_key(match.group(1).strip()), int(match.group(2))
        if labels.get(key, label) != label:
            raise ValueError(f"{path}:{lineno}: {key!r} has two labels, {labels[key]} and {label}")
        labels[key] = label
    if not labels:
        raise ValueError(f"no 'NAME,CLASS_INDEX' lines in labels file {path}")
    return labels


def label_lookup(labels: dict[str, int]) -> Callable[[str], int | None]:
    """``image_key -> label``: by relative path, else by file name when that name is unambiguous."""
    by_name: dict[str, int | None] = {}
    for key, label in labels.items():
        name = key.rsplit("/", 1)[-1]
        by_name[name] = label if by_name.get(name, label) == label else None

    def lookup(key: str) -> int | None:
        return labels[key] if key in labels else by_name.get(key.rsplit("/", 1)[-1])

    return lookup


# ---------------------------------------------------------------------------------------------
# One pass over a folder
# ---------------------------------------------------------------------------------------------


@dataclass
class Item:
    """One readable image, its reference (if paired) and its label (if any)."""

    key: str
    image: np.ndarray
    reference: np.ndarray | None = None
    label: int | None = None


@dataclass
class Scan:
    """What a pass over a folder produced: table rows, features ``B x (B, D)`` and skipped files."""

    rows: list[dict] = field(default_factory=list)
    features: list[np.ndarray] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)

    def read(self, path: Path) -> np.ndarray | None:
        """:func:`read_image`, recording the files it cannot read (and not trying them twice)."""
        if str(path) in self.unreadable:
            return None
        image = read_image(path)
        if image is None:
            self.unreadable.append(str(path))
        return image

    def stacked_features(self) -> np.ndarray:
        """All features, ``(N, D)``; ``(0, 0)`` if none."""
        return np.concatenate(self.features) if self.features else np.zeros((0, 0))


def read_items(files: dict[str, Path], scan: Scan, references=None, lookup=None) -> Iterator[Item]:
    """Readable images of ``files`` with their readable ``references`` counterpart and label, if any."""
    for key, path in files.items():
        ref_path = references.get(key) if references is not None else None
        image = scan.read(path)
        if image is None:
            continue
        ref = scan.read(ref_path) if ref_path is not None else None
        if ref is not None and ref.shape != image.shape:
            (h, w), (rh, rw) = image.shape[:2], ref.shape[:2]
            raise ValueError(f"restored image {path} is {w}x{h} but reference {ref_path} is {rw}x{rh}")
        yield Item(key, image, ref, lookup(key) if lookup is not None else None)


def batches_by_size(items: Iterable[Item], batch_size: int) -> Iterator[list[Item]]:
    """Consecutive items of equal image size, at most ``batch_size`` per list."""
    batch: list[Item] = []
    for item in items:
        if batch and (len(batch) == batch_size or batch[0].image.shape != item.image.shape):
            yield batch
            batch = []
        batch.append(item)
    if batch:
        yield batch


def to_tensor(images: list[np.ndarray], device: torch.device, dtype: torch.dtype = torch.float32) -> Tensor:
    """``B x (H, W, 3)`` uint8 -> ``(B, 3, H, W)`` in [0, 255]."""
    return torch.from_numpy(np.stack(images)).to(device=device, dtype=dtype).permute(0, 3, 1, 2)


def _pair_scores(paired: list[Item], device: torch.device) -> dict[str, tuple[float, float]]:
    """``{key: (PSNR, SSIM)}`` on [0, 255] values; float64 where the device has it (skimage agreement)."""
    dtype = torch.float32 if device.type == "mps" else torch.float64
    x = to_tensor([it.image for it in paired], device, dtype)
    y = to_tensor([it.reference for it in paired], device, dtype)
    scores = zip(metrics.psnr(x, y, 255.0).tolist(), metrics.ssim(x, y, 255.0).tolist())
    return {it.key: s for it, s in zip(paired, scores)}


@torch.no_grad()
def score_batch(batch: list[Item], scan: Scan, device: torch.device, extractor=None, classifier=None) -> None:
    """Append one row per item (PSNR/SSIM if paired, prediction if labelled) and the batch's features."""
    x = to_tensor([it.image for it in batch], device)
    rows = [{"name": it.key} for it in batch]
    with_ref = [it for it in batch if it.reference is not None]
    paired = _pair_scores(with_ref, device) if with_ref else {}
    labeled = [i for i, it in enumerate(batch) if it.label is not None] if classifier is not None else []
    preds = classifier(x[labeled] / 127.5 - 1).argmax(dim=1).tolist() if labeled else []
    for row, item in zip(rows, batch):
        if item.key in paired:
            row["psnr"], row["ssim"] = paired[item.key]
    for i, pred in zip(labeled, preds):
        rows[i].update(label=batch[i].label, pred=pred, correct=pred == batch[i].label)
    if extractor is not None:
        scan.features.append(extractor(x).detach().cpu().double().numpy())
    scan.rows.extend(rows)


def scan_folder(items: Iterable[Item], batch_size: int, device: torch.device, scan: Scan, **models) -> Scan:
    """:func:`score_batch` over ``items`` in batches of equal image size; returns ``scan``."""
    for batch in batches_by_size(items, batch_size):
        score_batch(batch, scan, device, **models)
    return scan


# ---------------------------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------------------------


def _load_or_note(spec: metrics.WeightsSpec, path, loader, device, notes: list[str], skipped: str):
    """The network from ``path`` or the default locations, or ``None`` and a note saying what to get."""
    if metrics.find_weights(spec, path) is None:
        notes.append(f"{skipped} skipped: {spec.missing_message()}")
        return None
    return loader(path, device)


def _reference_stats(source: Path, extractor, device, batch_size: int, scan: Scan):
    """``((mu, sigma) or None, N)`` of an ``.npz`` (N unknown: None) or of an image folder's features."""
    if source.is_file():
        return metrics.load_fid_stats(source), None
    items = read_items(list_images(source), scan)  # unreadable files are recorded in the main scan
    feats = scan_folder(items, batch_size, device, Scan(), extractor=extractor).stacked_features()
    return (metrics.feature_stats(feats) if len(feats) >= 2 else None), len(feats)


def _fid(scan: Scan, source: Path, extractor, device, batch_size: int, notes: list[str]) -> float | None:
    """FID of the scanned features against ``source`` (an ``.npz`` of statistics or an image folder)."""
    feats = scan.stacked_features()
    ref_stats, n_ref = _reference_stats(source, extractor, device, batch_size, scan)
    if len(feats) < 2 or ref_stats is None:
        notes.append("FID skipped: it needs at least 2 readable images on each side")
        return None
    if ref_stats[0].shape[0] != feats.shape[1]:
        raise ValueError(
            f"FID reference {source} has {ref_stats[0].shape[0]}-d statistics but the features are {feats.shape[1]}-d"
        )
    if min(len(feats), n_ref or len(feats)) < feats.shape[1]:
        notes.append(
            f"FID from fewer images than feature dimensions ({feats.shape[1]}): biased; compare only at equal N"
        )
    return metrics.fid_from_stats(*metrics.feature_stats(feats), *ref_stats)


def _count_unpaired(restored: dict[str, Path], reference: dict[str, Path]) -> int:
    unpaired = [k for k in restored if k not in reference]
    if len(unpaired) == len(restored):
        raise ValueError(
            "no restored image has a counterpart in the reference folder (same relative path, any extension)"
        )
    if unpaired:
        warnings.warn(
            f"{len(unpaired)} restored image(s) without reference, e.g. {unpaired[0]!r}",
            EvaluationWarning,
            stacklevel=3,
        )
    return len(unpaired)


def _mean(rows: list[dict], key: str) -> float | None:
    values = [r[key] for r in rows if key in r]
    return math.fsum(values) / len(values) if values else None  # an exact copy's PSNR inf propagates


def evaluate_folders(
    restored: str | Path,
    reference: str | Path | None = None,
    *,
    fid_ref: str | Path | None = None,
    labels: str | Path | None = None,
    feature_extractor: FeatureExtractor | None = None,
    classifier: Classifier | None = None,
    inception: str | Path | None = None,
    resnet: str | Path | None = None,
    fid: bool = True,
    device: str | torch.device = "cpu",
    batch_size: int = 32,
) -> dict:
    """Metrics of the images in ``restored`` (see the module docstring) as a JSON-ready dict.

    ``feature_extractor`` / ``classifier`` replace the clean-fid Inception / ResNet-50 (input conventions
    in :mod:`i2sb.metrics`); otherwise those are loaded from ``inception`` / ``resnet`` or the default
    locations (:func:`i2sb.metrics.find_weights`), or skipped with a note naming the file to get.
    """
    restored_files = list_images(restored)
    if reference is None and fid_ref is None and labels is None:
        raise ValueError("nothing to compute: give a reference folder, FID reference statistics or labels")
    device = torch.device(device)
    reference_files = list_images(reference) if reference is not None else None
    num_unpaired = _count_unpaired(restored_files, reference_files) if reference_files is not None else 0
    fid_source = next((Path(s) for s in (fid_ref, reference) if s is not None), None) if fid else None
    if fid_source is not None and not fid_source.exists():
        raise FileNotFoundError(f"FID reference not found: {fid_source}")
    lookup = label_lookup(read_labels(labels)) if labels is not None else None
    notes: list[str] = []
    if fid_source is not None and feature_extractor is None:
        feature_extractor = _load_or_note(
            metrics.INCEPTION_WEIGHTS, inception, metrics.load_inception, device, notes, "FID"
        )
    if lookup is not None and classifier is None:
        classifier = _load_or_note(metrics.RESNET50_WEIGHTS, resnet, metrics.load_resnet50, device, notes, "accuracy")

    extractor = feature_extractor if fid_source is not None else None
    scan = Scan()
    items = read_items(restored_files, scan, reference_files, lookup)
    scan_folder(
        items, batch_size, device, scan, extractor=extractor, classifier=classifier if lookup is not None else None
    )
    fid_value = _fid(scan, fid_source, extractor, device, batch_size, notes) if extractor is not None else None
    labeled = [r for r in scan.rows if "correct" in r]
    if lookup is not None and classifier is not None and not labeled:
        notes.append(f"accuracy skipped: no restored image has a label in {labels}")
    return {
        "restored": str(restored),
        "reference": None if reference is None else str(reference),
        "fid_reference": None if fid_value is None else str(fid_source),
        "num_images": len(scan.rows),
        "num_pairs": sum("psnr" in r for r in scan.rows),
        "num_unpaired": num_unpaired,
        "num_unreadable": len(scan.unreadable),
        "unreadable": scan.unreadable,
        "psnr": _mean(scan.rows, "psnr"),
        "ssim": _mean(scan.rows, "ssim"),
        "fid": fid_value,
        "accuracy": _mean(labeled, "correct"),
        "num_labeled": len(labeled),
        "notes": notes,
        "per_image": scan.rows,
    }
