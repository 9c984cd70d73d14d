"""A model's validation record: PSNR (fidelity) and SWD (realism) at each NFE its training validation tried, and
the NFE each preference picks from it (what ``i2sb-sample`` uses when ``nfe`` is not given).

Perception and distortion pull apart (Blau & Michaeli, CVPR 2018): the posterior mean E[x0 | x1] (NFE 1 of the
bridge, nearly) has the best PSNR and looks smooth; samples of p(x0 | x1) (more NFE) look like photos and lose
PSNR. ``fidelity`` picks the NFE of the best PSNR, ``realism`` the NFE of the lowest SWD; among NFEs within
:data:`TOLERANCE` of the best (as good, to what a validation batch can tell), the fewest.

The record is plain data (ints, floats, lists, dicts): it travels in ``latest.pt`` (``torch.load(weights_only=
True)``) and in an exported ``config.json``::

    {"step": 600, "images": 8,
     "input": {"psnr": 24.5, "swd": 60.2},                # the degraded input against the clean images
     "nfe": [{"nfe": 1, "psnr": 26.1, "swd": 71.0}, ...]}  # one entry per NFE tried
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

PREFERENCES = ("fidelity", "realism")  # i2sb-sample's prefer=
METRIC = {"fidelity": "psnr", "realism": "swd"}  # what each preference optimises
BETTER = {"psnr": max, "swd": min}
TOLERANCE = {"psnr": 0.01, "swd": 0.1}  # dB; SWD x 1e3 units: differences this small choose the cheaper NFE


@dataclass(frozen=True)
class NFEScore:
    """Validation scores of one NFE: mean PSNR [dB] and SWD x 1e3 (None if not measured)."""

    nfe: int
    psnr: float
    swd: float | None = None


@dataclass(frozen=True)
class ValidationRecord:
    """What a model's validation measured (see the module docstring); ``scores`` sorted by NFE."""

    step: int
    images: int
    scores: tuple[NFEScore, ...]
    input_psnr: float | None = None
    input_swd: float | None = None

    def best(self, prefer: str) -> NFEScore | None:
        """The NFE ``prefer`` picks (the fewest within :data:`TOLERANCE` of the best); None if the record lacks
        its metric."""
        if prefer not in PREFERENCES:
            raise ValueError(f"prefer must be one of {', '.join(PREFERENCES)}, got {prefer!r}")
        metric = METRIC[prefer]
        measured = [s for s in self.scores if _finite(getattr(s, metric))]
        if not measured:
            return None
        value = BETTER[metric](getattr(s, metric) for s in measured)
        close = [s for s in measured if abs(getattr(s, metric) - value) <= TOLERANCE[metric]]
        return min(close, key=lambda s: s.nfe)

    def reason(self, prefer: str) -> str:
        """Why ``prefer`` picks its NFE, in words: the values of every NFE tried."""
        metric = METRIC[prefer]
        unit = " dB" if metric == "psnr" else ""
        best = self.best(prefer)
        tried = ", ".join(f"NFE {s.nfe} {_text(getattr(s, metric))}" for s in self.scores)
        which = "highest PSNR" if metric == "psnr" else "lowest SWD"
        return (f"{which} in the model's validation (step {self.step}, {self.images} images: {tried}{unit}); "
                f"prefer={prefer} -> NFE {best.nfe}")

    def as_dict(self) -> dict[str, Any]:
        return {"step": self.step, "images": self.images,
                "input": {"psnr": self.input_psnr, "swd": self.input_swd},
                "nfe": [{"nfe": s.nfe, "psnr": s.psnr, "swd": s.swd} for s in self.scores]}

    @classmethod
    def from_dict(cls, data: Any) -> ValidationRecord | None:
        """The record of :meth:`as_dict`; None for no record (an older checkpoint) or one that cannot be read."""
        try:
            scores = tuple(sorted((NFEScore(int(e["nfe"]), _number(e["psnr"]), _number(e.get("swd")))
                                   for e in data["nfe"]), key=lambda s: s.nfe))
            given = data.get("input") or {}
            record = cls(int(data["step"]), int(data["images"]), scores, _number(given.get("psnr")),
                         _number(given.get("swd")))
        except (KeyError, TypeError, ValueError, AttributeError):
            return None
        return record if scores and all(s.nfe >= 1 for s in scores) else None


def _number(value: Any) -> float | None:
    return None if value is None else float(value)


def _finite(value: float | None) -> bool:
    return value is not None and math.isfinite(value)


def _text(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"
