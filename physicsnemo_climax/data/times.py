# SPDX-License-Identifier: Apache-2.0
"""Time stamps and leads as they arrive, brought to numpy's standard calendar and to hours.

* **Leads**: a bare number is hours, as a number or as text (``12``, ``12.0``,
  ``"12"``); text with a unit is a pandas duration (``"12h"``, ``"5D"``,
  ``"90min"``); a ``timedelta`` is itself. Every command and config reads
  leads this way.
* **A numeric lead axis** (an external forecast whose ``prediction_timedelta``
  was written as numbers) is in the unit its ``units`` attribute names
  (``hours``, ``days``, ``minutes``, ``seconds``, or their short forms); without
  the attribute, hours. Any other attribute is refused.
* **Time stamps** of another calendar (cftime dates) are taken by calendar
  date: ``2001-03-01 00:00`` of a ``noleap`` file is ``2001-03-01 00:00``. That
  is exact for ``noleap``/``365_day`` (each of their dates exists in the
  standard calendar) and for ``proleptic_gregorian``; a date the standard
  calendar lacks (``360_day``'s 30 February, ``all_leap``'s 29 February of a
  common year) is refused, naming the first. A source prepared into a store
  (:func:`standard_dataset`) may instead drop those dates when asked
  (``calendar_dates="drop"``, ``climax data prepare --calendar-dates drop``);
  the store records the source's calendar and how many dates were dropped.
* **Duplicate stamps** are refused, naming them; so is an empty axis where a
  caller needs times.
"""

from __future__ import annotations

import numbers

import numpy as np
import pandas as pd
import xarray as xr

from ..errors import ConfigError, DataError, InputError

#: The calendar recorded for numpy (standard calendar) times.
STANDARD = "standard"
#: Calendars whose dates are numpy's (from 15 October 1582 on, where data are): the same calendar.
STANDARD_CALENDARS = ("standard", "gregorian", "proleptic_gregorian")
#: What :func:`standard_dataset` does with a date the standard calendar lacks.
CALENDAR_DATES = ("refuse", "drop")
#: How a user of ``climax data prepare`` asks for those dates to be dropped (messages).
DROP_OPTION = "--calendar-dates drop (calendar_dates='drop')"

#: ``units`` of a numeric lead axis -> pandas' unit.
LEAD_UNITS = {
    "hours": "h",
    "hour": "h",
    "hr": "h",
    "h": "h",
    "days": "D",
    "day": "D",
    "d": "D",
    "D": "D",
    "minutes": "min",
    "minute": "min",
    "min": "min",
    "seconds": "s",
    "second": "s",
    "sec": "s",
    "s": "s",
}


def lead_hours(lead) -> float:
    """Hours of one lead: a number (or text of one) is hours, text with a unit a duration.

    Raises
    ------
    InputError
        When ``lead`` is neither (naming it).
    """
    if isinstance(lead, bool):
        raise InputError(f"lead {lead!r} is not a duration: write hours (24) or a duration (24h, 5D)")
    if isinstance(lead, numbers.Real):
        return float(lead)
    try:
        return float(str(lead).strip())  # "12": hours, as the number 12 is
    except ValueError:
        pass
    try:
        return pd.to_timedelta(lead) / pd.Timedelta(hours=1)
    except (ValueError, TypeError):
        raise InputError(f"lead {lead!r} is not a duration: write hours (24) or a duration (24h, 5D)") from None


def axis_hours(values: np.ndarray, units: str | None, what: str) -> np.ndarray:
    """A lead axis ``[L]`` in hours: timedeltas as they are, numbers in ``units`` (default hours).

    Raises
    ------
    InputError
        For a ``units`` attribute that names no unit of time, or duplicate leads.
    """
    values = np.asarray(values)
    if values.dtype.kind == "m":
        hours = values / np.timedelta64(1, "h")
    elif values.dtype.kind in "iuf":
        unit = LEAD_UNITS.get(str(units or "hours").strip())
        if unit is None:
            raise InputError(
                f"{what}: its leads are numbers in {units!r}; give them as timedeltas, or as "
                "numbers in hours, days, minutes or seconds"
            )
        hours = pd.to_timedelta(values.astype(float), unit=unit) / pd.Timedelta(hours=1)
    else:
        raise InputError(f"{what}: its leads are of type {values.dtype}, not durations")
    hours = np.asarray(hours, float)
    repeated = pd.Index(hours)[pd.Index(hours).duplicated()]
    if len(repeated):
        raise InputError(f"{what}: duplicate leads {[f'{h:g} h' for h in repeated]}; keep one of each")
    return hours


