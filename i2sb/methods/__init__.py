"""What is trained: the methods the trainer can run, by the name of ``cfg.method``.

* ``i2sb`` -- the bridge (Algorithm 1), :mod:`.bridge`;
* ``ddpm``, ``palette`` -- the baselines' eps-prediction losses, :mod:`.eps`;
* :mod:`.base` -- boundary pairs, the masked regression loss, the :class:`Method` interface.
"""

from __future__ import annotations

from collections.abc import Callable

from ..config import ConfigError, TaskConfig
from .base import Method, Pair, make_pair, regression_loss, task_degradation
from .bridge import BridgeMethod
from .eps import EpsMethod, ddpm_method, palette_method

METHODS: dict[str, Callable[[TaskConfig, float], Method]] = {"i2sb": BridgeMethod, "ddpm": ddpm_method,
                                                           "palette": palette_method}


def build_method(name: str, task: TaskConfig, t_power: float = 1.0) -> Method:
    """The method ``name`` (registry :data:`METHODS`) for ``task``, its training steps drawn with ``t_power``."""
    if name not in METHODS:
        raise ConfigError(f"config key 'method': unknown method '{name}'; valid: {', '.join(METHODS)}")
    return METHODS[name](task, t_power)


__all__ = ["METHODS", "BridgeMethod", "EpsMethod", "Method", "Pair", "build_method", "make_pair", "regression_loss",
           "task_degradation"]
