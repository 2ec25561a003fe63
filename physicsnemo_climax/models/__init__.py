# SPDX-License-Identifier: Apache-2.0
"""ClimaX and its parts, in the paper's reading order: tokenizer, aggregation,
embeddings, backbone, head; regions; loading pretrained weights."""

from .climax import ClimaX, MetaData
from .pretrained import Weights, load_weights, read_weights
from .region import REGIONS, GridRegion, PatchSelection, Region
from .variables import DEFAULT_VARIABLES

__all__ = [
    "ClimaX",
    "DEFAULT_VARIABLES",
    "GridRegion",
    "MetaData",
    "PatchSelection",
    "REGIONS",
    "Region",
    "Weights",
    "load_weights",
    "read_weights",
]
