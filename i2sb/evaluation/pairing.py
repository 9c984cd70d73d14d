"""Which reference each restored image is scored against, and the means over pairs, samples and images.

``i2sb-sample n_samples=K`` writes ``NAME_s0.png ... NAME_s{K-1}.png`` for the input ``NAME``: several
posterior samples of one image. A restored image pairs with the reference of the same key (relative path
without extension); failing that, a restored ``NAME_sK`` pairs with the reference ``NAME`` as its sample
``K``. An exact name match wins, so a reference that is itself called ``x_s1`` keeps its own restoration.

The summary of a per-pair metric ``m`` (``psnr``, ``ssim``, ``lpips``):

* ``m``: mean over all pairs (each restoration counts once);
* ``m_per_sample``: ``{"K": mean over the images that have sample K}``, for the ``NAME_sK`` restorations;
* ``m_image_mean``: mean over reference images of the mean over that image's restorations (its samples).

With one restoration per image all three agree (``m_per_sample`` is then empty: no ``_sK`` names).
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Collection, Iterable
from pathlib import Path

from ..utils.listing import IMAGE_EXTENSIONS

SAMPLE_NAME = re.compile(r"(.+)_s(\d+)")  # NAME_sK, as i2sb.restoration.folder.sample_names writes

DEFINITIONS = {  # what each summary number is; copied into the JSON
    "psnr, ssim, lpips": "mean over all (restored, reference) pairs",
    "swd": "sliced Wasserstein distance x 1e3 of 7x7 Laplacian-pyramid patches (Karras et al. 2018) between the "
           "set of paired restorations and the set of their references, mean over levels; lower = local "
           "statistics closer to the references; swd_levels: per level, 0 = finest",
    "*_per_sample": "{K: mean over the reference images that have a restoration NAME_sK}",
    "*_image_mean": "mean over reference images of the mean over that image's restorations (samples)",
    "num_reference_images": "reference images with at least one paired restoration",
    "samples_per_image": "fewest and most restorations paired with one reference image",
}


def image_key(relative: str | Path) -> str:
    """Pairing key of an image: its relative path with '/' separators, without an image extension."""
    path = Path(relative)
    return (path.with_suffix("") if path.suffix.lower() in IMAGE_EXTENSIONS else path).as_posix()


def split_sample(key: str) -> tuple[str, int] | None:
    """``"a/b_s3"`` -> ``("a/b", 3)``; ``None`` for a key without a sample suffix."""
    match = SAMPLE_NAME.fullmatch(key)
    return (match.group(1), int(match.group(2))) if match else None


def pair_keys(restored: Iterable[str], reference: Collection[str]) -> dict[str, tuple[str, int | None]]:
    """``{restored key: (reference key, sample index or None)}`` for the restored keys with a reference.

    The sample index is ``None`` for an exact name match and ``K`` for ``NAME_sK`` paired with ``NAME``.
    """
    pairs: dict[str, tuple[str, int | None]] = {}
    for key in restored:
        if key in reference:
            pairs[key] = (key, None)
        elif (sample := split_sample(key)) is not None and sample[0] in reference:
            pairs[key] = sample
    return pairs


def mean(values: Iterable[float]) -> float | None:
    """Exact mean (``math.fsum``), ``None`` for no values; an exact copy's PSNR ``inf`` propagates."""
    values = list(values)
    return math.fsum(values) / len(values) if values else None


def summarize(rows: list[dict], metrics: Iterable[str]) -> dict:
    """Per-sample and per-image means of ``metrics`` over the paired ``rows`` and the counts (see module doc).

    A paired row has ``reference`` and ``sample`` keys and the metric values it could compute.
    """
    paired = [r for r in rows if "reference" in r]
    by_image: dict[str, list[dict]] = defaultdict(list)
    for row in paired:
        by_image[row["reference"]].append(row)
    counts = [len(group) for group in by_image.values()]
    samples = sorted({r["sample"] for r in paired if r["sample"] is not None})
    summary: dict = {
        "num_reference_images": len(by_image),
        "samples_per_image": {"min": min(counts), "max": max(counts)} if counts else None,
        "sample_indices": samples,
    }
    for m in metrics:
        per_sample = {str(s): mean(r[m] for r in paired if r["sample"] == s and m in r) for s in samples}
        summary[f"{m}_per_sample"] = {s: v for s, v in per_sample.items() if v is not None}
        image_means = [mean(r[m] for r in group if m in r) for group in by_image.values()]
        summary[f"{m}_image_mean"] = mean(v for v in image_means if v is not None)
    return summary
