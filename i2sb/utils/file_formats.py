"""The names and versions of the files i2sb writes and reads, in one place below both the writers and readers.

Plain constants, no torch: ``i2sb.training`` writes run directories and ``i2sb.restoration`` reads them (the
writer must not depend on the reader), ``i2sb-export`` writes model folders that ``i2sb.load`` reads, and
``i2sb-download`` fetches the authors' files that :mod:`i2sb.restoration.authors` reads.

Run directory (``i2sb-train``): ``latest.pt`` (a dict with ``"format": CHECKPOINT_FORMAT``, ``"version":
CHECKPOINT_VERSION``; its keys are listed in :mod:`i2sb.restoration.checkpoints`), ``config.yaml``,
``metrics.jsonl``. Model folder (``i2sb-export``): ``config.json`` (``"format": MODEL_FORMAT``),
``model.safetensors`` and a model card ``README.md``. The authors' ``results/NAME/``: ``latest.pt`` and
``options.pkl``.
"""

from __future__ import annotations

# ---------------------------------------------------------------- a training run (i2sb-train)
CHECKPOINT_FORMAT = "i2sb-checkpoint"
CHECKPOINT_VERSION = 1
LATEST = "latest.pt"  # the newest checkpoint of a run; the authors name theirs the same
RUN_CONFIG = "config.yaml"  # the resolved training config, written when a run starts
METRICS = "metrics.jsonl"  # one JSON record per logged step and per validation

# ---------------------------------------------------------------- an exported model folder (i2sb-export)
MODEL_FORMAT = "i2sb-model"
MODEL_VERSION = 1
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
CARD_FILE = "README.md"

# ---------------------------------------------------------------- the authors' results/NAME/ (NVlabs/I2SB)
OPTIONS_FILE = "options.pkl"  # a pickled argparse.Namespace, read by a restricted unpickler
