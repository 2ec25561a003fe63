# SPDX-License-Identifier: Apache-2.0
"""The pair of stores of a downscaling run and its samples.

``data.input_root`` holds the coarse input (a climate model), ``data.root``
the fine target (a reanalysis); both are shard stores (``climax data
prepare``). A sample is one valid time both hold (:mod:`.pairing`): the
input fields, normalized with the input store's statistics and bilinearly
interpolated to the target grid (a fixed pair of matrices from
:mod:`..data.regrid`), the target store's constant fields if asked, and the
target fields normalized with the target store's statistics.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from omegaconf import DictConfig

from ..data import streamed
from ..data.regrid import regrid_weights
from ..data.store import ShardStore, StoreError
from ..engine.checks import config_error
from ..errors import ConfigError
from ..models.variables import CONSTANTS
from .pairing import Pairs


@dataclass(frozen=True)
class StorePair:
    """The two stores and what the run reads of them.

    Attributes
    ----------
    input_store, target_store : ShardStore
        ``data.input_root`` (coarse) and ``data.root`` (fine).
    variables : tuple of str
        Inputs read from the input store.
    constants : tuple of str
        Constant fields of the target store given as inputs too (``data.constants``).
    out_variables : tuple of str
        Targets read from the target store.
    statistics : dict
        ``{"input": {name: {"mean", "std"}}, "target": {name: {"mean", "std"}}}``: the input
        store's for ``variables``, the target store's for ``constants`` and ``out_variables``.
    """

    input_store: ShardStore
    target_store: ShardStore
    variables: tuple[str, ...]
    constants: tuple[str, ...]
    out_variables: tuple[str, ...]
    statistics: dict

    @property
    def model_inputs(self) -> list[str]:
        """The channels of a sample's ``x``: the interpolated inputs, then the constants."""
        return [*self.variables, *self.constants]

    def mean_std(self, side: str, names) -> tuple[np.ndarray, np.ndarray]:
        """Means and stds ``[V]`` (float32) of ``names`` on ``side`` (``"input"`` or ``"target"``)."""
        stats = self.statistics[side]
        return tuple(np.array([stats[n][k] for n in names], np.float32) for k in ("mean", "std"))


def store_of(key: str, root) -> ShardStore:
    """The store ``key`` (``data.root``, ``data.input_root``) names, errors naming the key."""
    if root in (None, "???"):
        raise config_error(key, root, "give the folder of a store prepared by `climax data prepare`")
    try:
        return streamed.open_store(root)
    except StoreError as err:
        raise ConfigError(f"{key}: {err}") from err


def store_pair(cfg: DictConfig) -> StorePair:
    """The stores and variables ``cfg.data`` names, checked: variables each store holds, outputs
    default to the target store's non-constant fields, inputs to all of the input store's."""
    data = cfg.data
    source, target = store_of("data.input_root", data.input_root), store_of("data.root", data.root)
    variables = list(data.variables or source.variables())
    constants = list(data.get("constants") or [])
    out_variables = list(data.out_variables or [v for v in target.variables() if v not in CONSTANTS])
    stats: dict = {"input": {}, "target": {}}
    for key, side, store, names in (
        ("data.variables", "input", source, variables),
        ("data.constants", "target", target, constants),
        ("data.out_variables", "target", target, out_variables),
    ):
        try:
            store.check_variables(names)
            stats[side].update(statistics_of(store, names))
        except StoreError as err:
            raise ConfigError(f"{key}: {err}") from err
    return StorePair(source, target, tuple(variables), tuple(constants), tuple(out_variables), stats)


def statistics_of(store: ShardStore, names: list[str]) -> dict:
    """``{name: {"mean": float, "std": float}}`` of the store's normalization statistics."""
    means, stds = store.statistics(names) if names else ([], [])
    return {n: {"mean": float(m), "std": float(s)} for n, m, s in zip(names, means, stds)}


def bilinear_matrices(lat_in, lon_in, lat_out, lon_out) -> tuple[torch.Tensor, torch.Tensor]:
    """Bilinear interpolation as two fixed matrices, ``[H, h]`` and ``[W, w]`` (float32)."""
    w_lat, w_lon = regrid_weights(lat_in, lon_in, lat_out, lon_out, "bilinear")
    return torch.as_tensor(w_lat, dtype=torch.float32), torch.as_tensor(w_lon, dtype=torch.float32)


def interpolate(fields: torch.Tensor, matrices: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """``[..., h, w]`` fields on the target grid, ``[..., H, W]`` (what :func:`..data.regrid.regrid` computes)."""
    w_lat, w_lon = (m.to(fields.device, fields.dtype) for m in matrices)
    return torch.einsum("ij,...jk,lk->...il", w_lat, fields, w_lon)


class PairedFields(torch.utils.data.Dataset):
    """The samples of one split of a :class:`StorePair`.

    Samples
    -------
    ``x`` ``[V_in + C, H, W]``: normalized inputs interpolated to the target grid, then the
    normalized constants; ``coarse`` ``[V_in, h, w]``: the normalized inputs on their own grid
    (for the interpolation baselines); ``y`` ``[V_out, H, W]``: the normalized targets; ``time``:
    the valid time (float64 seconds since 1970). All float32 but ``time``.
    """

    def __init__(self, pair: StorePair, pairs: Pairs):
        self.pair, self.pairs = pair, pairs
        self.input_shards = pair.input_store.shards(pairs.split)
        self.target_shards = pair.target_store.shards(pairs.split)
        st, tt = pair.input_store, pair.target_store
        self.matrices = bilinear_matrices(st.lat, st.lon, tt.lat, tt.lon)
        self.input_norm = pair.mean_std("input", pair.variables)
        self.target_norm = pair.mean_std("target", pair.out_variables)
        self.constants = self._constant_fields()

    def _constant_fields(self) -> torch.Tensor:
        """The normalized constants ``[C, H, W]``, read once (the target store's first step)."""
        names = list(self.pair.constants)
        if not names:
            return torch.zeros(0, *self.pair.target_store.grid)
        mean, std = self.pair.mean_std("target", names)
        fields = self.target_shards[0].read(names, 0)  # stored repeated along time: any step is the field
        return torch.from_numpy((fields - mean[:, None, None]) / std[:, None, None]).float()

    def __len__(self) -> int:
        return len(self.pairs.times)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        (si, ti), (so, to) = self.pairs.input_at[index], self.pairs.target_at[index]
        coarse = normalized(self.input_shards[si].read(list(self.pair.variables), ti), self.input_norm)
        target = normalized(self.target_shards[so].read(list(self.pair.out_variables), to), self.target_norm)
        # normalizing before interpolating is the same: each row of bilinear weights sums to 1
        x = torch.cat([interpolate(coarse, self.matrices), self.constants])
        seconds = self.pairs.times[index].astype("datetime64[s]").astype(np.float64)
        return {"x": x, "coarse": coarse, "y": target, "time": torch.tensor(seconds, dtype=torch.float64)}


def normalized(fields: np.ndarray, norm: tuple[np.ndarray, np.ndarray]) -> torch.Tensor:
    """``(fields - mean) / std`` per variable of ``[V, H, W]`` fields, as float32."""
    mean, std = norm
    return torch.from_numpy((np.asarray(fields, np.float32) - mean[:, None, None]) / std[:, None, None])
