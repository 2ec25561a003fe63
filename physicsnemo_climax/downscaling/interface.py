# SPDX-License-Identifier: Apache-2.0
"""The interface every downscaling dataset implements, and user classes loaded by file.

Training and generation use a dataset through :class:`DownscalingDataset`
only, so any class implementing it can be named in the config as
``dataset.type=path/to/file.py::MyDataset`` (upstream CorrDiff's route):
:func:`load_user_class` imports the file and :func:`check_dataset` checks the
instance, with errors naming the file, the class and what is missing.
"""

from __future__ import annotations

import importlib.util
import inspect
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np

from ..engine.checks import ConfigError
from .domain import Domain

#: Methods a dataset class must define, and attributes its instances must have.
REQUIRED_METHODS = ("__len__", "__getitem__", "fine_fields")
REQUIRED_ATTRIBUTES = ("domain", "times")


@runtime_checkable
class DownscalingDataset(Protocol):
    """What training and generation need of a dataset.

    Attributes
    ----------
    domain : Domain
        Channels, statistics, factor and fine grid ``(H, W)``; builds and
        normalizes inputs (:meth:`Domain.make_input`) and targets.
    times : np.ndarray
        ``[N]`` the time of each sample (``datetime64``), used by
        ``generation.times`` and written to the output file.

    Methods
    -------
    __len__()
        ``N``.
    __getitem__(i)
        ``{"input": Tensor [C_in + C_inv, H, W], "target": Tensor [C_out, H, W],
        "index": i}``, normalized (``domain.make_input``,
        ``domain.normalize_output``); optionally ``"lead_time_label": int``.
    fine_fields(i)
        ``np.ndarray [C_out, H, W]``: the target of sample ``i`` in physical units.
    """

    domain: Domain
    times: np.ndarray

    def __len__(self) -> int: ...

    def __getitem__(self, index: int) -> dict: ...

    def fine_fields(self, index: int) -> np.ndarray: ...


def load_user_class(spec: str) -> type:
    """The class ``spec = "path/to/file.py::ClassName"`` names.

    Raises
    ------
    ConfigError
        Naming the file or the class when either is missing, or the methods of
        :data:`REQUIRED_METHODS` the class lacks.
    """
    file, _, name = spec.partition("::")
    path = Path(file)
    if not name or path.suffix != ".py":
        raise ConfigError(
            f"dataset.type={spec!r}: give hrrr_mini, coarse_fine, cwb, gefs_hrrr or path/to/file.py::ClassName"
        )
    if not path.is_file():
        raise ConfigError(f"dataset.type={spec!r}: no such file {path}")
    module_spec = importlib.util.spec_from_file_location(f"climax_user_dataset_{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    cls = getattr(module, name, None)
    if not inspect.isclass(cls):
        raise ConfigError(f"dataset.type={spec!r}: {path} defines no class {name}")
    missing = [m for m in REQUIRED_METHODS if not callable(getattr(cls, m, None))]
    if missing:
        raise ConfigError(
            f"dataset.type={spec!r}: class {name} of {path} lacks {missing} of the "
            "DownscalingDataset interface (docs/corrdiff.md)"
        )
    return cls


def build_user_dataset(spec: str, args: dict, stats: dict | None = None):
    """An instance of the user class ``spec`` from the other ``dataset`` keys, checked.

    The keys of ``args["args"]`` (``dataset=custom``: ``+dataset.args.name=...``) are passed as keywords too.

    ``stats`` (the training run's statistics, for validation and generation)
    is passed as the ``stats`` argument when the class takes one.
    """
    cls = load_user_class(spec)
    args = {**{k: v for k, v in args.items() if k != "args"}, **(args.get("args") or {})}
    if stats is not None and "stats" in inspect.signature(cls).parameters:
        args = {**args, "stats": stats}
    return check_dataset(cls(**args), spec)


def check_dataset(dataset, origin: str):
    """``dataset`` if it implements :class:`DownscalingDataset` and its first sample fits its domain.

    Raises
    ------
    ConfigError
        Naming ``origin`` and what is missing or of the wrong shape.
    """
    missing = [a for a in REQUIRED_ATTRIBUTES if not hasattr(dataset, a)]
    if missing:
        raise ConfigError(
            f"dataset.type={origin!r}: the instance has no {missing} (DownscalingDataset interface, docs/corrdiff.md)"
        )
    if not isinstance(dataset.domain, Domain):
        raise ConfigError(f"dataset.type={origin!r}: domain is a {type(dataset.domain).__name__}, not a Domain")
    if len(dataset) != len(dataset.times):
        raise ConfigError(f"dataset.type={origin!r}: {len(dataset)} samples but {len(dataset.times)} times")
    if len(dataset) == 0:
        raise ConfigError(f"dataset.type={origin!r}: no samples")
    sample, dom = dataset[0], dataset.domain
    want = {"input": (len(dom.input_channels), *dom.shape), "target": (len(dom.output_variables), *dom.shape)}
    for key, shape in want.items():
        got = tuple(sample[key].shape) if isinstance(sample, dict) and key in sample else None
        if got != shape:
            raise ConfigError(f"dataset.type={origin!r}: sample 0 {key!r} has shape {got}, the domain needs {shape}")
    return dataset
