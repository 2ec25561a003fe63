# SPDX-License-Identifier: Apache-2.0
"""ClimaX and CorrDiff for weather and climate, as an NVIDIA PhysicsNeMo plugin."""

__version__ = "0.1.0"
