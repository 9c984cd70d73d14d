"""The ``i2sb-eval`` report: a table on the console (per image when there are few) and the summary."""

from __future__ import annotations

MAX_TABLE_ROWS = 20  # the table lists every image only when there are at most this many

# per-image columns: row key -> (header, format); a column is shown when some row has the key
TABLE_COLUMNS = {"psnr": ("PSNR[dB]", ".2f"), "ssim": ("SSIM", ".4f"), "lpips": ("LPIPS", ".4f"),
                 "label": ("label", "d"), "pred": ("pred", "d")}
SCORES = {"psnr": ("PSNR [dB]", ".3f"), "ssim": ("SSIM", ".4f"), "lpips": ("LPIPS", ".4f")}  # per-pair metrics


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _image_rows(rows: list[dict]) -> list[str]:
    shown = [k for k in TABLE_COLUMNS if any(k in r for r in rows)]
    if not shown:
        return []
    lines = [f"{'image':<32}" + "".join(f" {TABLE_COLUMNS[k][0]:>9}" for k in shown)]
    for r in rows:
        lines.append(f"{r['name'][-32:]:<32}" + "".join(f" {_fmt(r.get(k), TABLE_COLUMNS[k][1]):>9}" for k in shown))
    return lines + [""]


def _sample_rows(result: dict) -> list[str]:
    """Means per sample index and over images, when the restorations are samples ``NAME_sK``."""
    if not result.get("sample_indices"):
        return []
    shown = [k for k in SCORES if result.get(f"{k}_image_mean") is not None]
    lines = [
        "means per sample K (restorations NAME_sK, over the images that have one) and over images (each image:",
        "the mean over its samples):",
        f"  {'':<11}" + "".join(f" {SCORES[k][0]:>10}" for k in shown),
    ]
    for s in map(str, result["sample_indices"]):
        lines.append(f"  {'sample ' + s:<11}" + "".join(
            f" {_fmt(result[f'{k}_per_sample'].get(s), SCORES[k][1]):>10}" for k in shown))
    means = [_fmt(result[f"{k}_image_mean"], SCORES[k][1]) for k in shown]
    lines.append(f"  {'image mean':<11}" + "".join(f" {m:>10}" for m in means))
    return lines


def _pairs_text(result: dict) -> str:
    counts = result.get("samples_per_image")
    if not counts:
        return f"{result['num_pairs']} paired"
    each = counts["min"] if counts["min"] == counts["max"] else f"{counts['min']}-{counts['max']}"
    return f"{result['num_pairs']} paired with {result['num_reference_images']} references, {each} per reference"


def _problems_text(result: dict) -> str:
    """Pairs not scored for their sizes, references without a restoration (when there are any)."""
    parts = [f"{result[key]} {text}" for key, text in (("num_size_mismatch", "pairs of different sizes not scored"),
                                                       ("num_unmatched_references", "references without a restoration"))
             if result.get(key)]
    return "".join(f", {p}" for p in parts)


def _swd_text(result: dict) -> str:
    """SWD's levels and sampling, in brackets after the value."""
    if result.get("swd") is None:
        return ""
    about = result["swd_settings"]
    levels = " / ".join(f"{v:.1f}" for v in result["swd_levels"])
    return (f"  (levels fine..coarse {levels}; 7x7 Laplacian-pyramid patches, {about['patches_per_image_used']} per "
            f"image and level, {about['repeats'] * about['projections']} projections, seed {about['seed']}; "
            f"lower = closer to the references' local statistics)")


def format_table(result: dict, per_image: bool = False) -> str:
    """A readable table: one row per image when there are few (or ``per_image``), then the summary."""
    lines = _image_rows(result["per_image"]) if per_image or result["num_images"] <= MAX_TABLE_ROWS else []
    fid_ref = f"  (clean-fid legacy_pytorch, vs {result['fid_reference']})" if result["fid"] is not None else ""
    acc_n = f"  (top-1, {result['num_labeled']} labelled images)" if result["accuracy"] is not None else ""
    over = "  (mean over all pairs)" if result.get("sample_indices") else ""
    net = f"  ({result['lpips_net']} backbone, v0.1)" if result.get("lpips") is not None else ""
    lines += [
        f"images     {result['num_images']} ({_pairs_text(result)}, "
        f"{result['num_unreadable']} unreadable files skipped{_problems_text(result)})",
        f"PSNR [dB]  {_fmt(result['psnr'], '.3f')}{over}",
        f"SSIM       {_fmt(result['ssim'], '.4f')}{over}",
        f"LPIPS      {_fmt(result.get('lpips'), '.4f')}{over}{net}",
        f"SWD x1e3   {_fmt(result.get('swd'), '.2f')}{_swd_text(result)}",
        f"FID        {_fmt(result['fid'], '.3f')}{fid_ref}",
        f"accuracy   {_fmt(result['accuracy'], '.4f')}{acc_n}",
    ]
    return "\n".join(lines + _sample_rows(result) + [f"note: {n}" for n in result["notes"]])
