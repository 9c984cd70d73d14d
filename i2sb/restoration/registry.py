"""The authors' released checkpoints and where models go: names, tasks, the paper's numbers, folders, mirrors.

Plain data and path logic, no torch: ``i2sb-download --help`` and ``i2sb-download list`` read it without loading a
network library. Downloading and verifying is :mod:`.pretrained` (the authors' files, ADM) and :mod:`.sharing` (any
model folder a mirror serves).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from ..utils.file_formats import LATEST, OPTIONS_FILE

DEFAULT_ROOT = "results"  # as in the authors' scripts and README
DEFAULT_ADM_DIR = "data"  # where the authors' code puts ADM (i2sb/ckpt_util.py)
MIRROR_ENV = "I2SB_MIRROR"
FILES = (OPTIONS_FILE, LATEST)  # the small one first: a wrong mirror fails fast
DRIVE_FOLDER = "https://drive.google.com/drive/folders/"
ALL_CHECKPOINTS_URL = DRIVE_FOLDER + "1sgHF2FjgsAiV7doBeeOiBD8NyQhKutsG"  # NVlabs/I2SB README
LICENSE = "CC-BY-NC-SA-4.0"  # the checkpoints' license (NVlabs/I2SB README)


@dataclass(frozen=True)
class Pretrained:
    """One released checkpoint: ``name`` as the authors spell it (their ``--corrupt``), i2sb ``task``."""

    name: str
    task: str
    drive_id: str
    fid: float       # I2SB row of the paper's table
    table: int       # 2: 4x SR (FID on the full ImageNet val set); 3: JPEG; 4: inpainting; 5: deblurring (FID-10k)
    ca: float        # classifier accuracy (%), same row
    description: str

    @property
    def drive_url(self) -> str:
        return DRIVE_FOLDER + self.drive_id

    @property
    def fid_kind(self) -> str:
        return "FID-50k" if self.table == 2 else "FID-10k"  # SR: full ImageNet val set; others: 10k subset


PRETRAINED: dict[str, Pretrained] = {p.name: p for p in (
    Pretrained("jpeg-5", "jpeg5", "17bPMUX5yBcL8YTN8nbfJT6WHXU6CNLd7", 4.6, 3, 67.9, "JPEG restoration, QF 5"),
    Pretrained("jpeg-10", "jpeg10", "13on7v54W8ncQ4RlSl3PIZn0NalfiGaJd", 3.6, 3, 72.1, "JPEG restoration, QF 10"),
    Pretrained("sr4x-pool", "sr4x_pool", "1VIA8haw3Oy0OqL-CeEM2Rekk92tL0gD0", 2.7, 2, 71.0,
               "4x super-resolution, average pooling"),
    Pretrained("sr4x-bicubic", "sr4x_bicubic", "1QfpggccSV9llWMBrklZ6OPdlGR7qRd6F", 2.8, 2, 70.7,
               "4x super-resolution, bicubic"),
    Pretrained("blur-uni", "blur_uni", "1_U9IhgH7CxNp0_8o9F3D86sihflPGKDZ", 3.9, 5, 73.7, "deblurring, uniform kernel"),
    Pretrained("blur-gauss", "blur_gauss", "1vatmaOiEgO_Z9JQiFhHdcjiSNgnS9lBY", 3.0, 5, 75.0,
               "deblurring, Gaussian kernel"),
    Pretrained("inpaint-center", "inpaint_center", "1ounBKyUezkZmjC7d3tzbBwfEBe0Y7bkM", 4.9, 4, 66.1,
               "inpainting, 128x128 center box"),
    Pretrained("inpaint-freeform1020", "inpaint_freeform1020", "1WGYzrxO-t4Q6XadgwWdUuh6Ue966LYKw", 2.9, 4, 74.9,
               "inpainting, freeform masks 10-20%"),
    Pretrained("inpaint-freeform2030", "inpaint_freeform2030", "18Q1ZtUcl3z63v0VOSR5hVH3T5fGNgf3I", 3.2, 4, 73.4,
               "inpainting, freeform masks 20-30%"),
)}
# The authors' --corrupt names (NVlabs/I2SB scripts/train.sh) -> i2sb.degrade tasks: the released checkpoints'
# names, and "mixture" (their mix of corruptions), which has no single operator.
CORRUPTIONS: dict[str, str | None] = {**{p.name: p.task for p in PRETRAINED.values()}, "mixture": None}
SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")  # a model folder name: no path, not hidden


def lookup(name: str) -> Pretrained:
    """The checkpoint called ``name`` (the authors' ``jpeg-5`` or the i2sb task ``jpeg5``); one-line ValueError."""
    if name in PRETRAINED:
        return PRETRAINED[name]
    by_task = {p.task: p for p in PRETRAINED.values()}
    if name in by_task:
        return by_task[name]
    raise ValueError(f"unknown checkpoint '{name}', expected one of: {', '.join(PRETRAINED)}")


def resolve_mirror(mirror: str | None) -> str | None:
    """``mirror`` or else ``$I2SB_MIRROR``, without a trailing slash; ``None`` means the original hosts."""
    mirror = mirror or os.environ.get(MIRROR_ENV) or None
    return mirror.rstrip("/") if mirror else None


def checkpoint_dir(name: str, root: str | Path = DEFAULT_ROOT) -> Path:
    """``root/NAME``, the folder ``i2sb-sample ckpt=`` takes."""
    return Path(root).expanduser() / lookup(name).name


def local_state(name: str, root: str | Path = DEFAULT_ROOT) -> str:
    """``"yes"`` if both files are in ``root/NAME``, ``"partial"`` if one is, ``"no"`` otherwise (not verified)."""
    folder = checkpoint_dir(name, root)
    present = sum((folder / f).is_file() for f in FILES)
    return "yes" if present == len(FILES) else "partial" if present else "no"


def known(name: str) -> Pretrained | None:
    """The authors' checkpoint called ``name`` (or its i2sb task name), None for any other name."""
    try:
        return lookup(name)
    except ValueError:
        return None


def check_name(name: str) -> str:
    """``name`` if it is a plain folder name (what ``URL/NAME/`` and ``ROOT/NAME/`` take); ValueError otherwise."""
    if not SAFE_NAME.fullmatch(name):
        raise ValueError(f"'{name}' is not a model folder name (letters, digits, '.', '_', '-'; no '/')")
    return name
