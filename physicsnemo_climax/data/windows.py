# SPDX-License-Identifier: Apache-2.0
"""Time-mean windows after the initial time: the targets of sub-seasonal prediction.

A window ``[start, end)`` (hours after the initial time ``t``) stands for the
mean of the store's states at ``t + start, t + start + step, ..., t + end -
step``: weeks 3-4 of a 6-hourly store (``14D``-``28D``) average the 56 states
from day 14 to day 28 (without day 28 itself, which opens the next window),
as the S2S AI Challenge's two-week means and the ClimaX authors' later S2S
benchmark do. A daily store averages 14 days. Means are computed from the
store when read, never stored: one contiguous slice of each shard's memory map
per sample, so nothing is prepared by hand and a window can change without
preparing again.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError, InputError
from .times import lead_hours

#: The S2S AI Challenge's windows: weeks 3-4 and weeks 5-6 (days after the initial time).
DEFAULT_WINDOWS = (("14D", "28D"), ("28D", "42D"))


@dataclass(frozen=True)
class TimeWindow:
    """The mean over ``[start_hours, end_hours)`` after the initial time.

    The model is told the window by its lead-time input, ``start_hours`` (the
    paper calls weeks 3-4 a lead of two weeks); two windows of one run
    therefore start at different hours.
    """

    start_hours: float
    end_hours: float

    @property
    def label(self) -> str:
        """``"d14-28"``: the window in days (hours when not whole days)."""
        if self.start_hours % 24 == 0 and self.end_hours % 24 == 0:
            return f"d{self.start_hours / 24:g}-{self.end_hours / 24:g}"
        return f"h{self.start_hours:g}-{self.end_hours:g}"

    def steps(self, hours_per_step: float) -> tuple[int, int]:
        """``(first, stop)`` store steps after the initial time: states ``t + first .. t + stop - 1``.

        Raises
        ------
        ConfigError
            When either end is not a multiple of the store's step.
        """
        bounds = []
        for hours in (self.start_hours, self.end_hours):
            ratio = hours / hours_per_step
            if abs(ratio - round(ratio)) > 1e-9:
                raise ConfigError(
                    f"task.windows: window {self.label} ends at {hours:g} h, not a multiple of the "
                    f"store's step of {hours_per_step:g} h"
                )
            bounds.append(int(round(ratio)))
        return bounds[0], bounds[1]


def parse_windows(spec: Sequence, option: str = "task.windows") -> tuple[TimeWindow, ...]:
    """Windows from ``[[start, end], ...]``: hours as numbers (``[336, 672]``) or durations
    (``["14D", "28D"]``), in the order given.

    Raises
    ------
    ConfigError
        Naming ``option`` and the window, for a window that is not a pair, that does not
        start after the initial time or ends before it starts, or two windows with one start
        (the lead input could not tell them apart).
    """
    windows = []
    for item in spec:
        if isinstance(item, str) or not isinstance(item, Sequence) or len(item) != 2:
            raise ConfigError(f"{option}: {item!r} is not a window [start, end], e.g. [14D, 28D]")
        try:
            start, end = (lead_hours(bound) for bound in item)
        except InputError as err:  # naming the bad duration
            raise ConfigError(f"{option}: {list(item)}: {err}") from None
        if start <= 0 or end <= start:
            raise ConfigError(
                f"{option}: window {list(item)} must start after the initial time and end after it starts"
            )
        windows.append(TimeWindow(start, end))
    if not windows:
        raise ConfigError(f"{option}: give at least one window, e.g. [[14D, 28D]]")
    starts = [w.start_hours for w in windows]
    if len(set(starts)) != len(starts):
        raise ConfigError(f"{option}: two windows start at the same hour ({starts}); the lead input tells them apart")
    return tuple(windows)


def window_mean(array: np.ndarray, t: int, first: int, stop: int) -> np.ndarray:
    """The mean of ``array[t + first : t + stop]`` over time (a shard's ``[T, 1, H, W]``
    member, or any ``[T, ...]``), accumulated in float64: ``[...]`` float32."""
    return array[t + first : t + stop].mean(axis=0, dtype=np.float64).astype(np.float32)


def running_window_means(array: np.ndarray, first: int, stop: int) -> np.ndarray:
    """The window mean from every initial time of ``array`` ``[T, ...]`` that has the whole
    window inside it: ``[T - stop + 1, ...]`` float32, by cumulative sums (one pass, float64),
    equal to :func:`window_mean` at each ``t``."""
    sums = np.cumsum(array, axis=0, dtype=np.float64)
    sums = np.concatenate([np.zeros_like(sums[:1]), sums])  # sums[k] = sum of array[:k]
    count = array.shape[0] - stop + 1
    if count <= 0:
        return np.empty((0, *array.shape[1:]), np.float32)
    return ((sums[stop : stop + count] - sums[first : first + count]) / (stop - first)).astype(np.float32)
