# SPDX-License-Identifier: Apache-2.0
"""Downscaling next to ClimaX (CorrDiff). Work in progress: only the data
readers exist so far; see docs/design/corrdiff.md."""

from .data import HRRRMiniDataset, upsample, write_mini_file

__all__ = ["HRRRMiniDataset", "upsample", "write_mini_file"]
