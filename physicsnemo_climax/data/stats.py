# SPDX-License-Identifier: Apache-2.0
"""Streaming statistics: per-variable moments and climatologies.

Moments are combined with the pairwise update of Chan, Golub & LeVeque
(1979), so yearly partial results merge into exactly the statistics of the
whole period, in one pass and in float64.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class Moments:
    """Count, mean and sum of squared deviations of a stream of values."""

    count: int = 0
    mean: float = 0.0
    m2: float = 0.0

    @classmethod
    def of(cls, values: np.ndarray, sums: np.ndarray | None = None) -> Moments:
        """Moments of one array (all elements).

        ``sums``, when the caller has them (a climatology's float64 sums of ``values`` over
        its first axis), give the mean without another pass over ``values``.
        """
        values = np.asarray(values)
        if values.size == 0:
            return cls()
        if sums is not None:
            mean = float(np.sum(sums) / values.size)
        else:
            mean = float(values.mean(dtype=np.float64))  # accumulated in float64, no float64 copy
        d = values - values.dtype.type(mean) if values.dtype.kind == "f" else values - mean
        return cls(values.size, mean, float(np.add.reduce(np.square(d, out=d).ravel(), dtype=np.float64)))

    @classmethod
    def with_sums(cls, fields: np.ndarray) -> tuple[Moments, np.ndarray]:
        """Moments of ``fields`` ``[T, ...]`` and their float64 sums over time (what a
        :class:`Climatology` adds), the mean taken from those sums: one pass fewer than apart."""
        sums = fields.sum(axis=0, dtype=np.float64)
        return cls.of(fields, sums), sums

    def merge(self, other: Moments) -> Moments:
        """Moments of the concatenation of both streams."""
        if other.count == 0:
            return self
        if self.count == 0:
            return other
        n = self.count + other.count
        delta = other.mean - self.mean
        mean = self.mean + delta * other.count / n
        m2 = self.m2 + other.m2 + delta**2 * self.count * other.count / n
        return Moments(n, mean, m2)

    @property
    def std(self) -> float:
        """Population standard deviation."""
        return float(np.sqrt(self.m2 / self.count)) if self.count else float("nan")


class Climatology:
    """Running time mean per grid point, optionally per day of year.

    Parameters
    ----------
    shape : tuple of int
        Field shape ``(H, W)``.
    day_of_year : bool
        Also accumulate 366 day-of-year means.
    """

    def __init__(self, shape: tuple[int, int], day_of_year: bool = False):
        self.sum = np.zeros(shape)
        self.count = 0
        self.doy_sum = np.zeros((366, *shape)) if day_of_year else None
        self.doy_count = np.zeros(366, dtype=np.int64)

    def update(self, fields: np.ndarray, days: np.ndarray | None = None, sums: np.ndarray | None = None) -> None:
        """Add ``fields`` ``[T, H, W]``; ``days`` ``[T]`` are days of year 1..366; ``sums``:
        ``fields.sum(axis=0, dtype=np.float64)`` when the caller has computed it already."""
        self.sum += fields.sum(axis=0, dtype=np.float64) if sums is None else sums
        self.count += fields.shape[0]
        if self.doy_sum is not None:
            np.add.at(self.doy_sum, np.asarray(days) - 1, fields.astype(np.float64))
            np.add.at(self.doy_count, np.asarray(days) - 1, 1)

    def mean(self) -> np.ndarray:
        """Time mean ``[H, W]``."""
        return self.sum / self.count

    def day_of_year_mean(self) -> np.ndarray:
        """Day-of-year means ``[366, H, W]``; days never seen are NaN."""
        with np.errstate(invalid="ignore", divide="ignore"):
            return self.doy_sum / self.doy_count[:, None, None]
