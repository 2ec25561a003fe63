# SPDX-License-Identifier: Apache-2.0
"""What a downscaling model needs to know about its data besides the weights.

A :class:`Domain` holds the channel names, the normalization statistics (in
the ``stats.json`` layout of CorrDiff-Mini: ``{group: {variable: {"mean",
"std"}}}`` with groups ``input``, ``output``, ``invariant``), the upscaling
factor, the fine grid and its coordinates, the coarse grid's coordinates and
the invariant fields of a fixed domain. Datasets build their samples with
it, training saves it in the run folder, and generation and the
forecast → downscale pipeline load it from there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from ..errors import DataError, InputError, UnknownName
from ..files import write_atomic, write_netcdf

DOMAIN_FILE = "domain.json"
ARRAYS_FILE = "domain.nc"


def upsampling_matrix(n: int, factor: int) -> np.ndarray:
    """Linear interpolation from ``n`` cell centres to ``n * factor``, ``[n f, n]``.

    Fine centre ``i`` sits at coarse coordinate ``(i + 1/2) / f - 1/2``; beyond
    the outermost coarse centres the line through the two nearest is
    extended (linear extrapolation, as the CorrDiff-Mini reader does), so a
    field linear in space is reproduced exactly up to the borders.
    """
    if n < 2:
        raise DataError(f"need at least 2 coarse cells to interpolate, got {n}")
    src = (np.arange(n * factor) + 0.5) / factor - 0.5
    low = np.clip(np.floor(src).astype(int), 0, n - 2)
    t = src - low
    m = np.zeros((n * factor, n))
    m[np.arange(n * factor), low] = 1 - t
    m[np.arange(n * factor), low + 1] = t
    return m


def upsample(x: np.ndarray, factor: int) -> np.ndarray:
    """Bilinear upsampling with linear extrapolation at the borders, ``[..., h, w] -> [..., h f, w f]``
    (``factor`` 1: the field as it is)."""
    if factor == 1:
        return np.asarray(x, np.float32)
    my, mx = upsampling_matrix(x.shape[-2], factor), upsampling_matrix(x.shape[-1], factor)
    return (my @ np.asarray(x, np.float64) @ mx.T).astype(np.float32)


def degrade(x: np.ndarray, factor: int) -> np.ndarray:
    """Every ``factor``-th point, brought back to the grid bicubically, ``[..., H, W] -> [..., H, W]``.

    Upstream CorrDiff's readers make a field coarser this way (``ds_factor``:
    the CWB target, the GEFS input); they use OpenCV's bicubic resize, this is
    torch's (``a = -0.75``, half-pixel centres, clamped borders). Rows and
    columns past ``H``/``W`` (when ``factor`` does not divide them) are cut.
    """
    if factor <= 1:
        return np.asarray(x, np.float32)
    sub = torch.as_tensor(np.ascontiguousarray(x[..., ::factor, ::factor]), dtype=torch.float32)
    lead, (h, w) = sub.shape[:-2], sub.shape[-2:]
    up = torch.nn.functional.interpolate(
        sub.reshape(1, -1, h, w), size=(h * factor, w * factor), mode="bicubic", align_corners=False
    )
    return up.reshape(*lead, h * factor, w * factor)[..., : x.shape[-2], : x.shape[-1]].numpy()


def stats_arrays(stats: dict, group: str, variables, source: str = "stats") -> tuple[np.ndarray, np.ndarray]:
    """Mean and std ``[C]`` of ``variables`` in ``stats[group]``.

    Raises
    ------
    KeyError
        Naming ``source``, the group and the missing variables.
    """
    table = stats.get(group, {})
    missing = [v for v in variables if v not in table]
    if missing:
        raise UnknownName(f"{source}: no statistics for {missing} in group {group!r} (has {sorted(table)})")
    mean = np.array([table[v]["mean"] for v in variables], dtype=np.float32)
    std = np.array([table[v]["std"] for v in variables], dtype=np.float32)
    if (std <= 0).any():
        raise DataError(f"{source}: zero std for {[v for v, s in zip(variables, std) if s <= 0]} in {group!r}")
    return mean, std


def load_stats(path: str | Path, group: str, variables) -> tuple[np.ndarray, np.ndarray]:
    """:func:`stats_arrays` of a ``stats.json`` file."""
    return stats_arrays(json.loads(Path(path).read_text()), group, variables, str(path))


@dataclass
class Domain:
    """Channels, statistics and grids of a downscaling setup.

    Attributes
    ----------
    input_variables, output_variables, invariant_variables : list of str
        Coarse input channels, fine output channels, fine invariant channels.
    stats : dict
        ``{group: {variable: {"mean", "std"}}}`` in physical units.
    factor : int
        Fine cells per coarse cell along each axis.
    shape : tuple of int
        Fine grid ``(H, W)``.
    lat, lon : np.ndarray, optional
        Fine-grid coordinates ``[H, W]``.
    coarse_lat, coarse_lon : np.ndarray, optional
        Coarse-grid axes ``[h]`` and ``[w]`` (the pipeline interpolates forecasts onto them).
    invariants : np.ndarray, optional
        ``[C_inv, H, W]`` for a fixed domain (CorrDiff-Mini windows move: ``None``).
    units : dict
        ``{group: {variable: units}}`` of the channels whose data carried a ``units``
        attribute (the stats' layout); empty where none did.
    lead_hours : list of float, optional
        The forecast leads (hours) a run on forecasts was trained on, in label order: the lead
        ``lead_hours[k]`` is the nets' ``lead_time_label`` ``k`` (:mod:`.forecast_data`).
    """

    input_variables: list[str]
    output_variables: list[str]
    invariant_variables: list[str]
    stats: dict
    factor: int
    shape: tuple[int, int]
    lat: np.ndarray | None = None
    lon: np.ndarray | None = None
    coarse_lat: np.ndarray | None = None
    coarse_lon: np.ndarray | None = None
    invariants: np.ndarray | None = field(default=None, repr=False)
    units: dict = field(default_factory=dict)
    lead_hours: list[float] | None = None

    def __post_init__(self):
        mean, std = stats_arrays(self.stats, "input", self.input_variables)
        inv = stats_arrays(self.stats, "invariant", self.invariant_variables)
        self.input_mean, self.input_std = np.concatenate([mean, inv[0]]), np.concatenate([std, inv[1]])
        self.output_mean, self.output_std = stats_arrays(self.stats, "output", self.output_variables)

    @property
    def input_channels(self) -> list[str]:
        """Channels of the network input: coarse inputs, then invariants."""
        return self.input_variables + self.invariant_variables

    @property
    def coarse_shape(self) -> tuple[int, int]:
        return self.shape[0] // self.factor, self.shape[1] // self.factor

    def make_input(self, coarse: np.ndarray, invariants: np.ndarray | None = None) -> np.ndarray:
        """Network input from coarse fields in physical units.

        Parameters
        ----------
        coarse : np.ndarray
            ``[..., C_in, h, w]``.
        invariants : np.ndarray, optional
            ``[C_inv, H, W]`` (default: the domain's own).

        Returns
        -------
        np.ndarray
            ``[..., C_in + C_inv, H, W]``, upsampled and normalized, float32.
        """
        if coarse.shape[-3:] != (len(self.input_variables), *self.coarse_shape):
            raise InputError(
                f"coarse input of shape {coarse.shape[-3:]}, expected "
                f"({len(self.input_variables)} channels {self.input_variables}, *{self.coarse_shape})"
            )
        x = upsample(coarse, self.factor)
        if self.invariant_variables:
            inv = self.invariants if invariants is None else invariants
            if inv is None or inv.shape != (len(self.invariant_variables), *self.shape):
                raise InputError(
                    f"invariants {self.invariant_variables} of shape "
                    f"{None if inv is None else inv.shape}, expected {(len(self.invariant_variables), *self.shape)}"
                )
            x = np.concatenate([x, np.broadcast_to(inv, (*x.shape[:-3], *inv.shape)).astype(np.float32)], axis=-3)
        return ((x - self.input_mean[:, None, None]) / self.input_std[:, None, None]).astype(np.float32)

    def normalize_output(self, y: np.ndarray) -> np.ndarray:
        """Physical ``[..., C_out, H, W]`` to normalized."""
        return ((y - self.output_mean[:, None, None]) / self.output_std[:, None, None]).astype(np.float32)

    def denormalize_output(self, y):
        """Normalized ``[..., C_out, H, W]`` (numpy or torch) back to physical units."""
        mean, std = self.output_mean[:, None, None], self.output_std[:, None, None]
        if torch.is_tensor(y):
            mean, std = torch.as_tensor(mean, device=y.device), torch.as_tensor(std, device=y.device)
        return y * std + mean

    def denormalize_input(self, x):
        """Normalized ``[..., C_in + C_inv, H, W]`` back to physical units."""
        mean, std = self.input_mean[:, None, None], self.input_std[:, None, None]
        if torch.is_tensor(x):
            mean, std = torch.as_tensor(mean, device=x.device), torch.as_tensor(std, device=x.device)
        return x * std + mean

    # ------------------------------------------------------------ files
    def save(self, folder: str | Path) -> None:
        """``domain.json`` (names, statistics, factor, shape, units, trained leads) and ``domain.nc``
        (arrays)."""
        folder = Path(folder)
        meta = {
            "input_variables": self.input_variables,
            "output_variables": self.output_variables,
            "invariant_variables": self.invariant_variables,
            "stats": self.stats,
            "factor": self.factor,
            "shape": list(self.shape),
            "units": self.units,
        }
        if self.lead_hours is not None:
            meta["lead_hours"] = [float(h) for h in self.lead_hours]
        arrays = {}
        if self.lat is not None:
            arrays.update(lat=(("y", "x"), self.lat), lon=(("y", "x"), self.lon))
        if self.coarse_lat is not None:
            arrays.update(coarse_lat=("y_lr", self.coarse_lat), coarse_lon=("x_lr", self.coarse_lon))
        if self.invariants is not None:
            arrays.update({v: (("y", "x"), a) for v, a in zip(self.invariant_variables, self.invariants)})
        if arrays:
            write_netcdf(folder / ARRAYS_FILE, xr.Dataset(arrays))
        write_atomic(folder / DOMAIN_FILE, json.dumps(meta, indent=1))

    @classmethod
    def load(cls, folder: str | Path) -> Domain:
        folder = Path(folder)
        path = folder / DOMAIN_FILE
        if not path.exists():
            raise FileNotFoundError(f"{path} is missing: not a downscaling training run folder")
        meta = json.loads(path.read_text())
        arrays = {}
        if (folder / ARRAYS_FILE).exists():
            with xr.open_dataset(folder / ARRAYS_FILE) as ds:
                arrays = {k: ds[k].values for k in ds.data_vars}
        inv = meta["invariant_variables"]
        return cls(
            meta["input_variables"],
            meta["output_variables"],
            inv,
            meta["stats"],
            meta["factor"],
            tuple(meta["shape"]),
            arrays.get("lat"),
            arrays.get("lon"),
            arrays.get("coarse_lat"),
            arrays.get("coarse_lon"),
            np.stack([arrays[v] for v in inv]) if inv and inv[0] in arrays else None,
            meta.get("units", {}),
            meta.get("lead_hours"),
        )


def checkpoint_domain(path: str | Path) -> Domain | None:
    """The :class:`Domain` saved by the training run a checkpoint belongs to: ``path`` a run folder,
    its ``checkpoints/best`` folder, or a file in either; ``None`` when none of them holds one."""
    path = Path(path)
    for folder in (path, path.parent, path.parent.parent):
        if (folder / DOMAIN_FILE).exists():
            return Domain.load(folder)
    return None
