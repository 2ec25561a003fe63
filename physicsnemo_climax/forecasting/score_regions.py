# SPDX-License-Identifier: Apache-2.0
"""Where scores are averaged: WeatherBench 2's regions, land and sea, user boxes.

A score region is a weight per grid cell: the cell's area (``sin`` of its
upper edge minus ``sin`` of its lower edge, edges half way between
latitudes, ``±90`` at the ends, as WeatherBench 2 weights) times the
region's mask, normalised to sum 1. Boxes include their edges and take
longitudes in ``0..360`` (a box may cross 0: ``[35, 75, 347.5, 42.5]``).
Land and sea weight by the fraction of land (``land_sea_mask``) or of sea,
as WeatherBench 2's land regions do.

Not to be confused with the model's :class:`..models.GridRegion` (the patch
selection a regional model reads and predicts): a score region only weights
the points of the scored grid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np
import torch

from ..errors import ConfigError


@dataclass(frozen=True)
class ScoreRegion:
    """A latitude band or box, optionally land or sea only.

    Attributes
    ----------
    lat : (float, float)
        Southern and northern bound, degrees, both included.
    lon : (float, float) or None
        Western and eastern bound in ``0..360`` (west > east crosses 0); ``None``: all.
    surface : {None, "land", "sea"}
    outside : bool
        ``True``: the complement of the latitude band (the extra-tropics).
    """

    lat: tuple[float, float] = (-90.0, 90.0)
    lon: tuple[float, float] | None = None
    surface: str | None = None
    outside: bool = False

    def mask(self, lat: np.ndarray, lon: np.ndarray, land: np.ndarray | None) -> np.ndarray:
        """``[H, W]`` weights in ``0..1`` on the grid ``lat`` ``[H]``, ``lon`` ``[W]``."""
        band = (lat >= self.lat[0]) & (lat <= self.lat[1])
        rows = ~band if self.outside else band
        cols = np.ones(lon.shape, bool)
        if self.lon is not None and self.lon[1] - self.lon[0] < 360:  # [0, 360], [-180, 180]: all
            west, east, x = self.lon[0] % 360, self.lon[1] % 360, lon % 360
            cols = (x >= west) & (x <= east) if west <= east else (x >= west) | (x <= east)
        mask = (rows[:, None] & cols[None, :]).astype(np.float64)
        if self.surface is not None:
            if land is None:
                raise ConfigError(f"a {self.surface} region needs land_sea_mask in the store")
            mask = mask * (land if self.surface == "land" else 1.0 - land)
        return mask


#: WeatherBench 2's standard regions (``scripts/evaluate.py``), by its names.
WB2_REGIONS: dict[str, ScoreRegion] = {
    "global": ScoreRegion(),
    "tropics": ScoreRegion((-20, 20)),
    "extra-tropics": ScoreRegion((-20, 20), outside=True),
    "northern-hemisphere": ScoreRegion((20, 90)),
    "southern-hemisphere": ScoreRegion((-90, -20)),
    "europe": ScoreRegion((35, 75), (347.5, 42.5)),
    "north-america": ScoreRegion((25, 60), (240, 285)),
    "north-atlantic": ScoreRegion((25, 65), (290, 350)),
    "north-pacific": ScoreRegion((25, 60), (145, 230)),
    "east-asia": ScoreRegion((25, 60), (102.5, 150)),
    "ausnz": ScoreRegion((-45, -12.5), (120, 175)),
    "arctic": ScoreRegion((60, 90)),
    "antarctic": ScoreRegion((-90, -60)),
}
#: Regions added when the store has ``land_sea_mask`` (WeatherBench 2 adds the land ones).
SURFACE_REGIONS = ("global", "tropics", "extra-tropics")


def cell_areas(lat: np.ndarray) -> np.ndarray:
    """``[H]`` relative cell areas ``sin(upper) - sin(lower)`` of a latitude axis (any order)."""
    order = np.argsort(lat)
    s = np.asarray(lat, np.float64)[order]
    edges = np.concatenate([[-90.0], (s[1:] + s[:-1]) / 2, [90.0]])
    area = np.diff(np.sin(np.deg2rad(edges)))
    out = np.empty_like(area)
    out[order] = area
    return out


def region_specs(names: Sequence[str], boxes: Mapping[str, Sequence[float]] | None = None,
                 land: bool = False) -> dict[str, ScoreRegion]:
    """The regions to score: ``names`` from :data:`WB2_REGIONS` (``"all"``: every one), the
    user ``boxes`` (name -> ``[lat_min, lat_max, lon_min, lon_max]``), and, with ``land``,
    the land and sea parts of those of ``names`` in :data:`SURFACE_REGIONS`.

    Raises
    ------
    ConfigError
        For an unknown name or a malformed box, naming it.
    """
    names = list(WB2_REGIONS) if list(names) == ["all"] else list(names)
    unknown = [n for n in names if n not in WB2_REGIONS]
    if unknown:
        raise ConfigError(f"eval.regions: unknown {unknown}; WeatherBench 2's are {list(WB2_REGIONS)} "
                          "(or 'all'); add your own as eval.boxes.NAME=[lat_min,lat_max,lon_min,lon_max]")
    specs = {n: WB2_REGIONS[n] for n in names}
    for name, box in (boxes or {}).items():
        box = [float(v) for v in box]
        if len(box) != 4 or not -90 <= box[0] < box[1] <= 90:
            raise ConfigError(f"eval.boxes.{name}={box}: give [lat_min, lat_max, lon_min, lon_max], "
                              "lat_min < lat_max within -90..90")
        specs[name] = ScoreRegion((box[0], box[1]), (box[2], box[3]))
    if land:
        for n in [n for n in SURFACE_REGIONS if n in names]:
            for surface in ("land", "sea"):
                specs[f"{n}_{surface}"] = ScoreRegion(WB2_REGIONS[n].lat, WB2_REGIONS[n].lon, surface,
                                                      WB2_REGIONS[n].outside)
    return specs


def region_weights(specs: Mapping[str, ScoreRegion], lat: np.ndarray, lon: np.ndarray,
                   land: np.ndarray | None = None, rows: np.ndarray | None = None, cols: np.ndarray | None = None,
                   ) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Normalised weights (float64, summing to 1) of each region on the scored grid.

    Parameters
    ----------
    lat, lon : np.ndarray
        The store's grid, ``[H]``, ``[W]``.
    land : np.ndarray, optional
        ``[H, W]`` land fraction on it.
    rows, cols : np.ndarray, optional
        The scored part of the grid (a regional run's output). A region reaching beyond
        it is skipped rather than scored on a part of itself, and ``run_region`` (all of
        the scored part) is added.

    Returns
    -------
    weights : dict
        Name -> ``[h, w]`` tensor on the scored grid, for the regions that have points.
    skipped : dict
        Name -> why it is not scored.
    """
    area = cell_areas(lat)[:, None] * np.ones(len(lon))[None, :]
    regional = rows is not None
    rows = np.arange(len(lat)) if rows is None else np.asarray(rows)
    cols = np.arange(len(lon)) if cols is None else np.asarray(cols)
    if regional:
        specs = {"run_region": None, **specs}
    weights, skipped = {}, {}
    for name, spec in specs.items():
        whole = area if spec is None else spec.mask(lat, lon, land) * area
        part = whole[rows][:, cols]
        if spec is not None and regional and part.sum() < whole.sum() * (1 - 1e-9):
            skipped[name] = "reaches beyond the run's region"
        elif part.sum() <= 0:
            skipped[name] = "has no point on the grid"
        else:
            weights[name] = torch.from_numpy(part / part.sum())
    return weights, skipped
