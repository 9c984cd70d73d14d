"""Command-line entry points, one module per tool; each parses its arguments and calls one function of the
layers below, nothing else lives here.

* ``i2sb-train`` (:mod:`.train`) and ``i2sb-sample`` (:mod:`.sample`): Hydra applications (:mod:`.hydra_app`) on the
  config groups of ``i2sb/configs`` (:mod:`.compose`);
* ``i2sb-eval`` (:mod:`.evaluate`), ``i2sb-download``, ``i2sb-export``, ``i2sb-degrade``: ``key=value`` on a
  dataclass schema (:mod:`.keyvalue`), whose ``--help`` lists every key, its default and one example.

The tools' functions below are imported when first used: a tool's ``--help`` imports no torch.
"""

from .compose import compose, group_options  # torch-free (the schemas, Hydra's composition)

__all__ = ["compose", "eval_main", "group_options", "run_eval", "sample_main", "train_main"]


def __getattr__(name: str):
    if name in ("eval_main", "run_eval"):
        from . import evaluate  # lazy: see the module docstring
        return evaluate.run_eval if name == "run_eval" else evaluate.main
    if name == "sample_main":
        from .sample import main  # lazy: see the module docstring
        return main
    if name == "train_main":
        from .train import main  # lazy: see the module docstring
        return main
    raise AttributeError(f"module 'i2sb.cli' has no attribute {name!r}")
