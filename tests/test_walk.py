"""How far a reader walks from a command to the network: the frames inside ``i2sb/`` between ``i2sb-sample``'s or
``i2sb-train``'s ``main`` and the network's first call, counted by a spy on that call (issue 24: at most 9 and 8,
as NVlabs/edm's generate.py reaches its network in 4-5). A new layer of indirection must earn its frame here."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

import i2sb
from i2sb.cli import sample_main, train_main
from i2sb.nets.unet import UNet

sys.path.insert(0, str(Path(__file__).parent))
from helpers import random_image, write_run  # noqa: E402
from test_hydra import TINY  # noqa: E402

PACKAGE = Path(i2sb.__file__).resolve().parent
MAX_SAMPLE_FRAMES, MAX_TRAIN_FRAMES = 9, 8


class Reached(BaseException):
    """Raised by the spy at the network's first call; a BaseException, so no ``except Exception`` stops it."""

    def __init__(self, frames: list[str]):
        super().__init__(f"{len(frames)} frames")
        self.frames = frames


def frames_inside_i2sb() -> list[str]:
    """``module:function`` of every frame on the stack whose code lies in the package, outermost first."""
    frame, walk = sys._getframe(1), []
    while frame is not None:
        path = Path(frame.f_code.co_filename).resolve()
        if path.is_relative_to(PACKAGE):
            walk.append(f"{path.relative_to(PACKAGE).with_suffix('').as_posix()}:{frame.f_code.co_name}")
        frame = frame.f_back
    return walk[::-1]


@pytest.fixture
def spy(monkeypatch):
    """The U-Net's forward replaced by one that stops the command at its first call with the walk to it."""

    def forward(self, x, t):
        raise Reached(frames_inside_i2sb())

    monkeypatch.setattr(UNet, "forward", forward)


def walk(main, argv: list[str]) -> list[str]:
    with pytest.raises(Reached) as reached:
        main(argv)
    frames = reached.value.frames
    assert frames and frames[0].startswith("cli/"), frames  # from the command's main, nothing else in i2sb
    return frames


def test_i2sb_sample_reaches_the_network_in_at_most_nine_frames(tmp_path, spy):
    run = write_run(tmp_path / "run")
    (tmp_path / "in").mkdir()
    random_image(16, 16, 0).save(tmp_path / "in" / "a.png")
    frames = walk(sample_main, [f"ckpt={run}", f"input={tmp_path / 'in'}", f"output={tmp_path / 'out'}", "nfe=2",
                                "progress=false"])
    assert frames[0] == "cli/sample:main" and frames[-1] == "core/denoiser:forward", frames
    assert len(frames) <= MAX_SAMPLE_FRAMES, "\n".join(frames)


def test_i2sb_train_reaches_the_network_in_at_most_eight_frames(tmp_path, spy):
    frames = walk(train_main, ["task=jpeg5", *TINY, f"run_dir={tmp_path / 'run'}"])
    assert frames[0] == "cli/train:main" and frames[-1] == "core/denoiser:raw", frames
    assert len(frames) <= MAX_TRAIN_FRAMES, "\n".join(frames)
