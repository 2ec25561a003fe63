# SPDX-License-Identifier: Apache-2.0
"""Units a field arrives in, brought to the units the run was trained in.

Every field that enters from outside (a forecast's initial condition, a
WeatherBench 2 climatology, an external forecast, CorrDiff data) is checked
here, by these rules:

* **The run's units** are those its store recorded (``store.json``, from the
  source files' ``units`` attributes); where it recorded none (an official
  ClimaX folder, a variable without the attribute), ERA5's as WeatherBench 2
  writes them (:data:`CANONICAL`: K, m**2 s**-2, Pa, m s**-1, kg kg**-1, m, ...).
* **Spellings** are read by pint after a few meteorological ones are made
  plain: ``kelvin``/``degK``, ``degC``/``°C``/``celsius``, ``m**2 s**-2``/
  ``m2 s-2``/``m^2/s^2``, ``hPa``/``mbar``/``mb`` (millibar, not pint's
  millibarn), ``gpm`` (geopotential metre), ``(0 - 1)`` (a fraction).
* **Convertible units are converted** (°C -> K, hPa -> Pa, g/kg -> kg/kg,
  mm -> m, ...), as ``x * scale + offset``. Geopotential height (a length:
  ``m``, ``gpm``) becomes geopotential (m**2 s**-2) times ``g = 9.80665`` and
  back, for geopotential and orography only (elsewhere a length is no energy).
* **Anything else is refused**, naming the variable, its units and the run's:
  units pint does not know, and units of another dimension.
* **Missing units are refused** unless the user states them
  (:func:`parse_assumed`: ``NAME=UNIT`` items, or ``run`` for "every field
  without the attribute is in the run's units"); stated units that contradict
  the field's attribute are refused too. A field whose run's units leave no
  doubt (:data:`SELF_EVIDENT`: a fraction such as the land-sea mask's
  ``(0 - 1)``, ClimaX's latitude field in ``degrees_north``) may come without units.
* **Unknown to both**: where neither the run nor :data:`CANONICAL` knows a
  variable's units, there is nothing to check against; the field is taken as
  it comes, with a warning.
"""

from __future__ import annotations

import functools
import logging
import re
from collections.abc import Mapping

import numpy as np

from ..errors import InputError
from .sources import split_name
from .wb2 import ATTRS

logger = logging.getLogger(__name__)

#: Standard gravity (m s**-2): geopotential = g x geopotential height.
G = 9.80665

#: ERA5's units per ClimaX variable (the base name of upper-air fields), as WeatherBench 2 writes
#: them: what a run trained in when its store recorded no units.
CANONICAL: dict[str, str] = {name: units for name, (_, units) in ATTRS.items()} | {
    "total_precipitation": "m",
    "surface_pressure": "Pa",
    "orography": "m",
    "lattitude": "degrees_north",
    "geopotential_at_surface": "m**2 s**-2",
    "2m_dewpoint_temperature": "K",
    "sea_surface_temperature": "K",
    "total_cloud_cover": "(0 - 1)",
    "100m_u_component_of_wind": "m s**-1",
    "100m_v_component_of_wind": "m s**-1",
}
#: Variables whose length units (geopotential height) and m**2 s**-2 (geopotential) convert with ``g``.
GEOPOTENTIALS = ("geopotential", "orography", "geopotential_at_surface")
#: Spellings of a pure fraction.
FRACTIONS = ("1", "(0 - 1)", "(0-1)", "0-1", "0 - 1", "fraction", "dimensionless", "~")
#: Run's units that leave no doubt: a field in them may come without a units attribute (a land-sea
#: mask, ClimaX's latitude field).
SELF_EVIDENT = FRACTIONS + ("degrees_north",)
#: Whole-word spellings pint reads otherwise or not at all.
SPELLINGS = {
    "mb": "mbar",
    "gpm": "m",
    "Celsius": "degC",
    "deg_C": "degC",
    "degrees_C": "degC",
    "degrees_north": "degree",
    "degrees_east": "degree",
    "degree_north": "degree",
    "degree_east": "degree",
}
#: ``assume_units`` value meaning "in the run's units".
RUN = "run"
#: How a user of :func:`..forecasting.forecast` states units (messages; ``NAME`` is replaced).
STATING = "--assume-units NAME=UNIT (assume_units={'NAME': UNIT}), or --assume-units run for the run's units"


@functools.cache
def registry():
    """pint's unit registry (built once, on first use: about a second)."""
    import pint

    return pint.UnitRegistry()


def expected_units(name: str, recorded: Mapping[str, str] | None = None) -> str | None:
    """The units the run was trained in for ``name``: recorded, else ERA5's, else ``None``."""
    return (recorded or {}).get(name) or CANONICAL.get(name) or CANONICAL.get(split_name(name)[0])


def plain(units: str) -> str:
    """``units`` as pint reads them: meteorological spellings replaced, bare exponents
    (``m2 s-2``) written out (``m**2 s**-2``)."""
    text = units.strip()
    if text in FRACTIONS:
        return "dimensionless"
    text = " ".join(SPELLINGS.get(word, word) for word in text.split())
    return re.sub(r"(?<=[A-Za-z])(-?\d+)\b", r"**\1", text)


