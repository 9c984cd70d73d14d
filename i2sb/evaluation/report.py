"""The ``i2sb-eval`` report: a table on the console (per image when there are few) and the summary."""

from __future__ import annotations

MAX_TABLE_ROWS = 20  # the table lists every image only when there are at most this many

# per-image columns: row key -> (header, format); a column is shown when some row has the key
TABLE_COLUMNS = {"psnr": ("PSNR[dB]", ".2f"), "ssim": ("SSIM", ".4f"), "label": ("label", "d"), "pred": ("pred", "d")}


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


def format_table(result: dict, per_image: bool = False) -> str:
    """A readable table: one row per image when there are few (or ``per_image``), then the summary."""
    lines = _image_rows(result["per_image"]) if per_image or result["num_images"] <= MAX_TABLE_ROWS else []
    fid_ref = f"  (clean-fid legacy_pytorch, vs {result['fid_reference']})" if result["fid"] is not None else ""
    acc_n = f"  (top-1, {result['num_labeled']} labelled images)" if result["accuracy"] is not None else ""
    lines += [
        f"images     {result['num_images']} ({result['num_pairs']} paired, "
        f"{result['num_unreadable']} unreadable files skipped)",
        f"PSNR [dB]  {_fmt(result['psnr'], '.3f')}",
        f"SSIM       {_fmt(result['ssim'], '.4f')}",
        f"FID        {_fmt(result['fid'], '.3f')}{fid_ref}",
        f"accuracy   {_fmt(result['accuracy'], '.4f')}{acc_n}",
    ]
    return "\n".join(lines + [f"note: {n}" for n in result["notes"]])
