# SPDX-License-Identifier: Apache-2.0
"""Downscaling samples whose coarse inputs are forecasts: CorrDiff trained on what it will receive.

A downscaler trained on analyses meets, at a 3-day lead, coarse inputs that
carry forecast errors it never saw. Here the coarse data are forecasts
``(time, lead_time, y, x)`` (``time`` the initial time, ``lead_time`` the
lead: timedeltas, or hours as numbers), or a forecast in WeatherBench 2's
layout such as the ``forecasts.zarr`` of ``climax evaluate
eval.save_forecasts=true``, on the coarse grid or on the fine one (then
coarsened by ``factor``, as analyses are); the fine data are the analyses. A sample is one
(initial time, lead) pair whose valid time ``time + lead_time`` the fine data
have: its input is the forecast, its target the analysis at the valid time,
and its ``lead_time_label`` the lead's position in ``leads``, the label a
lead-time-aware net (``model=lt_aware_regression``, upstream's GEFS → HRRR
convention) is told.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
import xarray as xr

from ..errors import ConfigError, UnknownName
from .data import CoarseFineDataset
from .domain import Domain

#: The lead-time label of a sample that another run's nets downscale (:meth:`ForecastCoarseFineDataset.label_as_trained`).
UNLABELLED = -1


def leads_in_hours(coarse: xr.Dataset) -> np.ndarray:
    """The forecasts' leads in hours (``lead_time`` as timedeltas, or as numbers of hours)."""
    leads = coarse["lead_time"].values
    if np.issubdtype(leads.dtype, np.timedelta64):
        return leads / np.timedelta64(1, "h")
    return leads.astype(float)


def lead_time_labels(domain: Domain, hours: Sequence[float]) -> torch.Tensor | None:
    """The nets' ``lead_time_label`` ``[N]`` of each forecast lead (``hours``): its position in the
    leads the CorrDiff run was trained on (``domain.lead_hours``); ``None`` for a run trained without.

    Raises
    ------
    ConfigError
        A lead the run was not trained on, naming it and the trained leads.
    """
    if domain.lead_hours is None:
        return None
    hours = [float(h) for h in hours]
    untrained = sorted({h for h in hours if h not in domain.lead_hours})
    if untrained:
        raise ConfigError(
            f"lead {untrained} h: the CorrDiff run was trained on forecasts at leads {domain.lead_hours} h; "
            "downscale those leads, or train on forecasts at these"
        )
    return torch.tensor([domain.lead_hours.index(h) for h in hours])


