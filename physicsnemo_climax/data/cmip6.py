# SPDX-License-Identifier: Apache-2.0
"""CMIP6 fields (CMOR names and units, as ESGF delivers them) brought to ClimaX's units.

A field ``climax data prepare`` reads under its CMOR name (:data:`CMOR_NAMES`:
``tas``, ``ta``, ``zg``, ``ua``, ``va``, ``hus``, ``pr``, ...; one level
of them as a variable of its own, ``zg500``) is stored in
the units ClimaX's ERA5 data use (:data:`.units.CANONICAL`), by these rules:

* **Convertible units are converted** by :func:`.units.conversion`: ``zg``,
  geopotential height in m, becomes ClimaX's geopotential in m**2 s**-2 times
  ``g = 9.80665``; ``sftlf`` in % becomes a fraction; ``m s-1``, ``K`` and
  ``1`` are spellings of the same units.
* **Precipitation** (:data:`PRECIPITATION_RULE`): ``pr`` is a mass flux
  (kg m-2 s-1, the mean rate over the file's interval); ClimaX's
  ``total_precipitation`` is ERA5's hourly accumulation in metres of water.
  The flux becomes the depth it accumulates in one hour at that rate:
  ``pr x 3600 s / 1000 kg m-3``.
* A file without a ``units`` attribute is taken to be in the units CMIP6
  prescribes for the variable (:data:`CMOR_UNITS`).
* A factor the user gives for such a field (``scales``, ``--scale``) is
  refused: the conversion is already made.

Fields read under their ERA5 or WeatherBench names keep their units as they
come (:mod:`.units` converts them where a run reads them).
"""

from __future__ import annotations

import re

from ..errors import ConfigError
from .sources import ALIASES, split_name
from .units import CANONICAL, conversion

#: CMOR variable names (the CMIP6 alias of each ClimaX variable in :data:`.sources.ALIASES`).
CMOR_NAMES = {names[2]: base for base, names in ALIASES.items() if len(names) > 2}
#: The units CMIP6's data request prescribes for each CMOR name: a file without a ``units``
#: attribute is taken to be in them (CMOR writes them; a file made otherwise may omit them).
CMOR_UNITS = {
    "zg": "m",
    "ta": "K",
    "ua": "m s-1",
    "va": "m s-1",
    "hus": "1",
    "hur": "%",
    "tas": "K",
    "uas": "m s-1",
    "vas": "m s-1",
    "psl": "Pa",
    "ps": "Pa",
    "pr": "kg m-2 s-1",
    "sftlf": "%",
    "orog": "m",
}
#: Seconds of the accumulation ClimaX's total_precipitation holds (ERA5's hourly one).
ACCUMULATION_S = 3600.0
#: Density of liquid water, kg m-3: a mass per area over it is a depth.
WATER_DENSITY = 1000.0
#: The precipitation rule, for messages and the docs.
PRECIPITATION_RULE = "pr (kg m-2 s-1) x 3600 s / 1000 kg m-3 = m of water in one hour (ERA5's hourly accumulation)"
#: CMOR units of a precipitation flux, as CMIP6 files write them.
FLUX_UNITS = ("kg m-2 s-1", "kg m**-2 s**-1", "kg/m2/s", "kg m^-2 s^-1")


def cmor_name(var: str) -> str | None:
    """The CMOR name of a source's variable (``zg``; ``zg`` too for ``zg500``, one level of it),
    or ``None`` when it is not one this module converts."""
    if var in CMOR_NAMES:
        return var
    stem = re.fullmatch(r"([a-z]+)\d+", var)
    return stem.group(1) if stem and stem.group(1) in CMOR_NAMES else None


def is_cmor(var: str) -> bool:
    """Whether a source's variable name is a CMOR name this module converts."""
    return cmor_name(var) is not None


def to_climax_units(name: str, var: str, units: str, where: str, scales: dict) -> tuple[float, float, str]:
    """``(scale, offset, units)`` taking field ``name``, read as CMOR variable ``var`` in
    ``units``, to ClimaX's units: ``x * scale + offset`` is in the returned units.

    Parameters
    ----------
    name : str
        The ClimaX name (``geopotential_500``).
    var : str
        The name in the source (``zg``).
    units : str
        Its ``units`` attribute.
    where : str
        The source, for messages.
    scales : dict
        The factors the user gave, by ClimaX base name (refused for such a field).

    Raises
    ------
    ConfigError
        When the user also gave a factor for it.
    InputError
        When its units cannot be converted (naming the variable and both units).
    """
    base = split_name(name)[0]
    if base in scales:
        raise ConfigError(
            f"--scale {base}={scales[base]:g} (scales): {where} holds {base} as the CMIP6 variable {var} "
            f"in {units}, which is converted to ClimaX's units already; leave the factor out"
        )
    units = units.strip() or CMOR_UNITS.get(cmor_name(var) or var, "")
    want = CANONICAL.get(base)
    if want is None:  # a variable ClimaX's ERA5 data do not hold: nothing to convert to
        return 1.0, 0.0, units
    if base == "total_precipitation" and units in FLUX_UNITS:
        return ACCUMULATION_S / WATER_DENSITY, 0.0, want
    scale, offset = conversion(name, units, want, where)
    return scale, offset, want
