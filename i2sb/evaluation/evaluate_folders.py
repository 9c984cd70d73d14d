"""Evaluate a folder of restored images: PSNR, SSIM, LPIPS, FID, ResNet-50 accuracy (what ``i2sb-eval`` runs).

Pairs are matched by relative path without extension (``restored/a/x.png`` <-> ``reference/a/x.jpg``), and
a restored ``a/x_sK.png`` (sample K of ``i2sb-sample n_samples>1``) pairs with ``reference/a/x.*`` when no
reference is named ``a/x_sK`` (:mod:`.pairing`). Images are read with PIL and converted to 8-bit RGB, as
clean-fid reads them; hidden files are skipped. PSNR and SSIM are computed per pair on the [0, 255] RGB
values (see :mod:`.metrics`), LPIPS on the same 8-bit values mapped to [-1, 1] (:mod:`.perceptual`);
they are averaged over the pairs, per sample index and per reference image (:func:`.pairing.summarize`).
SWD (:mod:`.swd`) is one number for the whole set: the paired restorations against their references.
FID compares every readable restored image with the FID reference: ``fid_ref`` (an image folder, or an
``.npz`` with ``mu``/``sigma``) or else the reference folder. Accuracy is the classifier's top-1 accuracy
on the restored images that have a label (a sample ``x_sK`` takes the label of ``x``).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from ..utils.device import resolve_device
from ..utils.images import read_uint8, require_listing
from . import metrics, pairing, perceptual, swd
from .labels import label_lookup, read_labels  # noqa: F401  (re-exported: their historical home)
from .pairing import image_key

FeatureExtractor = Callable[[Tensor], Tensor]  # (B, 3, H, W) in [0, 255] -> (B, D)
Classifier = Callable[[Tensor], Tensor]  # (B, 3, H, W) in [-1, 1] -> (B, K) logits


class EvaluationWarning(UserWarning):
    """A problem that skips a file (unreadable, unpaired) but not the evaluation."""


# ---------------------------------------------------------------------------------------------
# Files
# ---------------------------------------------------------------------------------------------


def list_images(folder: str | Path, notes: list[str] | None = None) -> dict[str, Path]:
    """Images under ``folder`` (recursively, hidden files skipped, symlinks followed once) as ``{image_key: path}``,
    sorted by key; what the scan left out (other files, symlinked duplicates) is appended to ``notes``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    listing = require_listing(folder)
    if notes is not None and listing.note():
        notes.append(f"{folder}: {listing.note()}")
    found: dict[str, Path] = {}
    for path in listing.images:
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


# ---------------------------------------------------------------------------------------------
# One pass over a folder
# ---------------------------------------------------------------------------------------------


@dataclass
class Item:
    """One readable image, its reference (if paired: image, key, sample index) and its label (if any)."""

    key: str
    image: np.ndarray
    reference: np.ndarray | None = None
    label: int | None = None
    ref_key: str | None = None
    sample: int | None = None


@dataclass
class Scan:
    """What a pass over a folder produced: table rows, features ``B x (B, D)`` and skipped files."""

    rows: list[dict] = field(default_factory=list)
    features: list[np.ndarray] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    size_mismatch: list[str] = field(default_factory=list)  # restored images whose reference has another size
    too_small_for_lpips: int = 0  # pairs smaller than the LPIPS backbone accepts
    swd_sets: swd.PairedSets | None = None  # the paired images' patches, for one SWD of the whole set

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


def read_items(files: dict[str, Path], scan: Scan, references=None, lookup=None, pairs=None) -> Iterator[Item]:
    """Readable images of ``files`` with their readable reference (``references[pairs[key][0]]``) and label."""
    for key, path in files.items():
        ref_key, sample = pairs[key] if pairs is not None and key in pairs else (None, None)
        ref_path = references[ref_key] if ref_key is not None else None
        image = scan.read(path)
        if image is None:
            continue
        ref = scan.read(ref_path) if ref_path is not None else None
        if ref is not None and ref.shape != image.shape:  # not scored against it; the others still are
            (h, w), (rh, rw) = image.shape[:2], ref.shape[:2]
            warnings.warn(f"restored image {path} is {w}x{h} but reference {ref_path} is {rw}x{rh}: pair not scored",
                          EvaluationWarning, stacklevel=2)
            scan.size_mismatch.append(str(path))
            ref = None
        label = lookup(key) if lookup is not None else None
        yield Item(key, image, ref, label, ref_key if ref is not None else None, sample)


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


