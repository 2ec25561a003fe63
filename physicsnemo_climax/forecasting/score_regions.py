# SPDX-License-Identifier: Apache-2.0
"""Where scores are averaged: WeatherBench 2's regions, land and sea, user boxes.

A score region is a weight per grid cell: the cell's area (``sin`` of its
upper edge minus ``sin`` of its lower edge, edges half way between
latitudes, the poles at the ends of a global grid as WeatherBench 2 weights,
half a spacing beyond the ends of a regional one) times the region's mask,
normalised to sum 1.

A run that sees part of the globe (a regional run, or any run on a
regional store such as a CDS box) scores its whole domain as ``run_region``,
and a named region only where all of it lies within the domain; regions
that reach beyond it are listed as not scored, regions it has no point in
are left out unless asked for by name. Boxes include their edges and take
longitudes in ``0..360`` (a box may cross 0: ``[35, 75, 347.5, 42.5]``).
Land and sea weight by the fraction of land (``land_sea_mask``) or of sea,
as WeatherBench 2's land regions do.

Not to be confused with the model's :class:`..models.GridRegion` (the patch
selection a regional model reads and predicts): a score region only weights
the points of the scored grid.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

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

    def within(self, domain: ScoreRegion) -> bool:
        """Whether all of this region lies in ``domain`` (a plain box, :func:`grid_extent`)."""
        if self.outside:  # a band's complement reaches both poles
            return domain.lat == (-90.0, 90.0) and domain.lon is None
        if self.lat[0] < domain.lat[0] - 1e-6 or self.lat[1] > domain.lat[1] + 1e-6:
            return False
        if domain.lon is None:
            return True
        if self.lon is None or self.lon[1] - self.lon[0] >= 360:
            return False
        west = domain.lon[0] % 360
        span = (domain.lon[1] - west) % 360
        start, length = (self.lon[0] - west) % 360, (self.lon[1] - self.lon[0]) % 360
        return start + length <= span + 1e-6


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


#: Why a region is not scored.
BEYOND, NO_POINT = "reaches beyond the run's region", "has no point on the grid"


def latitude_edges(lat: np.ndarray) -> np.ndarray:
    """``[H + 1]`` cell edges of a latitude axis sorted south to north: half way between
    latitudes; at each end the pole when it is within one spacing of it (a global grid,
    as WeatherBench 2 weights), else half a spacing beyond the end (a regional grid)."""
    s = np.sort(np.asarray(lat, np.float64))
    if len(s) == 1:
        return np.array([-90.0, 90.0])
    south, north = s[1] - s[0], s[-1] - s[-2]
    first = -90.0 if s[0] - south <= -90.0 else s[0] - south / 2
    last = 90.0 if s[-1] + north >= 90.0 else s[-1] + north / 2
    return np.concatenate([[first], (s[1:] + s[:-1]) / 2, [last]])


def cell_areas(lat: np.ndarray) -> np.ndarray:
    """``[H]`` relative cell areas ``sin(upper) - sin(lower)`` of a latitude axis (any order)."""
    order = np.argsort(lat)
    area = np.diff(np.sin(np.deg2rad(latitude_edges(lat))))
    out = np.empty_like(area)
    out[order] = area
    return out


def grid_extent(lat: np.ndarray, lon: np.ndarray) -> ScoreRegion:
    """The box a regular grid covers: its latitude edges and, unless its longitudes go round
    the globe, the longitudes half a spacing beyond its first and last (``0..360``)."""
    edges = latitude_edges(lat)
    lon = np.asarray(lon, np.float64)
    if len(lon) < 2:
        return ScoreRegion((edges[0], edges[-1]), (lon[0] % 360, lon[0] % 360))
    step = float(np.median(np.diff(lon) % 360))
    if step * len(lon) >= 360 - 1e-6:
        return ScoreRegion((edges[0], edges[-1]))
    return ScoreRegion((edges[0], edges[-1]), ((lon[0] - step / 2) % 360, (lon[-1] + step / 2) % 360))


def region_specs(
    names: Sequence[str], boxes: Mapping[str, Sequence[float]] | None = None, land: bool = False
) -> dict[str, ScoreRegion]:
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
        raise ConfigError(
            f"eval.regions: unknown {unknown}; WeatherBench 2's are {list(WB2_REGIONS)} "
            "(or 'all'); add your own as eval.boxes.NAME=[lat_min,lat_max,lon_min,lon_max]"
        )
    specs = {n: WB2_REGIONS[n] for n in names}
    for name, box in (boxes or {}).items():
        box = [float(v) for v in box]
        if len(box) != 4 or not -90 <= box[0] < box[1] <= 90:
            raise ConfigError(
                f"eval.boxes.{name}={box}: give [lat_min, lat_max, lon_min, lon_max], lat_min < lat_max within -90..90"
            )
        specs[name] = ScoreRegion((box[0], box[1]), (box[2], box[3]))
    if land:
        for n in [n for n in SURFACE_REGIONS if n in names]:
            for surface in ("land", "sea"):
                specs[f"{n}_{surface}"] = ScoreRegion(
                    WB2_REGIONS[n].lat, WB2_REGIONS[n].lon, surface, WB2_REGIONS[n].outside
                )
    return specs


def region_weights(
    specs: Mapping[str, ScoreRegion],
    lat: np.ndarray,
    lon: np.ndarray,
    land: np.ndarray | None = None,
    rows: np.ndarray | None = None,
    cols: np.ndarray | None = None,
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Normalised weights (float64, summing to 1) of each region on the scored grid.

    Parameters
    ----------
    lat, lon : np.ndarray
        The store's grid, ``[H]``, ``[W]``.
    land : np.ndarray, optional
        ``[H, W]`` land fraction on it.
    rows, cols : np.ndarray, optional
        The scored part of the grid (a regional run's output).

    When the scored part is not the whole globe (``rows``/``cols`` given, or a store
    that is itself regional), ``run_region`` (all of the scored part) is added and a
    region reaching beyond the scored part is skipped rather than scored on a part of itself.

    Returns
    -------
    weights : dict
        Name -> ``[h, w]`` tensor on the scored grid, for the regions that have points.
    skipped : dict
        Name -> why it is not scored (:data:`BEYOND` or :data:`NO_POINT`).
    """
    area = cell_areas(lat)[:, None] * np.ones(len(lon))[None, :]
    extent = grid_extent(lat, lon)
    regional = rows is not None or extent.lat != (-90.0, 90.0) or extent.lon is not None
    rows = np.arange(len(lat)) if rows is None else np.asarray(rows)
    cols = np.arange(len(lon)) if cols is None else np.asarray(cols)
    if regional:
        specs = {"run_region": None, **specs}
    weights, skipped = {}, {}
    for name, spec in specs.items():
        whole = area if spec is None else spec.mask(lat, lon, land) * area
        part = whole[rows][:, cols]
        if part.sum() <= 0:
            skipped[name] = NO_POINT
        elif spec is not None and regional and (part.sum() < whole.sum() * (1 - 1e-9) or not spec.within(extent)):
            skipped[name] = BEYOND
        else:
            weights[name] = torch.from_numpy(part / part.sum())
    return weights, skipped
