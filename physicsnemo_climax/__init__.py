# SPDX-License-Identifier: Apache-2.0
"""ClimaX and CorrDiff for weather and climate, as an NVIDIA PhysicsNeMo plugin.

Importing the package registers its datapipe components
(:data:`physicsnemo_climax.data.COMPONENTS`) in PhysicsNeMo's
``COMPONENT_REGISTRY``, so Hydra configs can write
``_target_: ${dp:ClimaXShardReader}``. Warp's "no CUDA driver" line is held
back (:mod:`.dependency_warnings`; shown with ``CLIMAX_DEBUG=1``).
``docs/architecture.md`` maps the packages.
"""

__version__ = "0.1.0"

from .dependency_warnings import init_warp as _init_warp

# before PhysicsNeMo imports Warp: its "no CUDA driver" line tells a CPU user nothing
_init_warp()

from . import data as _data  # noqa: E402, F401  (registers the datapipe components)
