"""``i2sb-degrade``: degrade a folder of clean photos of any size as a task's training does
(:func:`i2sb.degrade.degrade_folder.degrade_folder`). The schema lives here, the work in :mod:`.degrade_job`
(imported by the job: ``--help`` loads no torch)."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from typing import Any, Optional

from .keyvalue import Tool, exit_with, run_tool

PROG = "i2sb-degrade"
# i2sb.degrade.TASKS and i2sb.degrade.degrade_folder.FORMATS by name, so --help needs no torch
# (tests/test_tool_startup.py keeps them equal)
TASKS = ("jpeg", "jpeg5", "jpeg10", "jpeg_libjpeg", "sr4x_pool", "sr4x_bicubic", "blur_uni", "blur_gauss",
         "blur_uni_conv", "blur_gauss_conv", "inpaint_center", "inpaint_freeform1020", "inpaint_freeform2030",
         "colorize")
FORMATS = ("png", "npy")


@dataclass
class DegradeOptions:
    """The keys of ``i2sb-degrade``."""

    task: str = field(default="???", metadata={"help": f"degradation: {', '.join(TASKS)}"})
    input: str = field(default="???", metadata={"help": "folder of clean images (any size; searched recursively) "
                                                         "or one image file"})
    output: str = field(default="???", metadata={"help": "folder for the degraded images: same relative paths "
                                                          "and names, suffix .png (or .npy); SR writes the "
                                                          "true low-resolution image (H/4 x W/4)"})
    masks: Optional[str] = field(default=None, metadata={"help": "inpainting only: folder for the masks "
                                                                 "(white = hole; default OUTPUT_masks beside "
                                                                 "OUTPUT), for i2sb-sample mask=MASKS"})
    seed: int = field(default=0, metadata={"help": "base seed of the random draws (free-form masks); each "
                                                   "image's draws come from (seed, a hash of its pixels)"})
    format: str = field(default="png", metadata={"help": f"{' | '.join(FORMATS)}: png is 8-bit (clips the "
                                                         "JPEG tasks' values outside [-1, 1]); npy is the exact "
                                                         "float32 (H, W, 3) array in [-1, 1] units"})
    crop: bool = field(default=False, metadata={"help": "super-resolution: centre-crop each photo to sides divisible "
                                                        "by 4 (false: such photos are skipped, one line each)"})
    params: dict[str, Any] = field(default_factory=dict, metadata={
        "help": "the task's parameters, e.g. params.quality=30 (task=jpeg or jpeg_libjpeg), params.mask_file=F "
                "(free-form: Palette's masks)"})


TOOL = Tool(
    PROG,
    DegradeOptions,
    "Degrade clean images as a task's training does, to test a model on photos of any size. Unreadable "
    "images and sizes a task cannot take (SR: sides divisible by 4, or crop=true) are reported in one line each "
    "and skipped (exit status 1); usage errors exit 2 before anything is written.",
    "i2sb-degrade task=sr4x_bicubic input=clean/ output=lowres/",
)


def _run(options: DegradeOptions) -> int:
    from .degrade_job import run  # lazy: the work imports torch; --help and usage errors need not

    return run(options)


def main(argv: list[str] | None = None) -> None:
    """``i2sb-degrade task=NAME input=CLEAN output=DEGRADED [masks=DIR] [seed=0] [format=png] [params.K=V]``."""
    exit_with(lambda: run_tool(TOOL, sys.argv[1:] if argv is None else argv, _run))


if __name__ == "__main__":
    main()