def standard_times(values, what: str) -> np.ndarray:
    """``values`` as ``datetime64[ns]``: cftime dates by calendar date (see the module's rules).

    Raises
    ------
    InputError
        Naming the first date the standard calendar lacks, and its calendar.
    """
    values = np.asarray(values)
    if values.dtype.kind == "M":
        return values.astype("datetime64[ns]")
    out = []
    for value in values.ravel():
        try:
            out.append(np.datetime64(value.isoformat(), "ns"))
        except (AttributeError, ValueError):
            calendar = getattr(value, "calendar", None)
            if calendar is None:
                raise InputError(f"{what}: the time {value!r} is not a date") from None
            raise InputError(
                f"{what}: the time {value} ({calendar} calendar) is not a date of the standard "
                "calendar; give times that exist in it"
            ) from None
    return np.array(out, "datetime64[ns]").reshape(values.shape)


def check_unique(stamps: np.ndarray, what: str) -> None:
    """Refuse duplicate time stamps, naming the first few.

    Raises
    ------
    InputError
    """
    index = pd.DatetimeIndex(stamps)
    repeated = index[index.duplicated()]
    if len(repeated):
        raise InputError(f"{what}: duplicate times {[t.isoformat() for t in repeated[:3]]}; keep one of each")


#: The dates ``datetime64[ns]`` holds (numpy wraps others around silently).
NS_RANGE = (np.datetime64("1678-01-01", "s"), np.datetime64("2262-04-11", "s"))


def _as_standard(value) -> np.datetime64 | None:
    """A cftime date as ``datetime64[ns]`` by calendar date; ``None`` when the standard calendar lacks it.

    Raises
    ------
    InputError
        When ``value`` is no date, or a date ``datetime64[ns]`` cannot hold (a model's year 1).
    """
    try:
        seconds = np.datetime64(value.isoformat(), "s")
    except ValueError:
        return None
    except AttributeError:  # not a date at all (text, numbers xarray could not decode)
        raise InputError(f"the time {value!r} is not a date") from None
    if not NS_RANGE[0] <= seconds < NS_RANGE[1]:
        raise InputError(f"the time {value} is outside 1678..2262, the years a store's times can hold")
    return seconds.astype("datetime64[ns]")


def calendar_of(time: xr.DataArray) -> str:
    """The cftime name of the calendar of a ``time`` coordinate: its dates' own, else the one
    it was decoded from (``proleptic_gregorian`` files decode to numpy), else ``standard``."""
    first = time.values.ravel()[:1]
    calendar = getattr(first[0], "calendar", None) if first.size else None
    calendar = calendar or time.encoding.get("calendar") or STANDARD
    return STANDARD if calendar == "gregorian" else calendar  # CF's older name of the same calendar


def standard_dataset(ds: xr.Dataset, where: str, calendar_dates: str = "refuse") -> tuple[xr.Dataset, str, list[str]]:
    """``ds`` with its ``time`` axis as ``datetime64[ns]``, dates taken by calendar date.

    Parameters
    ----------
    ds : xr.Dataset
        A source with a ``time`` coordinate (numpy or cftime dates), or without one.
    where : str
        The source, for messages.
    calendar_dates : {"refuse", "drop"}
        What to do with a date the standard calendar lacks (``360_day``'s 30 February).

    Returns
    -------
    ds : xr.Dataset
        Numpy times; with ``drop``, the dates the standard calendar lacks left out.
    calendar : str
        The source's calendar (:func:`calendar_of`).
    dropped : list of str
        The dates left out, as the source writes them.

    Raises
    ------
    DataError
        With ``refuse``, naming the source, the first such date, its calendar and the option.
    """
    if calendar_dates not in CALENDAR_DATES:
        raise ConfigError(f"calendar_dates {calendar_dates!r}: choose from {CALENDAR_DATES}")
    if "time" not in ds.coords or ds.time.ndim != 1:
        return ds, STANDARD, []
    calendar = calendar_of(ds.time)
    if ds.time.dtype.kind == "M":
        return ds, calendar, []
    try:
        dates = [_as_standard(v) for v in ds.time.values]
    except InputError as err:
        raise DataError(
            f"{where}: {err}; give times as dates of 1678..2262 (CF units such as 'days since 1850-01-01')"
        ) from None
    lacking = [str(v) for v, d in zip(ds.time.values, dates) if d is None]
    if lacking and calendar_dates == "refuse":
        raise DataError(
            f"{where}: the date {lacking[0]} of its {calendar} calendar is not a date of the standard "
            f"calendar ({len(lacking)} such dates); drop them with {DROP_OPTION}"
        )
    kept = [i for i, d in enumerate(dates) if d is not None]
    ds = ds.isel(time=kept) if lacking else ds
    times = np.array([dates[i] for i in kept], "datetime64[ns]")
    return ds.assign_coords(time=xr.Variable("time", times, ds.time.attrs)), calendar, lacking
