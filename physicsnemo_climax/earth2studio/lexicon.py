# SPDX-License-Identifier: Apache-2.0
"""Variable names between ClimaX / WeatherBench and Earth2Studio's lexicon.

ClimaX names the fields as WeatherBench does (``geopotential_500``,
``2m_temperature``); Earth2Studio uses short ids (``z500``, ``t2m``). The units
agree (geopotential in m² s⁻², relative humidity in %, pressures in Pa), so
only names change. CorrDiff-Mini's ECMWF short names (``2t``, ``10u``) map too.
Earth2Studio has no id for ClimaX's ``orography`` (metres) or ``lattitude``:
the prognostic wrapper keeps such constant inputs inside itself.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from ..data.sources import split_name
from ..errors import ConfigError, UnknownName

#: Single-level names -> Earth2Studio ids.
SURFACE_IDS = {
    "2m_temperature": "t2m",
    "10m_u_component_of_wind": "u10m",
    "10m_v_component_of_wind": "v10m",
    "mean_sea_level_pressure": "msl",
    "surface_pressure": "sp",
    "total_precipitation": "tp",
    "toa_incident_solar_radiation": "tisr",
    "total_cloud_cover": "tcc",
    "total_column_water_vapour": "tcwv",
    "land_sea_mask": "lsm",
}

#: ECMWF short names, as in CorrDiff-Mini files -> Earth2Studio ids.
SHORT_NAMES = {"2t": "t2m", "10u": "u10m", "10v": "v10m"}

#: Upper-air names (``{name}_{hPa}``) -> Earth2Studio id prefixes (``{prefix}{hPa}``).
UPPER_AIR_PREFIXES = {
    "geopotential": "z",
    "temperature": "t",
    "u_component_of_wind": "u",
    "v_component_of_wind": "v",
    "specific_humidity": "q",
    "relative_humidity": "r",
    "vertical_velocity": "w",
}

#: Earth2Studio pressure levels (hPa).
E2S_LEVELS = (50, 100, 150, 200, 250, 300, 400, 500, 600, 700, 850, 925, 1000)

_E2S_SURFACE = {v: k for k, v in SURFACE_IDS.items()}
_E2S_PREFIX = {v: k for k, v in UPPER_AIR_PREFIXES.items()}


def to_e2s(name: str, overrides: Mapping[str, str] | None = None) -> str:
    """The Earth2Studio id of a ClimaX (or CorrDiff-Mini) variable name.

    Raises
    ------
    KeyError
        Naming the variable, when it has no Earth2Studio id (pass ``overrides``).
    """
    if overrides and name in overrides:
        return overrides[name]
    if name in SURFACE_IDS or name in SHORT_NAMES:
        return SURFACE_IDS.get(name) or SHORT_NAMES[name]
    base, level = split_name(name)
    if level is not None and base in UPPER_AIR_PREFIXES and level in E2S_LEVELS:
        return f"{UPPER_AIR_PREFIXES[base]}{level}"
    if is_e2s(name):
        return name
    raise UnknownName(f"variable {name!r} has no Earth2Studio lexicon id; map it with names={{{name!r}: '<id>'}}")


def from_e2s(e2s_id: str) -> str:
    """The ClimaX name of an Earth2Studio id (``z500`` -> ``geopotential_500``)."""
    if e2s_id in _E2S_SURFACE:
        return _E2S_SURFACE[e2s_id]
    prefix, level = e2s_id[:1], e2s_id[1:]
    if prefix in _E2S_PREFIX and level.isdigit() and int(level) in E2S_LEVELS:
        return f"{_E2S_PREFIX[prefix]}_{int(level)}"
    raise UnknownName(f"Earth2Studio id {e2s_id!r} has no ClimaX name")


def is_e2s(name: str) -> bool:
    """Whether ``name`` is already one of the Earth2Studio ids this module knows."""
    try:
        from_e2s(name)
    except KeyError:
        return False
    return True


def to_e2s_all(names: Sequence[str], overrides: Mapping[str, str] | None = None) -> list[str]:
    """:func:`to_e2s` of each name; the error lists every name without an id."""
    missing = []
    ids = []
    for name in names:
        try:
            ids.append(to_e2s(name, overrides))
        except KeyError:
            missing.append(name)
    if missing:
        raise UnknownName(f"variables {missing} have no Earth2Studio lexicon id; map them with names={{...}}")
    if len(set(ids)) != len(ids):
        raise ConfigError(f"two variables map to the same Earth2Studio id: {dict(zip(names, ids))}")
    return ids
