# SPDX-License-Identifier: Apache-2.0
"""Downscaling next to ClimaX: CorrDiff's regression + residual diffusion on
PhysicsNeMo's components, with ClimaX as an optional regression stage."""

from .data import CoarseFineDataset, HRRRMiniDataset, block_mean, write_mini_file
from .domain import Domain, upsample

__all__ = ["CoarseFineDataset", "Domain", "HRRRMiniDataset", "block_mean", "upsample", "write_mini_file"]
