# SPDX-License-Identifier: Apache-2.0
"""``epochs(e)`` for the training loop: this rank's batches of epoch ``e``.

* :func:`forecast_epochs`: ClimaX forecast batches (:class:`.loader.ForecastBatches`)
  read by threads, worker processes or a DALI pipeline, as the run plan's loader says;
* :func:`dataset_epochs`: a map-style dataset (CorrDiff, ClimateBench) in
  shuffled, equal shares per rank.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch
from torch.utils.data import DataLoader

from .dali import DaliEpochs
from .loader import ForecastBatches, make_loader, partition


def forecast_epochs(
    batches: ForecastBatches, loader: str, device: torch.device, num_workers: int
) -> Callable[[int], Iterable]:
    """Epochs of ``batches`` read by ``loader`` (``threads``, ``processes``, ``dali_cpu``, ``dali_gpu``).

    A DALI loader normalizes inside its pipeline (on the GPU for ``dali_gpu``)
    and is built once, at the first epoch asked for. The torch loaders pin
    their batches when ``device`` is a GPU, so copies do not wait for it.
    """
    if loader.startswith("dali"):
        return DaliEpochs(batches, device.index if loader == "dali_gpu" else None, num_workers)

    def epochs(epoch: int) -> Iterable:
        batches.set_epoch(epoch)
        return make_loader(batches, num_workers, loader, pin_memory=device.type == "cuda")

    return epochs


def dataset_epochs(
    dataset, batch_size: int, rank: int, world: int, seed: int, workers: int = 0, pin_memory: bool = False
) -> Callable[[int], DataLoader]:
    """Epochs of a map-style dataset: this rank's shuffled, equal-length share
    (:func:`.loader.partition`), in full batches whenever there is at least one."""

    def epochs(epoch: int) -> DataLoader:
        order = partition(len(dataset), rank, world, seed=seed, epoch=epoch, even=True)
        return DataLoader(
            torch.utils.data.Subset(dataset, order.tolist()),
            batch_size=batch_size,
            num_workers=workers,
            drop_last=len(order) >= batch_size,
            pin_memory=pin_memory,
        )

    return epochs


def validation_batches(dataset, batch_size: int, rank: int, world: int, shuffle: bool = False) -> DataLoader:
    """This rank's share of a map-style validation ``dataset`` in batches, the same at every
    validation (``shuffle``: in a fixed, seeded order rather than the dataset's)."""
    order = partition(len(dataset), rank, world, shuffle=shuffle)
    return DataLoader(torch.utils.data.Subset(dataset, order.tolist()), batch_size=batch_size)
