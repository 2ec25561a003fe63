# SPDX-License-Identifier: Apache-2.0
"""Models: ClimaX and its parts."""

from .climax import ClimaX, MetaData
from .region import REGIONS, PatchSelection, Region
from .variables import DEFAULT_VARIABLES

__all__ = ["ClimaX", "MetaData", "REGIONS", "Region", "PatchSelection", "DEFAULT_VARIABLES"]