class ForecastCoarseFineDataset(CoarseFineDataset):
    """Forecasts at given leads as the coarse inputs, analyses at their valid times as the targets.

    Parameters
    ----------
    fine : xr.Dataset, path, glob or list of paths
        The analyses on the fine grid, holding ``output_variables``.
    output_variables : sequence of str
        Fine target channels.
    coarse : xr.Dataset, path, glob or list of paths
        The forecasts: ``input_variables`` with dimensions ``(time, lead_time, y, x)``, on the
        coarse grid, or on the fine grid to be coarsened by ``factor`` (an area mean, as
        :class:`.data.CoarseFineDataset` coarsens analyses).
    leads : sequence of float, optional
        The leads (hours) to use, in label order: the lead ``leads[k]`` has label ``k``
        (default: every lead of the file, in its order).
    **kwargs
        The rest of :class:`.data.CoarseFineDataset`'s arguments (``input_variables``,
        ``factor``, ``invariants``, ``time_range`` of the valid times, ``stats``, ...).

    Attributes
    ----------
    times : np.ndarray
        The samples' valid times.
    leads : list of float
        The leads, in label order.
    sample_lead_hours, lead_time_labels : np.ndarray
        Each sample's lead (hours) and its label.
    sample_names : list of str
        ``INIT+LEADh`` per sample (``generation.times`` may name them).
    """

    def __init__(self, fine, output_variables: Sequence[str], coarse, leads: Sequence[float] | None = None, **kwargs):
        if coarse is None:
            raise ConfigError("dataset.coarse=null: forecast inputs need the forecasts' file (time, lead_time, y, x)")
        self.leads_asked = None if leads is None else [float(h) for h in leads]
        super().__init__(fine, output_variables, coarse=coarse, **kwargs)

    def _pair_times(self, fine_ds: xr.Dataset, coarse_ds: xr.Dataset) -> np.ndarray:
        """The (initial time, lead) pairs whose valid time the fine data have; sets the indices that
        read them. Returns the samples' valid times.

        Raises
        ------
        ConfigError, UnknownName
            Forecasts without ``lead_time``; an asked lead the file lacks; no pair at all.
        """
        if "lead_time" not in coarse_ds.dims:
            raise ConfigError(
                f"dataset.coarse={self.sources['coarse']}: no lead_time (or prediction_timedelta) dimension; "
                "forecast inputs are (time, lead_time, y, x)"
            )
        in_file = [float(h) for h in leads_in_hours(coarse_ds)]
        self.leads = self.leads_asked if self.leads_asked is not None else in_file
        missing = [h for h in self.leads if h not in in_file]
        if missing:
            raise UnknownName(f"dataset.leads {missing}: the forecasts have leads {in_file} (hours)")
        fine_index = {t: i for i, t in enumerate(pd.to_datetime(fine_ds["time"].values))}
        inits = pd.to_datetime(coarse_ds["time"].values)
        rows = []  # (coarse time index, coarse lead index, label, fine index)
        for i, init in enumerate(inits):
            for label, hours in enumerate(self.leads):
                j = fine_index.get(init + pd.Timedelta(hours=hours))
                if j is not None:
                    rows.append((i, in_file.index(hours), label, j))
        if not rows:
            raise UnknownName("no forecast's valid time (time + lead_time) is a time of the fine data")
        self._coarse_time, self._coarse_lead, labels, self._fine_time = (np.array(c) for c in zip(*rows))
        self.lead_time_labels = labels
        self.sample_lead_hours = np.array([self.leads[k] for k in labels])
        self.sample_names = [
            f"{inits[i]:%Y-%m-%dT%H}+{self.leads[k]:03.0f}h" for i, k in zip(self._coarse_time, labels)
        ]
        return fine_ds["time"].values[self._fine_time]

    def _make_domain(self, *args):
        """The :class:`.domain.Domain` of these data, recording the leads in label order (saved with
        the run, so that a forecast is downscaled with its lead's label)."""
        domain = super()._make_domain(*args)
        domain.lead_hours = list(self.leads)
        return domain

    def input_values(self, index: int) -> np.ndarray:
        """The forecast ``[C_in, h, w]`` of sample ``index`` as stored (``[C_in, H, W]`` when given
        on the fine grid, to be coarsened)."""
        coarse = self._datasets()[1].isel(time=self._coarse_time[index], lead_time=self._coarse_lead[index])
        return np.stack([coarse[v].values for v in self.input_variables])

    def _fine_time_index(self, index: int) -> int:
        """The analysis at sample ``index``'s valid time."""
        return int(self._fine_time[index])

    def label_as_trained(self, trained: Domain, indices: Sequence[int] | None = None) -> None:
        """Label each sample by its lead's position in the leads the ``trained`` run was trained on
        (:attr:`.domain.Domain.lead_hours`), the labels its nets were told; a run trained on analyses
        (no leads) gets samples without labels.

        Parameters
        ----------
        trained : Domain
            The run's.
        indices : sequence of int, optional
            The samples its nets will downscale (default all); the others keep no label, and
            reading one is refused (another pair of nets takes them: :mod:`.nets_by_lead`).

        Raises
        ------
        ConfigError
            A lead of these samples that the run was not trained on, naming it and the trained leads.
        """
        indices = np.arange(len(self)) if indices is None else np.asarray(indices, dtype=int)
        labels = lead_time_labels(trained, self.sample_lead_hours[indices])
        if labels is None:
            self.lead_time_labels = None
            return
        self.lead_time_labels = np.full(len(self), UNLABELLED)
        self.lead_time_labels[indices] = labels.numpy()

    def __getitem__(self, index: int) -> dict:
        sample = super().__getitem__(index)
        if self.lead_time_labels is not None:
            label = int(self.lead_time_labels[index])
            if label == UNLABELLED:
                raise ConfigError(
                    f"sample {self.sample_names[index]}: its lead ({self.sample_lead_hours[index]:g} h) is "
                    "downscaled by another pair of nets, which labels it"
                )
            sample["lead_time_label"] = torch.tensor(label)
        return sample
