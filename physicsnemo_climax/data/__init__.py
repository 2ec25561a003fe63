# SPDX-License-Identifier: Apache-2.0
"""Weather data: regridding, preparation, shard stores and forecast datapipes.

Importing this package (as ``import physicsnemo_climax`` does) registers its
datapipe components in PhysicsNeMo's ``COMPONENT_REGISTRY``, which has no
entry-point discovery, so Hydra configs can write
``_target_: ${dp:ClimaXShardReader}`` after
``physicsnemo.datapipes.registry.register_resolvers()``. A second import
(``importlib.reload``) registers nothing twice.
"""

from physicsnemo.datapipes.registry import COMPONENT_REGISTRY

from .loader import Batch, ForecastBatches, make_loader, partition
from .preparation import PrepareConfig, prepare
from .reader import ClimaXShardReader
from .regrid import regrid
from .store import ShardStore, StoreError
from .streamed import StreamedStore, open_store

#: Components this package adds to PhysicsNeMo's datapipe registry.
COMPONENTS = {"ClimaXShardReader": ClimaXShardReader, "ClimaXForecastBatches": ForecastBatches}

for _name, _cls in COMPONENTS.items():
    if _name not in COMPONENT_REGISTRY:  # re-import (e.g. importlib.reload) must not fail
        COMPONENT_REGISTRY.register(_name)(_cls)

__all__ = [
    "Batch",
    "ClimaXShardReader",
    "ForecastBatches",
    "PrepareConfig",
    "ShardStore",
    "StoreError",
    "StreamedStore",
    "make_loader",
    "open_store",
    "partition",
    "prepare",
    "regrid",
]
