# SPDX-License-Identifier: Apache-2.0
"""Downscaling next to ClimaX: CorrDiff's regression + residual diffusion on
PhysicsNeMo's components, with ClimaX as an optional regression stage."""

from .cwb import CWBDataset
from .data import CoarseFineDataset, HRRRMiniDataset, block_mean, write_mini_file
from .domain import Domain, upsample
from .gefs_hrrr import GefsHrrrDataset
from .interface import DownscalingDataset

__all__ = [
    "CWBDataset",
    "CoarseFineDataset",
    "Domain",
    "DownscalingDataset",
    "GefsHrrrDataset",
    "HRRRMiniDataset",
    "block_mean",
    "upsample",
    "write_mini_file",
]
