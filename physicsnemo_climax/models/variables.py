# SPDX-License-Identifier: Apache-2.0
"""Variable names of the official ClimaX checkpoints, in their token order."""

#: Pressure levels (hPa) of the upper-air variables.
PRESSURE_LEVELS = (50, 250, 500, 600, 700, 850, 925)

#: Constant fields, in checkpoint order ("lattitude" is spelled as upstream).
CONSTANTS = ("land_sea_mask", "orography", "lattitude")

#: Single-level fields.
SURFACE = ("2m_temperature", "10m_u_component_of_wind", "10m_v_component_of_wind")

#: Upper-air fields, each at every level of :data:`PRESSURE_LEVELS`.
UPPER_AIR = (
    "geopotential",
    "u_component_of_wind",
    "v_component_of_wind",
    "temperature",
    "relative_humidity",
    "specific_humidity",
)

#: The 48 variables of the official checkpoints, ``{name}_{level}`` upper-air.
DEFAULT_VARIABLES = CONSTANTS + SURFACE + tuple(f"{name}_{level}" for name in UPPER_AIR for level in PRESSURE_LEVELS)
