# SPDX-License-Identifier: Apache-2.0
"""Weather data: regridding, preparation, stores and datapipes."""

from .regrid import regrid

__all__ = ["regrid"]
