"""Command-line entry points, one module per tool; each parses its arguments and calls one function of the
layers below, nothing else lives here.

* ``i2sb-train`` (:mod:`.train`) and ``i2sb-sample`` (:mod:`.sample`): Hydra applications (:mod:`.hydra_app`) on the
  config groups of ``i2sb/configs`` (:mod:`.compose`);
* ``i2sb-eval`` (:mod:`.evaluate`), ``i2sb-download``, ``i2sb-export``, ``i2sb-degrade``: ``key=value`` on a
  dataclass schema (:mod:`.keyvalue`), whose ``--help`` lists every key, its default and one example.
"""

from .compose import compose, group_options
from .evaluate import main as eval_main
from .evaluate import run_eval
from .sample import main as sample_main
from .train import main as train_main

__all__ = ["compose", "eval_main", "group_options", "run_eval", "sample_main", "train_main"]