def _pair_scores(paired: list[Item], device: torch.device, perceptual_metric, scan: Scan) -> list[dict]:
    """PSNR, SSIM on [0, 255] values, in float64 where the device has it (skimage agreement), and LPIPS
    (``perceptual_metric``, if any and the images are large enough) on the same values in [-1, 1]."""
    dtype = torch.float32 if device.type == "mps" else torch.float64
    x = to_tensor([it.image for it in paired], device, dtype)
    y = to_tensor([it.reference for it in paired], device, dtype)
    psnr, ssim = metrics.psnr(x, y, 255.0).tolist(), metrics.ssim(x, y, 255.0).tolist()
    scores = [{"psnr": p, "ssim": s} for p, s in zip(psnr, ssim)]
    if scan.swd_sets is not None:
        scan.swd_sets.add(x.float(), y.float(), [it.ref_key for it in paired])
    if perceptual_metric is not None and perceptual_metric.fits(*x.shape[-2:]):
        distances = perceptual_metric(x.float() / 127.5 - 1, y.float() / 127.5 - 1).tolist()
        for score, distance in zip(scores, distances):
            score["lpips"] = distance
    elif perceptual_metric is not None:
        scan.too_small_for_lpips += len(paired)
    return scores


@torch.no_grad()
def score_batch(
    batch: list[Item], scan: Scan, device: torch.device, extractor=None, classifier=None, perceptual_metric=None
) -> None:
    """Append one row per item (PSNR/SSIM/LPIPS if paired, prediction if labelled) and the batch's features."""
    x = to_tensor([it.image for it in batch], device)
    rows = [{"name": it.key} for it in batch]
    with_ref = [i for i, it in enumerate(batch) if it.reference is not None]
    scores = _pair_scores([batch[i] for i in with_ref], device, perceptual_metric, scan) if with_ref else []
    labeled = [i for i, it in enumerate(batch) if it.label is not None] if classifier is not None else []
    preds = classifier(x[labeled] / 127.5 - 1).argmax(dim=1).tolist() if labeled else []
    for i, score in zip(with_ref, scores):
        rows[i].update(reference=batch[i].ref_key, sample=batch[i].sample, **score)
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


def _load_or_note(weights_source: metrics.WeightsSource, path, loader, device, notes: list[str], skipped: str):
    """The network from ``path`` or the default locations, or ``None`` and a note saying what to get."""
    if metrics.find_weights(weights_source, path) is None:
        notes.append(f"{skipped} skipped: {weights_source.missing_message()}")
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


def _pairs(restored: dict[str, Path], reference: dict[str, Path]) -> dict[str, tuple[str, int | None]]:
    """:func:`.pairing.pair_keys`, warning about restored images without a reference (an error if all are) and
    references without a restoration."""
    pairs = pairing.pair_keys(restored, reference)
    unpaired = [k for k in restored if k not in pairs]
    if len(unpaired) == len(restored):
        raise ValueError(
            "no restored image has a counterpart in the reference folder (same relative path, any extension, "
            "or NAME_sK for the reference NAME)"
        )
    if unpaired:
        warnings.warn(
            f"{len(unpaired)} restored image(s) without reference, e.g. {unpaired[0]!r}",
            EvaluationWarning,
            stacklevel=3,
        )
    unmatched = unmatched_references(pairs, reference)
    if unmatched:
        warnings.warn(f"{len(unmatched)} reference image(s) without a restoration, e.g. {unmatched[0]!r}",
                      EvaluationWarning, stacklevel=3)
    return pairs


def unmatched_references(pairs: dict[str, tuple[str, int | None]], reference: dict[str, Path]) -> list[str]:
    """The reference keys no restored image pairs with, sorted."""
    used = {ref for ref, _ in pairs.values()}
    return [key for key in reference if key not in used]


def _lpips_or_note(net: str, path, device, notes: list[str]) -> perceptual.LPIPS | None:
    """:func:`.perceptual.load_lpips`, or ``None`` and a note saying what to install or get."""
    try:
        return perceptual.load_lpips(net, path, device)
    except perceptual.LPIPSUnavailable as err:
        notes.append(f"LPIPS skipped: {err}")
        return None


