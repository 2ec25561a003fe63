# SPDX-License-Identifier: Apache-2.0
"""Models: ClimaX, its parts, and its climate-projection variant."""

from .climatebench import ClimaXClimateBench
from .climax import ClimaX, MetaData
from .region import REGIONS, PatchSelection, Region
from .variables import DEFAULT_VARIABLES

__all__ = ["ClimaX", "ClimaXClimateBench", "MetaData", "REGIONS", "Region", "PatchSelection", "DEFAULT_VARIABLES"]
