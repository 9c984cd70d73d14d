"""Signs of life while large photos restore: a bar over the network evaluations of a batch (every tile at every
step) and, before work, an estimate for photos over :data:`ESTIMATE_PIXELS`.

A network evaluation is the denoiser on one tile of the batch; a photo of ``T`` tiles restored with ``nfe`` steps
takes ``T x nfe`` of them (more with DDNM's time travel). The bar counts them with a forward hook on the restorer's
network (a call's batch says how many tiles it took: one per call on the CPU, several on GPUs), so it sees what
runs whatever the sampler. The estimate's speed comes from timing one evaluation on one tile (after one untimed
warm-up call) on the device and precision of the run; where tiles go through the network several at a time
(GPUs) each costs less, so there the estimate is an upper bound.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace

import torch
from tqdm.auto import tqdm

from .restorer import Restorer, SamplingOptions

ESTIMATE_PIXELS = 2_000_000  # photos with more output pixels get an estimate before work


def time_evaluation(restorer: Restorer, options: SamplingOptions) -> float | None:
    """Seconds of one network evaluation on one tile of one image, or None when not tiled (the whole photo would
    have to be run) or when the model cannot run on a lone tile."""
    if not options.tile:
        return None
    shape = (1, 3, options.tile, options.tile)
    x1 = torch.zeros(shape, device=restorer.device)
    mask = torch.zeros((1, 1, *shape[-2:]), device=restorer.device) if restorer.needs_mask else None
    one_step = replace(options, nfe=1, tile=0)
    seconds = None
    try:
        for _ in range(2):  # the first call pays one-time costs (kernel selection, allocations)
            start = time.perf_counter()
            restorer.restore(x1, mask=mask, options=one_step, generator=torch.Generator(restorer.device)).sum().item()
            seconds = time.perf_counter() - start
    except (RuntimeError, ValueError):
        return None
    return seconds


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min" if seconds < 5400 else \
        f"{seconds / 3600:.1f} h"


def estimate_line(name: str, size: tuple[int, int], tiles: int, options: SamplingOptions, samples: int,
                  seconds: float | None) -> str:
    """``IMG.jpg: 4000x3000 output (12.0 MP), 48 tiles x 10 steps = 480 network evaluations, ~N min at ...``."""
    height, width = size
    evaluations = tiles * options.nfe * samples
    repeat = f" x {samples} samples" if samples > 1 else ""
    line = (f"{name}: {width}x{height} output ({height * width / 1e6:.1f} MP), {tiles} tile(s) x {options.nfe} "
            f"step(s){repeat} = {evaluations} network evaluations")
    if seconds is not None:
        line += (f", ~{_duration(evaluations * seconds)} at {seconds:.2g} s per evaluation (one {options.tile} px "
                 f"tile timed here)")
    return line


class Estimates:
    """Estimate lines for large photos, timing one evaluation the first time one is needed."""

    def __init__(self, restorer: Restorer, options: SamplingOptions, samples: int, write: Callable[[str], None]):
        self.restorer, self.options, self.samples, self.write = restorer, options, samples, write
        self._seconds: float | None = None
        self._timed = False

    def announce(self, name: str, size: tuple[int, int]) -> None:
        """Write the estimate of the photo ``name`` restored at ``size`` (H, W) if it is over the threshold."""
        if size[0] * size[1] <= ESTIMATE_PIXELS:
            return
        if not self._timed:
            self._seconds, self._timed = time_evaluation(self.restorer, self.options), True
        tiles = self.restorer.tile_count(*size, self.options)
        self.write(estimate_line(name, size, tiles, self.options, self.samples, self._seconds))


@contextmanager
def evaluation_bar(restorer: Restorer, tiles: int, nfe: int, images: int, desc: str,
                   enabled: bool) -> Iterator[None]:
    """While the block restores one batch of ``images`` images: a second tqdm bar counting its tile evaluations
    (a network call may take several tiles of the batch at once, as on GPUs), its postfix naming the step and the
    tile (``step 3/10, tile 12/48``). Nothing when disabled or for a single evaluation."""
    total = tiles * nfe
    if not enabled or total <= 1:
        yield
        return
    # every evaluation shown (a network forward dwarfs a line of text): the step and tile never lag behind
    with tqdm(total=total, desc=desc, unit="eval", leave=False, position=1, dynamic_ncols=True, mininterval=0,
              miniters=1) as bar:
        def count(module, args, output) -> None:
            called = args[0].shape[0] // images if args and hasattr(args[0], "shape") else 1
            done = bar.n + max(called, 1) - 1  # the last tile of this call
            bar.set_postfix_str(f"step {min(done // tiles + 1, nfe)}/{nfe}, tile {done % tiles + 1}/{tiles}",
                                refresh=False)
            bar.update(max(called, 1))

        handle = restorer.denoiser.net.register_forward_hook(count)  # one hook call per network call
        try:
            yield
        finally:
            handle.remove()
