"""Stopping a training run cleanly: signals become a stop request honoured at the next step boundary.

* First Ctrl-C (SIGINT): save ``latest.pt`` at the next step boundary, then raise :class:`TrainingInterrupted`
  (a ``KeyboardInterrupt``; the command exits 130). A second Ctrl-C aborts at once (``KeyboardInterrupt``),
  leaving the last complete checkpoint untouched (saves are atomic).
* SIGTERM, SIGUSR1, SIGUSR2 (preemption, time limit): save at the next step boundary and return normally
  (exit 0).
* A handler installed before training (submitit's SIGUSR2 ``checkpoint_and_try_requeue``, say) is not lost:
  it runs after the save, at the step boundary, instead of in the middle of a step.

Distributed runs decide together: :class:`StopVote` sums every rank's flag, one step late so no rank ever
waits on the vote, and all ranks stop at the same step.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from types import FrameType
from typing import Any, Callable

import torch
import torch.distributed as dist

from .dist import DistInfo

PREEMPTION_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2)
# Under torchrun a terminal's Ctrl-C reaches a rank twice (directly and forwarded by the agent, a few ms
# apart); there a SIGINT this soon after the first is the same Ctrl-C, not a second one.
SAME_CTRL_C_S = 1.0


def same_ctrl_c_window() -> float:
    """Seconds within which a second SIGINT counts as the first one: ``SAME_CTRL_C_S`` under torchrun, else 0."""
    return SAME_CTRL_C_S if os.environ.get("TORCHELASTIC_RUN_ID") else 0.0


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C stopped training after saving ``latest.pt``; the message says what was saved and how to resume."""


class StopSignals:
    """Context manager: while active, SIGINT / SIGTERM / SIGUSR1 / SIGUSR2 only record a stop request.

    Handlers are installed in the main thread only (elsewhere nothing changes) and the previous ones are
    restored on exit. :attr:`received` lists the signals seen, in order.
    """

    def __init__(self, same_ctrl_c_s: float | None = None, clock: Callable[[], float] = time.monotonic) -> None:
        self.received: list[signal.Signals] = []
        self._previous: dict[signal.Signals, Any] = {}
        self._first_ctrl_c: float | None = None
        self._window = same_ctrl_c_window() if same_ctrl_c_s is None else same_ctrl_c_s
        self._clock = clock

    def __enter__(self) -> "StopSignals":
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, *PREEMPTION_SIGNALS):
                self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, previous in self._previous.items():  # kept: run_deferred_handlers calls them afterwards
            signal.signal(sig, previous)

    @property
    def requested(self) -> bool:
        return bool(self.received)

    @property
    def interrupted(self) -> bool:
        """A Ctrl-C (SIGINT) was among the signals: the run ends with :class:`TrainingInterrupted`."""
        return signal.SIGINT in self.received

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        sig = signal.Signals(signum)
        if sig == signal.SIGINT:
            now = self._clock()
            if self._first_ctrl_c is not None and now - self._first_ctrl_c >= self._window:
                raise KeyboardInterrupt("second Ctrl-C: aborted at once; the last saved checkpoint is untouched")
            self._first_ctrl_c = self._first_ctrl_c if self._first_ctrl_c is not None else now
        if sig not in self.received:
            self.received.append(sig)

    def run_deferred_handlers(self) -> None:
        """Call, for each signal received, the Python handler that was installed before (e.g. submitit's
        requeue on SIGUSR2), now that the state is saved. Such a handler may exit the process."""
        for sig in self.received:
            previous = self._previous.get(sig)
            if sig != signal.SIGINT and callable(previous):
                previous(int(sig), None)

    def reason(self) -> str:
        """``"SIGTERM"``, ``"SIGINT+SIGUSR1"``, ... or ``"another rank"`` when only the vote said stop."""
        return "+".join(s.name for s in self.received) or "another rank"


class StopVote:
    """Whether every rank stops now: any rank's local request, summed over ranks one step late.

    Call once per step on every rank. Step ``k`` starts an asynchronous all-reduce of the local flag and
    step ``k + 1`` reads it (by then it is long done): no rank stalls, and all ranks read the same sum at
    the same step. One process: the local flag, at once.
    """

    def __init__(self, info: DistInfo) -> None:
        self.info = info
        self._pending: tuple[Any, torch.Tensor, torch.cuda.Event | None] | None = None

    def __call__(self, local: bool) -> bool:
        if not self.info.distributed:
            return local
        if self._pending is not None and self._read() > 0:
            return True
        self._start(local)
        return False

    def _start(self, local: bool) -> None:
        flag = torch.full((1,), float(local), device=self.info.device)  # a fill: no host-to-device copy
        work = dist.all_reduce(flag, async_op=True)
        event = None
        if flag.is_cuda:  # copy to the host behind the all-reduce; only that is waited for next step
            work.wait()
            host = torch.empty(1, pin_memory=True)
            host.copy_(flag, non_blocking=True)
            event = torch.cuda.Event()
            event.record()
            flag, work = host, None
        self._pending = (work, flag, event)

    def _read(self) -> float:
        work, flag, event = self._pending
        self._pending = None
        if work is not None:
            work.wait()
        if event is not None:
            event.synchronize()
        return float(flag[0])

    def close(self) -> None:
        """Complete the last all-reduce (call before the process group goes away)."""
        if self._pending is not None:
            self._read()


def stop_message(reason: str, latest: str, step: int, interrupted: bool) -> str:
    """The one line printed when training stops early."""
    what = "interrupted (Ctrl-C)" if interrupted else f"stopped ({reason})"
    return (f"[i2sb] {what} at step {step}: saved {latest}; run the same command again (same run_dir) "
            f"to resume from it")
