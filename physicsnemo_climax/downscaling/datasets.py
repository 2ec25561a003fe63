# SPDX-License-Identifier: Apache-2.0
"""The dataset a config names (``dataset.type``), and the data a CorrDiff run validates on.

:func:`build_dataset` is the one dispatcher on ``dataset.type``: ``hrrr_mini``
and ``coarse_fine`` (:mod:`.data`), ``forecast_coarse_fine``
(:mod:`.forecast_data`), ``cwb`` and ``gefs_hrrr`` (upstream's layouts), or a
user class (:mod:`.interface`). :func:`validation_spec` and
:func:`split_holdout` give the validation data: ``validation``'s, or the last
samples held out of training.
"""

from __future__ import annotations

import torch
from omegaconf import DictConfig, OmegaConf

from ..errors import ConfigError
from .cwb import CWBDataset
from .data import CoarseFineDataset, HRRRMiniDataset
from .forecast_data import ForecastCoarseFineDataset
from .gefs_hrrr import GefsHrrrDataset
from .interface import build_user_dataset


def build_dataset(spec: DictConfig, stats: dict | None = None, units: dict | None = None):
    """The dataset ``spec.type`` names: ``hrrr_mini``, ``coarse_fine``, ``forecast_coarse_fine``, ``cwb``,
    ``gefs_hrrr``, or a
    user class ``path/to/file.py::ClassName`` (:class:`.interface.DownscalingDataset`).

    ``stats`` (a training run's statistics) replace the data's own, except for
    ``hrrr_mini``, whose ``stats.json`` is the training run's already (generation
    checks it). ``units`` (the training run's) convert ``coarse_fine`` (and forecast) data in other units.
    """
    args = OmegaConf.to_container(spec, resolve=True)
    kind = args.pop("type")
    if kind == "hrrr_mini":
        return HRRRMiniDataset(
            args["data_path"],
            args["stats_path"],
            input_variables=args.get("input_variables"),
            output_variables=args.get("output_variables"),
            invariant_variables=args.get("invariant_variables") or (),
        )
    readers = {
        "coarse_fine": CoarseFineDataset,
        "forecast_coarse_fine": ForecastCoarseFineDataset,
        "cwb": CWBDataset,
        "gefs_hrrr": GefsHrrrDataset,
    }
    if kind in readers:
        if stats is not None:
            args["stats"] = stats
        if units and kind in ("coarse_fine", "forecast_coarse_fine"):
            args["units"] = units
        return readers[kind](**args)
    if isinstance(kind, str) and "::" in kind:
        return build_user_dataset(kind, args, stats)
    raise ConfigError(
        f"dataset.type={kind!r}: choose hrrr_mini, coarse_fine, forecast_coarse_fine, cwb, gefs_hrrr or "
        "path/to/file.py::ClassName"
    )


class HeldOut(torch.utils.data.Dataset):
    """Samples ``indices`` of a CorrDiff ``dataset``, with its ``domain`` (and its other attributes).

    Parameters
    ----------
    dataset : Dataset
        A dataset of :func:`build_dataset`.
    indices : range
        The samples kept, in the dataset's (time) order.
    """

    def __init__(self, dataset, indices: range):
        self.dataset, self.indices = dataset, indices

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> dict:
        return self.dataset[self.indices[i]]

    def __getattr__(self, name: str):
        return getattr(self.__dict__["dataset"], name)  # domain, times, ...


def split_holdout(dataset, fraction, minimum: int) -> tuple[HeldOut, HeldOut]:
    """The dataset's samples split in time order: the first ones for training, the last
    ``fraction`` for validation (at least one sample; adjacent samples are correlated, so the
    split is a block at the end, not a random draw).

    Raises
    ------
    ConfigError
        Naming ``holdout`` when ``fraction`` is not in (0, 1) or leaves fewer than ``minimum``
        training samples.
    """
    n = len(dataset)
    if isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 < fraction < 1:
        raise ConfigError(f"holdout={fraction!r}: give a fraction in (0, 1), or 0 for no validation")
    held = max(1, round(n * fraction))
    if n - held < minimum:
        raise ConfigError(
            f"holdout={fraction}: holding out {held} of the dataset's {n} samples leaves fewer than "
            f"{minimum} (train.batch_size x ranks) to train on; give a smaller holdout (0: no validation), "
            "or `validation` data"
        )
    return HeldOut(dataset, range(0, n - held)), HeldOut(dataset, range(n - held, n))


def validation_spec(cfg: DictConfig) -> DictConfig | None:
    """``dataset`` with the ``validation`` overrides on top (upstream's convention), or ``None``."""
    if not cfg.get("validation"):
        return None
    return OmegaConf.merge(cfg.dataset, cfg.validation)
