# SPDX-License-Identifier: Apache-2.0
"""Regional forecasting: which patches of a global grid lie in a region.

A region is given as a name in :data:`REGIONS`, a :class:`Region` box, or
flat patch ids; :meth:`ClimaX.resolve_region` turns it, once, into a
:class:`GridRegion` that training, validation, evaluation, forecasts and the
Earth2Studio wrapper carry with the data.

Selection uses the grid's own latitude and longitude values, so it is right
whether latitudes are stored north-to-south or south-to-north and whether
longitudes run over ``[0, 360)`` or ``[-180, 180)``. The region keeps the
grid's row order; longitudes are ordered eastwards from ``lon_min``, so a
region across the prime (or any) meridian comes out contiguous.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace

import torch

from ..errors import ConfigError


@dataclass(frozen=True)
class Region:
    """A latitude-longitude box in degrees; ``lon_min > lon_max`` wraps eastwards."""

    lat_min: float
    lat_max: float
    lon_min: float
    lon_max: float


#: The regions of the ClimaX paper's regional forecasting experiments.
REGIONS: dict[str, Region] = {
    "NorthAmerica": Region(15, 65, 220, 300),
    "SouthAmerica": Region(-55, 20, 270, 330),
    "Europe": Region(30, 65, 0, 40),
    "SouthAsia": Region(-15, 45, 25, 110),
    "EastAsia": Region(5, 65, 70, 150),
    "Australia": Region(-50, 10, 100, 180),
    "Global": Region(-90, 90, 0, 360),
}


@dataclass(frozen=True)
class PatchSelection:
    """A rectangular block of patches: patch rows and columns, in output order.

    Parameters
    ----------
    rows, cols : tuple of int
        Patch-row and patch-column indices on the full patch grid.
    grid_w : int
        Patch columns of the full grid.
    """

    rows: tuple[int, ...]
    cols: tuple[int, ...]
    grid_w: int

    @property
    def grid(self) -> tuple[int, int]:
        """Patch grid ``(h, w)`` of the region."""
        return len(self.rows), len(self.cols)

    def patch_ids(self) -> torch.Tensor:
        """Flat ids on the full grid, row-major over the region, ``[h * w]``."""
        rows, cols = torch.tensor(self.rows), torch.tensor(self.cols)
        return (rows[:, None] * self.grid_w + cols[None, :]).flatten()

    def pixel_index(self, patch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Grid-cell row and column indices covered by the region."""
        offsets = torch.arange(patch_size)
        rows = (torch.tensor(self.rows)[:, None] * patch_size + offsets).flatten()
        cols = (torch.tensor(self.cols)[:, None] * patch_size + offsets).flatten()
        return rows, cols

    @classmethod
    def from_patch_ids(cls, ids: torch.Tensor, grid: tuple[int, int]) -> PatchSelection:
        """Selection from explicit flat patch ids forming a row-major rectangle."""
        ids = torch.as_tensor(ids).flatten().long().cpu()
        h, w = grid
        if ids.numel() == 0 or ids.min() < 0 or ids.max() >= h * w:
            raise ConfigError(f"patch ids must lie in [0, {h * w}) for a {h}x{w} patch grid")
        rows = list(dict.fromkeys((ids // w).tolist()))
        cols = list(dict.fromkeys((ids % w).tolist()))
        selection = cls(tuple(rows), tuple(cols), w)
        if not torch.equal(selection.patch_ids(), ids):
            raise ConfigError(f"patch ids must form a rectangle listed row by row (rows {rows}, columns {cols})")
        return selection


def select_patches(region: Region, lat: torch.Tensor, lon: torch.Tensor, patch_size: int) -> PatchSelection:
    """Patches whose centre lies in ``region``.

    Parameters
    ----------
    region : Region
        The box.
    lat : torch.Tensor
        Grid-cell latitudes ``[H]``, either order.
    lon : torch.Tensor
        Grid-cell longitudes ``[W]``.
    patch_size : int
        ``p``.
    """
    p = patch_size
    lat_c = lat.double().reshape(-1, p).mean(dim=1)
    radians = torch.deg2rad(lon.double()).reshape(-1, p)
    lon_c = torch.rad2deg(torch.atan2(radians.sin().mean(1), radians.cos().mean(1)))

    rows = torch.nonzero((lat_c >= region.lat_min) & (lat_c <= region.lat_max)).flatten()
    span = region.lon_max - region.lon_min
    east = (lon_c - region.lon_min) % 360.0
    if span % 360 == 0 and span != 0:
        inside = torch.ones_like(east, dtype=torch.bool)
    else:
        inside = east <= span % 360
    cols = torch.nonzero(inside).flatten()
    cols = cols[torch.argsort(east[cols], stable=True)]
    if rows.numel() == 0 or cols.numel() == 0:
        raise ConfigError(f"{region} contains no patch centre of this grid")
    return PatchSelection(tuple(rows.tolist()), tuple(cols.tolist()), lon.numel() // p)


@dataclass(frozen=True, eq=False)
class GridRegion:
    """A region resolved on one model grid: the patches the model reads, and the
    grid cells and coordinates of its output.

    Build it with :meth:`ClimaX.resolve_region`; pass it to the model as
    ``region=``, crop targets, truth and baselines with :meth:`crop`, weight
    by :attr:`lat`, label output with :attr:`lat` / :attr:`lon`.

    Attributes
    ----------
    spec : str, list of float, dict or None
        The region as configured, JSON-ready (what ``run.json`` records): a
        name, a box ``[lat_min, lat_max, lon_min, lon_max]``,
        ``{"patch_ids": [...]}``, or ``None`` for the whole grid.
    patches : PatchSelection or None
        ``None``: the whole grid.
    rows, cols : torch.Tensor
        Grid-cell row and column indices of the output, ``[h]``, ``[w]``.
    lat, lon : torch.Tensor
        Their latitudes and longitudes, float64 degrees, ``[h]``, ``[w]``.
    patch_ids : torch.Tensor or None
        Flat ids of the patches, row-major over the region, ``[h w / p^2]``.
    """

    spec: object
    patches: PatchSelection | None
    rows: torch.Tensor
    cols: torch.Tensor
    lat: torch.Tensor
    lon: torch.Tensor
    patch_ids: torch.Tensor | None = None

    @classmethod
    def on_grid(
        cls, spec, patches: PatchSelection | None, lat: torch.Tensor, lon: torch.Tensor, patch_size: int
    ) -> GridRegion:
        """The region of ``patches`` on the grid ``lat`` ``[H]``, ``lon`` ``[W]``."""
        if patches is None:
            return cls(spec_json(spec), None, torch.arange(lat.numel()), torch.arange(lon.numel()), lat, lon)
        rows, cols = patches.pixel_index(patch_size)
        return cls(spec_json(spec), patches, rows, cols, lat[rows], lon[cols], patches.patch_ids())

    def to(self, device) -> GridRegion:
        """The same region with its index and coordinate tensors on ``device`` (no copy per use)."""
        moved = {k: getattr(self, k).to(device) for k in ("rows", "cols", "lat", "lon")}
        ids = None if self.patch_ids is None else self.patch_ids.to(device)
        return replace(self, patch_ids=ids, **moved)

    @property
    def is_global(self) -> bool:
        return self.patches is None

    @property
    def shape(self) -> tuple[int, int]:
        """Output grid ``(h, w)``."""
        return self.rows.numel(), self.cols.numel()

    def crop(self, field: torch.Tensor) -> torch.Tensor:
        """``field[..., rows, cols]`` of a ``[..., H, W]`` tensor (itself when global)."""
        if self.patches is None:
            return field
        return field[..., self.rows.to(field.device), :][..., self.cols.to(field.device)]


def spec_json(spec) -> object:
    """A region spec as plain JSON: name, box list, ``{"patch_ids": [...]}`` or ``None``."""
    if spec is None or isinstance(spec, str):
        return spec
    if isinstance(spec, Region):
        return [spec.lat_min, spec.lat_max, spec.lon_min, spec.lon_max]
    if isinstance(spec, torch.Tensor):
        return {"patch_ids": spec.flatten().tolist()}
    if isinstance(spec, PatchSelection):
        return {"patch_ids": spec.patch_ids().tolist()}
    if isinstance(spec, Mapping):
        return {"patch_ids": [int(i) for i in spec["patch_ids"]]}
    return [float(v) for v in spec]