def parse(units: str, name: str, where: str):
    """The pint unit of ``units``.

    Raises
    ------
    InputError
        Naming ``where``, the variable and the units pint does not know.
    """
    try:
        return registry().Unit(plain(units))
    except Exception:  # noqa: BLE001 -- pint raises several types for text it cannot read
        raise InputError(
            f"{where}: {name} is in units {units!r}, which are not known; write them as pint "
            f"reads them (K, degC, m**2 s**-2, hPa, ...)"
        ) from None


def conversion(name: str, have: str, want: str, where: str) -> tuple[float, float]:
    """``(scale, offset)`` taking variable ``name`` from units ``have`` to ``want``: ``x * scale + offset``.

    Raises
    ------
    InputError
        When the units are unknown or of another dimension, naming the variable and both units.
    """
    if have.strip() == want.strip():
        return 1.0, 0.0
    source, target = parse(have, name, where), parse(want, name, where)
    if source == target:
        return 1.0, 0.0
    q = registry().Quantity
    factor = 1.0
    if split_name(name)[0] in GEOPOTENTIALS and source.dimensionality != target.dimensionality:
        length, energy = registry().Unit("m"), registry().Unit("m**2 s**-2")
        if source.dimensionality == length.dimensionality and target.dimensionality == energy.dimensionality:
            source, factor = energy, G * q(1.0, source).to(length).m  # geopotential height -> geopotential
        elif source.dimensionality == energy.dimensionality and target.dimensionality == length.dimensionality:
            source, factor = length, q(1.0, source).to(energy).m / G
    try:
        zero, one = q(0.0, source).to(target).m, q(factor, source).to(target).m
    except Exception:  # noqa: BLE001 -- pint's DimensionalityError and offset errors
        hint = " (C is the coulomb: write degC for Celsius)" if have.strip() == "C" else ""
        raise InputError(
            f"{where}: {name} is in {have}{hint}, which cannot be converted to the run's {want}; give it in those units"
        ) from None
    return one - zero, zero


def arrival_units(
    name: str, attribute: str | None, want: str | None, assumed: Mapping[str, str], where: str, stating: str
) -> str | None:
    """The units field ``name`` arrives in: its ``attribute``, or the units the user stated.

    Parameters
    ----------
    attribute : str or None
        The field's ``units`` attribute (``None`` or empty: absent).
    want : str or None
        The run's units (:func:`expected_units`).
    assumed : mapping
        :func:`parse_assumed`'s: name (or ``"*"``: any other) -> units or ``"run"``.
    where, stating : str
        What holds the field, and how the user states units there (``NAME``: the variable), for messages.

    Raises
    ------
    InputError
        When the units are missing and not stated, or stated against the attribute.
    """
    stated = assumed.get(name)
    stated = want if stated == RUN else stated
    attribute = (attribute or "").strip() or None
    if attribute is not None and stated is not None and want is not None:
        if not np.allclose(conversion(name, attribute, want, where), conversion(name, stated, want, where)):
            raise InputError(
                f"{where}: {name} is in {attribute} by its units attribute, but the units stated "
                f"for it are {stated}; correct one of them"
            )
    if attribute is not None:
        return attribute
    stated = stated or (want if assumed.get("*") == RUN else assumed.get("*"))
    if stated is None and want is not None and want.strip() not in SELF_EVIDENT:
        raise InputError(
            f"{where}: {name} has no units attribute (the run's are {want}); add it, or state "
            f"them: {stating.replace('NAME', name)}"
        )
    return stated


def to_run_units(
    name: str,
    attribute: str | None,
    recorded: Mapping[str, str] | None,
    assumed: Mapping[str, str],
    where: str,
    stating: str = STATING,
) -> tuple[float, float]:
    """``(scale, offset)`` bringing field ``name`` with units ``attribute`` to the run's units
    (``(1, 0)`` where they are the same, or unknown to both sides; see the module's rules)."""
    want = expected_units(name, recorded)
    have = arrival_units(name, attribute, want, assumed, where, stating)
    if want is None or have is None:
        if want is None:
            logger.warning(
                "%s: the run's units of %s are not known; taken as they come (%s)",
                where,
                name,
                have or "no units attribute",
            )
        return 1.0, 0.0
    return conversion(name, have, want, where)


def parse_assumed(items, key: str = "assume_units") -> dict[str, str]:
    """The units a user states for fields without a ``units`` attribute.

    Parameters
    ----------
    items : None, str, mapping or sequence of str
        ``"run"`` (every such field is in the run's units), ``{NAME: UNIT}`` (``UNIT`` may be
        ``run``), or ``["NAME=UNIT", "run", ...]`` (the command line's).
    key : str
        The option or config key, for messages.

    Returns
    -------
    dict
        Name -> units or ``"run"``; ``"*"`` for every field not named.
    """
    if items is None:
        return {}
    if isinstance(items, str):
        items = [items]
    if isinstance(items, Mapping):
        return {str(k): str(v) for k, v in items.items()}
    out = {}
    for item in items:
        name, sep, units = str(item).partition("=")
        if not sep and name.strip() == RUN:
            out["*"] = RUN
        elif sep and name.strip() and units.strip():
            out[name.strip()] = units.strip()
        else:
            raise InputError(f"{key} {item!r}: write NAME=UNIT (2m_temperature=degC) or run (the run's units)")
    return out