def _mean(rows: list[dict], key: str) -> float | None:
    return pairing.mean(r[key] for r in rows if key in r)


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
    lpips: bool = True,
    lpips_net: str = "alex",
    lpips_weights: str | Path | None = None,
    device: str | torch.device = "auto",
    batch_size: int = 32,
    swd_seed: int = 0,
) -> dict:
    """Metrics of the images in ``restored`` (see the module docstring) as a JSON-ready dict.

    ``feature_extractor`` / ``classifier`` replace the clean-fid Inception / ResNet-50 (input conventions
    in :mod:`.metrics`); otherwise those are loaded from ``inception`` / ``resnet`` or the default
    locations (:func:`.metrics.find_weights`), or skipped with a note naming the file to get. LPIPS
    (``lpips=True``, with a reference folder) runs on ``lpips_net`` ("alex" or "vgg") whose torchvision
    backbone state_dict is read from ``lpips_weights`` or the default locations; without that file or the
    ``lpips`` package it is skipped with a note. SWD (:mod:`.swd`, no weights) compares the paired restorations
    with their references as two sets, patches drawn with ``swd_seed``. ``device``: auto (cuda, then mps, then
    cpu) | cpu | cuda[:N] | mps.
    """
    notes: list[str] = []
    restored_files = list_images(restored, notes)
    if reference is None and fid_ref is None and labels is None:
        raise ValueError("nothing to compute: give a reference folder, FID reference statistics or labels")
    device = resolve_device(device)
    reference_files = list_images(reference, notes) if reference is not None else None
    pairs = _pairs(restored_files, reference_files) if reference_files is not None else {}
    fid_source = next((Path(s) for s in (fid_ref, reference) if s is not None), None) if fid else None
    if fid_source is not None and not fid_source.exists():
        raise FileNotFoundError(f"FID reference not found: {fid_source}")
    lookup = label_lookup(read_labels(labels)) if labels is not None else None
    perceptual_metric = _lpips_or_note(lpips_net, lpips_weights, device, notes) if pairs and lpips else None
    if fid_source is not None and feature_extractor is None:
        feature_extractor = _load_or_note(
            metrics.INCEPTION_WEIGHTS, inception, metrics.load_inception, device, notes, "FID"
        )
    if lookup is not None and classifier is None:
        classifier = _load_or_note(metrics.RESNET50_WEIGHTS, resnet, metrics.load_resnet50, device, notes, "accuracy")

    extractor = feature_extractor if fid_source is not None else None
    scan = Scan(swd_sets=swd.sets_for_files([restored_files[k] for k in pairs], pairs, swd_seed, notes))
    items = read_items(restored_files, scan, reference_files, lookup, pairs)
    classifier = classifier if lookup is not None else None
    scan_folder(items, batch_size, device, scan, extractor=extractor, classifier=classifier,
                perceptual_metric=perceptual_metric)  # fmt: skip
    fid_value = _fid(scan, fid_source, extractor, device, batch_size, notes) if extractor is not None else None
    labeled = [r for r in scan.rows if "correct" in r]
    if lookup is not None and classifier is not None and not labeled:
        notes.append(f"accuracy skipped: no restored image has a label in {labels}")
    if scan.too_small_for_lpips:
        notes.append(f"LPIPS skipped for {scan.too_small_for_lpips} pair(s) smaller than {perceptual_metric.min_size}"
                     f"x{perceptual_metric.min_size} pixels, the {lpips_net} backbone's minimum")
    scored = ("psnr", "ssim", "lpips")
    return {
        "restored": str(restored),
        "reference": None if reference is None else str(reference),
        "fid_reference": None if fid_value is None else str(fid_source),
        "num_images": len(scan.rows),
        "num_pairs": sum("psnr" in r for r in scan.rows),
        "num_unpaired": len(restored_files) - len(pairs) if reference_files is not None else 0,
        "num_unmatched_references": len(unmatched_references(pairs, reference_files or {})),
        "unmatched_references": unmatched_references(pairs, reference_files or {}),
        "num_unreadable": len(scan.unreadable),
        "unreadable": scan.unreadable,
        "num_size_mismatch": len(scan.size_mismatch),
        "size_mismatch": scan.size_mismatch,
        "psnr": _mean(scan.rows, "psnr"),
        "ssim": _mean(scan.rows, "ssim"),
        "lpips": _mean(scan.rows, "lpips"),
        "lpips_net": None if perceptual_metric is None else lpips_net,
        **swd.PairedSets.summary(scan.swd_sets),
        **pairing.summarize(scan.rows, scored),
        "fid": fid_value,
        "accuracy": _mean(labeled, "correct"),
        "num_labeled": len(labeled),
        "definitions": pairing.DEFINITIONS,
        "notes": notes,
        "per_image": scan.rows,
    }
