# SPDX-License-Identifier: Apache-2.0
"""What a scorecard compares forecasts with besides the truth: the climatology (baseline
and ACC reference), SEEPS thresholds, the score regions and the external forecasts,
built once per evaluation from ``eval`` and ``external``."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from ..data import ShardStore
from ..data.climatology import day_and_hour, hourly_climatology, wb2_climatology
from ..data.formats import is_url
from ..data.store import StoreError
from ..data.units import parse_assumed
from ..errors import ConfigError
from ..models import GridRegion
from .external import EVAL_STATING, ExternalForecast, open_wb2_zarr
from .probabilistic import wind_pairs
from .run import Run
from .score_regions import NO_POINT, region_specs, region_weights
from .score_thresholds import ScoreThresholds, score_thresholds
from .seeps import SeepsReference, seeps_climatology, seeps_from_wb2
from .settings import EvalSettings


class ClimatologyReference:
    """The climatology forecast and ACC reference, on the region.

    ``wb2``: WeatherBench 2's, by day of year and hour of day from the training
    years (or ``years``), smoothed over ``window`` days (:mod:`..data.climatology`);
    a path or URL: a WeatherBench 2 climatology Zarr (regridded when needed);
    ``train_mean``: the training split's time mean (the out-of-sample climatology of
    a climate without seasons, such as the Held–Suarez simulation);
    ``day_of_year``: the scored split's own mean of the valid day of year;
    ``time_mean``: the scored split's own time mean. The last two know the scored
    period (an in-sample, optimistic baseline). A Zarr's fields are brought to the
    run's ``units`` (``assumed``: units of fields without the attribute, ``eval.assume_units``).
    """

    KINDS = ("wb2", "train_mean", "time_mean", "day_of_year")

    def __init__(
        self,
        store: ShardStore,
        split: str,
        variables: list[str],
        region: GridRegion,
        kind: str,
        window: int = 61,
        years=None,
        units: dict | None = None,
        assumed: dict | None = None,
    ):
        self.kind, self.hourly, self.source = str(kind), None, None
        if self.kind not in self.KINDS and not (is_url(self.kind) or Path(self.kind).exists()):
            raise ConfigError(
                f"eval.climatology={kind!r}: choose from {list(self.KINDS)}, or give the path or URL "
                "of a WeatherBench 2 climatology Zarr"
            )
        if self.kind == "wb2":
            span = tuple(int(y) for y in years) if years else None
            self.hourly = hourly_climatology(store, variables, "train", span, window)
        elif self.kind not in self.KINDS:
            self.source, self.kind = self.kind, "wb2_zarr"
            self.dataset = open_wb2_zarr(self.source, "eval.climatology")
            self.hourly = wb2_climatology(
                self.dataset,
                variables,
                store.lat,
                store.lon,
                f"eval.climatology ({self.source})",
                units,
                assumed,
                EVAL_STATING,
            )
        else:
            time_mean = self.kind != "day_of_year"
            fields = store.climatology(
                "train" if self.kind == "train_mean" else split, variables, day_of_year=not time_mean
            )
            self.fields = region.crop(torch.as_tensor(fields))
        self.region = region
        self.times = None if self.kind in ("time_mean", "train_mean") else store.shard_times(split)

    def at(self, valid: list[tuple[int, int]]) -> torch.Tensor:
        """``[1, V, H, W]`` (time mean) or ``[B, V, H, W]`` for the valid ``(shard, time)`` pairs."""
        if self.times is None:
            return self.fields[None]
        stamps = np.array([self.times[s][t] for s, t in valid])
        if self.hourly is not None:
            return self.region.crop(torch.as_tensor(self.hourly.at(stamps)))
        return self.fields[day_and_hour(stamps)[0]]

    def describe(self) -> str:
        """What the scorecard records: the kind, and the Zarr it came from."""
        return self.kind if self.source is None else f"{self.kind}: {self.source}"


@dataclass
class References:
    """What the scored forecasts are compared with, besides the truth.

    Attributes
    ----------
    climatology : ClimatologyReference
    seeps : SeepsReference or None
        SEEPS thresholds and dry fraction (:mod:`.seeps`).
    externals : dict
        Name -> :class:`.external.ExternalForecast`.
    regions : dict
        Region name -> ``[h, w]`` weights; ``skipped``: name -> why not.
    region : GridRegion
        The run's (what is scored of the grid).
    times : list of np.ndarray or None
        The split's time stamps per shard (``None``: the store has none).
    winds : dict
        Derived wind speed -> ``(u, v)`` (``eval.wind``; :func:`.probabilistic.wind_pairs`).
    thresholds : ScoreThresholds or None
        Of the Brier and ranked probability scores (``eval.thresholds``, ``eval.quantiles``).
    """

    climatology: ClimatologyReference
    seeps: SeepsReference | None
    externals: dict
    regions: dict
    skipped: dict
    region: GridRegion
    times: list[np.ndarray] | None
    winds: dict = field(default_factory=dict)
    thresholds: ScoreThresholds | None = None

    def thresholds_at(self, valid: list[tuple[int, int]]) -> dict | None:
        """The score thresholds (:meth:`.score_thresholds.ScoreThresholds.at`) at the valid ``(shard, time)`` pairs."""
        if self.thresholds is None:
            return None
        return self.thresholds.at(None if self.times is None else np.array([self.times[s][t] for s, t in valid]))

    def seeps_at(self, valid: list[tuple[int, int]]) -> tuple | None:
        """SEEPS thresholds and dry fraction for the valid ``(shard, time)`` pairs, on the region."""
        if self.seeps is None:
            return None
        stamps = None if self.times is None else np.array([self.times[s][t] for s, t in valid])
        return self.seeps.at(stamps, self.region.crop)

    @classmethod
    def build(
        cls,
        e: EvalSettings,
        external: Mapping[str, str] | None,
        run: Run,
        store: ShardStore,
        scored: list[str],
        region: GridRegion,
    ) -> References:
        """The references the evaluation settings ``e`` and the ``external`` forecasts
        (name -> path or URL) ask for."""
        units = run.info.units
        assumed = parse_assumed(e.assume_units, "eval.assume_units")
        climatology = ClimatologyReference(
            store,
            e.split,
            scored,
            region,
            kind=e.climatology,
            window=e.climatology_window,
            years=e.climatology_years,
            units=units,
            assumed=assumed,
        )
        seeps = None
        if climatology.source is not None:  # a WB2 climatology brings its SEEPS references, if any
            seeps = seeps_from_wb2(climatology.dataset, scored, units, store.lat, store.lon, climatology.source)
        seeps = seeps or seeps_climatology(store, scored, units)
        rows, cols = (None, None) if region.is_global else (region.rows.numpy(), region.cols.numpy())
        land = land_fraction(store)
        specs = region_specs(list(e.regions), e.boxes, land=land is not None)
        weights, skipped = region_weights(specs, store.lat, store.lon, land, rows, cols)
        if list(e.regions) == ["all"]:  # listed: the regions the run's domain overlaps, and those asked by name
            skipped = {name: why for name, why in skipped.items() if why != NO_POINT}
        externals = {
            name: ExternalForecast(
                name,
                source,
                scored,
                grid=(store.lat, store.lon),
                rows=region.rows.numpy(),
                cols=region.cols.numpy(),
                units=units,
                assumed=assumed,
            )
            for name, source in (external or {}).items()
        }
        try:
            times = store.shard_times(e.split)
        except StoreError:
            times = None
        winds = wind_pairs(scored) if e.wind else {}
        thresholds = score_thresholds(store, scored, winds, region, e.thresholds, e.quantiles, e.climatology_window)
        return cls(climatology, seeps, externals, weights, skipped, region, times, winds, thresholds)


def land_fraction(store: ShardStore) -> np.ndarray | None:
    """The store's ``land_sea_mask`` ``[H, W]`` (fraction of land), or ``None``."""
    if "land_sea_mask" not in store.variables():
        return None
    return np.asarray(store.shards("train")[0].array("land_sea_mask")[0, 0], np.float64)
