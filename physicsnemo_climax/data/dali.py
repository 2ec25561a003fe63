# SPDX-License-Identifier: Apache-2.0
"""The forecast batches through an NVIDIA DALI pipeline (extra ``dali``).

Samples are read by DALI's parallel external source (worker processes,
started by spawn: scripts using it need an ``if __name__ == "__main__":``
guard) from the same batch plan as the torch path, un-normalized whatever
the readers' ``normalize``, and normalized inside the pipeline, on the GPU
when ``device_id`` is given, on the CPU otherwise. Whether DALI runs at all
is the run plan's decision (:mod:`..engine.plan`): nothing here falls back.
"""

from __future__ import annotations

import numpy as np

from .loader import Batch, ForecastBatches

OUTPUTS = ("x", "y", "lead_time", "source", "index")


class _BatchSource:
    """Picklable DALI batch callable: batch ``i`` of epoch ``e`` from the plan."""

    def __init__(self, batches: ForecastBatches, first_epoch: int):
        self.batches = batches
        self.first_epoch = first_epoch
        self._plan: tuple[int, list] | None = None

    def __call__(self, info):
        epoch = self.first_epoch + info.epoch_idx
        if self._plan is None or self._plan[0] != epoch:
            self.batches.set_epoch(epoch)
            self._plan = (epoch, self.batches.plan())
        plan = self._plan[1]
        if info.iteration >= len(plan):
            raise StopIteration
        source, indices = plan[info.iteration]
        reader = self.batches.sources[source]
        raw = reader.read_batch(indices, normalize=False)
        (mean_x, std_x), (mean_y, std_y) = reader.stats["x"], reader.stats["y"]
        col = (slice(None), None, None)
        # DALI needs a fixed rank per output: targets always [S, V, H, W]
        y = raw["y"][:, None] if reader.rollout_steps == 1 else raw["y"]
        samples = range(len(indices))
        return (
            list(raw["x"]),
            list(y),
            [raw["lead_time"][i : i + 1] for i in samples],
            [np.array([source], np.int64) for _ in samples],
            [np.array([i], np.int64) for i in indices],
            [mean_x[col].astype(np.float32) for _ in samples],
            [(1 / std_x)[col].astype(np.float32) for _ in samples],
            [mean_y.reshape(1, -1, 1, 1).astype(np.float32) for _ in samples],
            [(1 / std_y).reshape(1, -1, 1, 1).astype(np.float32) for _ in samples],
        )


class DaliForecastLoader:
    """Iterate :class:`~.loader.Batch` es produced by a DALI pipeline.

    Parameters
    ----------
    batches : ForecastBatches
        The batch plan (sources, rank, seed, ...); the pipeline reads raw
        samples and normalizes them itself.
    device_id : int, optional
        CUDA device for normalization and output; ``None`` runs on the CPU.
    num_workers : int
        DALI Python worker processes reading samples.
    first_epoch : int
        Epoch number of the first pass (later passes count on from it).
    """

    def __init__(
        self, batches: ForecastBatches, device_id: int | None = None, num_workers: int = 2, first_epoch: int = 0
    ):
        from nvidia.dali import fn, pipeline_def
        from nvidia.dali.plugin.pytorch import DALIGenericIterator

        self.batches = batches

        @pipeline_def(
            batch_size=batches.batch_size,
            num_threads=2,
            device_id=device_id,
            py_num_workers=num_workers,
            py_start_method="spawn",
            prefetch_queue_depth=2,
        )
        def pipeline():
            x, y, lead, source, index, mx, sx, my, sy = fn.external_source(
                source=_BatchSource(batches, first_epoch),
                num_outputs=9,
                batch=True,
                batch_info=True,
                parallel=True,
            )
            if device_id is not None:
                x, y, mx, sx, my, sy = (t.gpu() for t in (x, y, mx, sx, my, sy))
            return (x - mx) * sx, (y - my) * sy, lead, source, index

        self.pipe = pipeline()
        self.pipe.build()
        self.iterator = DALIGenericIterator(self.pipe, list(OUTPUTS), auto_reset=True)

    def __iter__(self):
        for (out,) in self.iterator:
            source = int(out["source"][0, 0])
            reader = self.batches.sources[source]
            y = out["y"][:, 0] if reader.rollout_steps == 1 else out["y"]
            yield Batch(
                x=out["x"],
                y=y,
                lead_time=out["lead_time"][:, 0],
                variables=reader.variables,
                out_variables=reader.out_variables,
                source=source,
                index=out["index"][:, 0],
            )


class DaliEpochs:
    """``epochs(e)`` for the training loop: one :class:`DaliForecastLoader` for the
    whole run, built at the first epoch asked for; each later pass is the next epoch."""

    def __init__(self, batches: ForecastBatches, device_id: int | None, num_workers: int):
        self.batches, self.device_id, self.num_workers = batches, device_id, num_workers
        self.loader: DaliForecastLoader | None = None

    def __call__(self, epoch: int) -> DaliForecastLoader:
        if self.loader is None:
            self.loader = DaliForecastLoader(self.batches, self.device_id, self.num_workers, first_epoch=epoch)
        return self.loader
