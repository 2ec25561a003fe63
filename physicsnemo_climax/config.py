# SPDX-License-Identifier: Apache-2.0
"""The Hydra config tree (``conf/``), composed with command-line overrides."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from hydra import compose, initialize_config_dir
from omegaconf import DictConfig, OmegaConf


def config_dir() -> Path:
    """``conf/``: inside the installed package, or beside it in a source checkout."""
    package = Path(__file__).resolve().parent
    for candidate in (package / "conf", package.parent / "conf"):
        if (candidate / "config.yaml").exists():
            return candidate
    raise FileNotFoundError(f"no conf/config.yaml in or beside {package}")


def load_config(overrides: Sequence[str] = (), name: str = "config") -> DictConfig:
    """Compose ``conf/{name}.yaml`` with Hydra overrides (``task=pretrain train.steps=10``)."""
    with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
        return compose(config_name=name, overrides=list(overrides))


def load_run_config(run_dir: str | Path, overrides: Sequence[str] = ()) -> DictConfig:
    """A run's saved config with dotted overrides (``eval.leads=[24,72]``)."""
    path = Path(run_dir) / "config.yaml"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: not a training run folder")
    cfg = OmegaConf.merge(OmegaConf.load(path), OmegaConf.from_dotlist(list(overrides)))
    cfg.run_dir = str(run_dir)
    return cfg
