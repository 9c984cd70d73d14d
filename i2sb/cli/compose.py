"""The configuration of the config-driven tools (``i2sb-train``, ``i2sb-sample``): ``i2sb/configs`` on the
typed schemas of :mod:`i2sb.config`, registered in Hydra's ConfigStore (``train_schema``, ``sample_schema``)
and first in each tool's defaults, composed with Hydra's compose API (for scripts, tests, and the tools'
checks before any work); errors are one line (:mod:`.hydra_errors`)."""

from __future__ import annotations

from pathlib import Path

from hydra import compose as hydra_compose
from hydra import initialize_config_dir
from hydra.core.config_store import ConfigStore
from hydra.core.global_hydra import GlobalHydra
from hydra.errors import HydraException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from ..config import SampleConfig, TrainConfig
from ..distill.schema import DistillConfig
from .hydra_errors import describe

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
SCHEMAS = {"train_schema": TrainConfig, "sample_schema": SampleConfig,  # name in the defaults -> dataclass
           "distill_schema": DistillConfig}


def register_schemas() -> None:
    """Store the schemas in Hydra's ConfigStore (idempotent), where ``train.yaml``/``sample.yaml`` find them."""
    store = ConfigStore.instance()
    for name, schema in SCHEMAS.items():
        store.store(name=name, node=schema)


def compose(config_name: str, overrides: list[str], with_hydra: bool = False) -> DictConfig:
    """Compose ``configs/{config_name}.yaml`` with Hydra overrides (``with_hydra``: keep the ``hydra`` node);
    a one-line ``ValueError`` naming the key (with the closest valid key for a misspelt one) on failure."""
    register_schemas()
    with initialize_config_dir(config_dir=str(CONFIG_DIR), version_base="1.3"):
        try:
            return hydra_compose(config_name=config_name, overrides=overrides, return_hydra_config=with_hydra)
        except (HydraException, OmegaConfBaseException) as err:
            message = describe(err, overrides, config_groups(with_plugins=True))
    raise ValueError(message)


def group_options(group: str) -> list[str]:
    """The YAML files of a config group, e.g. ``group_options("task")``, ``group_options("hydra/launcher")``."""
    return sorted(p.stem for p in (CONFIG_DIR / group).glob("*.yaml"))


def config_groups(with_plugins: bool = False) -> dict[str, list[str]]:
    """Every config group of ``i2sb/configs`` (``task``, ..., ``hydra/launcher``) -> its options; ``with_plugins``
    (inside a Hydra context) adds the options Hydra and its plugins bring (``hydra/launcher=basic``, ...)."""
    folders = sorted(p for p in CONFIG_DIR.rglob("*") if p.is_dir() and any(p.glob("*.yaml")))
    names = [p.relative_to(CONFIG_DIR).as_posix() for p in folders]
    if not with_plugins:
        return {name: group_options(name) for name in names}
    loader = GlobalHydra.instance().config_loader()
    return {name: sorted(set(loader.get_group_options(name)) | set(group_options(name))) for name in names}
