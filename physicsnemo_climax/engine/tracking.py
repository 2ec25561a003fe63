# SPDX-License-Identifier: Apache-2.0
"""Where a run's numbers go: ``metrics.csv``, optionally TensorBoard and
MLflow, and the progress bar (rank 0 only)."""

from __future__ import annotations

import os
from pathlib import Path


class MetricSink:
    """Scalars to ``run_dir/metrics.csv`` (``step,key,value`` rows) and, optionally,
    TensorBoard (``run_dir/tensorboard``) and MLflow."""

    def __init__(self, run_dir: Path, tensorboard: bool = False, mlflow: bool = False):
        # O_NOFOLLOW: a link planted as metrics.csv is an error, never a way to append elsewhere
        fd = os.open(Path(run_dir) / "metrics.csv", os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW, 0o644)
        self.csv = os.fdopen(fd, "a")
        self.writer = self.mlflow = None
        if tensorboard:
            from torch.utils.tensorboard import SummaryWriter

            self.writer = SummaryWriter(str(Path(run_dir) / "tensorboard"))
        if mlflow:
            import mlflow as mlflow_module

            mlflow_module.start_run(run_name=Path(run_dir).name)
            self.mlflow = mlflow_module

    def log(self, scores: dict[str, float], step: int) -> None:
        self.csv.writelines(f"{step},{key},{value:.8g}\n" for key, value in scores.items())
        self.csv.flush()
        for key, value in scores.items():
            if self.writer is not None:
                self.writer.add_scalar(key, value, step)
            if self.mlflow is not None:
                self.mlflow.log_metric(key.replace("/", "_"), value, step=step)

    def close(self) -> None:
        self.csv.close()
        if self.writer is not None:
            self.writer.close()
        if self.mlflow is not None:
            self.mlflow.end_run()


def progress_bar(total: int, done: int, enabled: bool):
    """A tqdm bar of optimizer steps, or ``None`` when disabled."""
    if not enabled:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=done, desc="train", unit="step", dynamic_ncols=True, mininterval=1.0)


class TrainingReport:
    """Rank 0's view of training: the progress bar and the metric sinks (silent on other ranks).

    Parameters
    ----------
    run_dir : Path
    t : TrainSettings
        The ``train`` section (``steps``, ``progress``, ``tensorboard``, ``mlflow``).
    step : int
        Steps already done (a resumed run).
    samples_per_step : int
        Samples in one optimizer step over all ranks, for the samples/s figure.
    rank : int
    logger : logging.Logger-like
    """

    def __init__(self, run_dir: Path, t, step: int, samples_per_step: int, rank: int, logger):
        import time

        self._clock = time.perf_counter
        self.sink = MetricSink(run_dir, t.tensorboard, t.mlflow) if rank == 0 else None
        self.bar = progress_bar(t.steps, step, rank == 0 and t.progress)
        self.samples_per_step, self.logger = samples_per_step, logger
        self._since, self._steps = self._clock(), 0

    def step_done(self) -> None:
        self._steps += 1
        if self.bar is not None:
            self.bar.update(1)

    def train(self, step: int, loss: float, lr: float) -> None:
        """Log the mean loss since the last report, the learning rate and the throughput (samples/s)."""
        seconds = max(self._clock() - self._since, 1e-9)
        rate = self.samples_per_step * self._steps / seconds
        self._since, self._steps = self._clock(), 0
        if self.sink is not None:
            self.sink.log({"train/loss": loss, "train/lr": lr, "train/samples_per_s": rate}, step)
        if self.bar is not None:
            self.bar.set_postfix(loss=f"{loss:.4f}", lr=f"{lr:.2e}", samples_s=f"{rate:.1f}")

    def validation(self, step: int, scores: dict[str, float]) -> None:
        self.logger.info(f"step {step} validation: " + ", ".join(f"{k} {v:.4g}" for k, v in scores.items()))
        if self.sink is not None:
            self.sink.log({f"val/{k}": v for k, v in scores.items()}, step)

    def close(self) -> None:
        for part in (self.bar, self.sink):
            if part is not None:
                part.close()
