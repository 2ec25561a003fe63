# SPDX-License-Identifier: Apache-2.0
"""The setup every task shares (engine/task.py): ``train.deterministic`` and
``train.grad_checkpointing`` mean the same in forecasting, ClimateBench and both
CorrDiff stages, what a task cannot honour is refused by name, and validation
is averaged the same way everywhere."""

from types import SimpleNamespace

import physicsnemo.models.diffusion_unets.song_unet as song_unet
import pytest
import torch
from test_climatebench import bench  # noqa: F401 -- the bench fixture
from test_climatebench import config as climatebench_config
from test_downscaling import TINY_CLIMAX, mini  # noqa: F401 -- the mini fixture
from test_downscaling import training as corrdiff_config
from test_recipes import config as forecast_config  # noqa: F401 -- the store fixture

import physicsnemo_climax.models.climax as climax_module
from physicsnemo_climax.climate_projection.training import train as train_climatebench
from physicsnemo_climax.downscaling import models as corrdiff_models
from physicsnemo_climax.downscaling.training import train as train_corrdiff
from physicsnemo_climax.engine import loop
from physicsnemo_climax.engine.loop import Trainable
from physicsnemo_climax.engine.plan import RunPlan
from physicsnemo_climax.engine.run_folder import RunRecord
from physicsnemo_climax.engine.run_info import RunInfo
from physicsnemo_climax.engine.task import TaskContext, train_task, validation_mean
from physicsnemo_climax.errors import ConfigError
from physicsnemo_climax.forecasting.training import train as train_forecast

ONE_RANK = SimpleNamespace(world_size=1, distributed=False, rank=0, device=torch.device("cpu"))
SHORT = ["train.steps=1", "train.ckpt_every=1", "train.val_every=1", "train.warmup_steps=0"]


@pytest.fixture
def observed(monkeypatch):
    """What happens while the loop computes a loss: whether deterministic algorithms are on,
    and which blocks run through ``torch.utils.checkpoint`` (ClimaX's and PhysicsNeMo's UNets')."""
    seen = SimpleNamespace(deterministic=[], cudnn_benchmark=[], checkpointed=[])
    real_step = loop.train_step

    def train_step(net, batches, loss_fn, *args):
        def watched(n, batch):
            seen.deterministic.append(torch.are_deterministic_algorithms_enabled())
            seen.cudnn_benchmark.append(torch.backends.cudnn.benchmark)
            return loss_fn(n, batch)

        return real_step(net, batches, watched, *args)

    def counting(module):
        real = module.checkpoint

        def checkpoint(fn, *args, **kwargs):
            seen.checkpointed.append(type(fn).__name__)
            return real(fn, *args, **kwargs)

        monkeypatch.setattr(module, "checkpoint", checkpoint)

    monkeypatch.setattr(loop, "train_step", train_step)
    counting(climax_module)
    counting(song_unet)
    return seen


def forecast(store, run_dir, *overrides):  # noqa: F811
    return train_forecast(forecast_config(store, run_dir, *SHORT, *overrides))


def climatebench(bench, run_dir, *overrides):  # noqa: F811
    return train_climatebench(climatebench_config(bench, run_dir, *SHORT, *overrides))


def corrdiff_regression(mini, run_dir, *overrides):  # noqa: F811
    return train_corrdiff(corrdiff_config(mini, run_dir, *SHORT, *overrides))


def corrdiff_climax(mini, run_dir, *overrides):  # noqa: F811
    return train_corrdiff(corrdiff_config(mini, run_dir, *SHORT, *TINY_CLIMAX, *overrides))


TASKS = {
    "forecast": (forecast, "store", "Block"),
    "climatebench": (climatebench, "bench", "Block"),
    "corrdiff_regression": (corrdiff_regression, "mini", "UNetBlock"),
    "corrdiff_climax_regression": (corrdiff_climax, "mini", "Block"),
}


@pytest.mark.parametrize("task", list(TASKS))
@pytest.mark.parametrize("on", [True, False])
def test_every_task_honours_deterministic_and_grad_checkpointing(task, on, observed, request, tmp_path):
    run, fixture, block = TASKS[task]
    flag = str(on).lower()
    run(
        request.getfixturevalue(fixture),
        tmp_path / "run",
        f"train.deterministic={flag}",
        f"train.grad_checkpointing={flag}",
    )
    assert observed.deterministic and all(d == on for d in observed.deterministic)
    if on:
        assert not any(observed.cudnn_benchmark)  # autotuning would pick algorithms run by run
        assert observed.checkpointed and set(observed.checkpointed) == {block}
    else:
        assert observed.checkpointed == []
    assert not torch.are_deterministic_algorithms_enabled()  # restored after the run


@pytest.fixture(scope="module")
def regression_run(mini, tmp_path_factory):  # noqa: F811
    return corrdiff_regression(mini, tmp_path_factory.mktemp("reg") / "run")


@pytest.mark.parametrize("on", [True, False])
def test_the_diffusion_stage_honours_them_too(mini, regression_run, on, observed, tmp_path):  # noqa: F811
    flag = str(on).lower()
    train_corrdiff(
        corrdiff_config(
            mini,
            tmp_path / "res",
            *SHORT,
            f"model.regression_checkpoint_path={regression_run}",
            f"train.deterministic={flag}",
            f"train.grad_checkpointing={flag}",
            name="config_training_hrrr_mini_diffusion",
        )
    )
    assert observed.deterministic and all(d == on for d in observed.deterministic)
    assert (set(observed.checkpointed) == {"UNetBlock"}) if on else observed.checkpointed == []


def test_every_unet_block_is_checkpointed_and_a_net_without_any_has_no_switch():
    net = torch.nn.Sequential(
        song_unet.SongUNet(
            img_resolution=16,
            in_channels=2,
            out_channels=1,
            model_channels=8,
            channel_mult=[1, 2],
            num_blocks=1,
            attn_resolutions=[],
        )
    )
    assert net[0].checkpoint_threshold > 16  # the default: no block checkpointed at this size
    corrdiff_models.grad_checkpointing(net)()
    assert net[0].checkpoint_threshold == 0  # every feature map is larger: every block
    assert corrdiff_models.grad_checkpointing(torch.nn.Linear(2, 2)) is None


def toy_task(cfg, grad_checkpointing=None):
    """:func:`train_task` on a linear model, its builder's context kept."""
    seen = {}

    def build(ctx: TaskContext):
        seen["ctx"] = ctx
        model = torch.nn.Linear(2, 1)
        job = Trainable(
            model,
            lambda net, batch: net(batch).square().mean(),
            lambda e: [torch.ones(4, 2)],
            grad_checkpointing=grad_checkpointing,
        )
        return job, RunRecord(cfg, RunInfo(task="toy"))

    return train_task(cfg, build, name="toy.train"), seen


def test_a_model_without_gradient_checkpointing_is_refused_by_name(store, tmp_path):  # noqa: F811
    cfg = forecast_config(store, tmp_path / "run", *SHORT, "train.grad_checkpointing=true")
    with pytest.raises(
        ConfigError,
        match=r"train.grad_checkpointing=true: the toy model \(Linear\) has no "
        "gradient checkpointing",
    ):
        toy_task(cfg)
    assert not (tmp_path / "run").exists()
    calls = []
    (run_dir, model), seen = toy_task(cfg, grad_checkpointing=lambda: calls.append(1))
    assert calls == [1] and run_dir == tmp_path / "run" and isinstance(model, torch.nn.Linear)
    assert seen["ctx"].cfg.train.steps == 1 and seen["ctx"].world_size == 1


def test_the_engine_splits_the_batch_before_the_task_builds(store, tmp_path):  # noqa: F811
    cfg = forecast_config(store, tmp_path / "run", *SHORT, "train.total_batch_size=8", "train.batch_size=auto")
    _, seen = toy_task(cfg)
    assert seen["ctx"].cfg.train.batch_size == 8 and seen["ctx"].cfg.train.grad_accum == 1
    assert isinstance(seen["ctx"].plan, RunPlan) and seen["ctx"].plan.loader == "threads"


@pytest.mark.parametrize("loader", ["dali_cpu", "dali_gpu"])
def test_climatebench_refuses_the_dali_loaders_by_name(bench, tmp_path, loader):  # noqa: F811
    with pytest.raises(ConfigError, match=f"train.loader='{loader}': this task reads with"):
        climatebench(bench, tmp_path / "run", f"train.loader={loader}")
    assert not (tmp_path / "run").exists()


def test_validation_mean_weights_limits_and_averages():
    batches = [{"n": 2, "loss": 1.0, "rmse": 4.0}, {"n": 6, "loss": 3.0}, {"n": 1, "loss": 100.0}]
    scores = lambda b: {k: v for k, v in b.items() if k != "n"}  # noqa: E731
    per_batch = validation_mean(batches, scores, ONE_RANK, limit=2)
    assert per_batch == pytest.approx({"loss": 2.0, "rmse": 2.0})  # a missing score counts 0 in its batch
    per_sample = validation_mean(batches, scores, ONE_RANK, limit=2, weight=lambda b: b["n"])
    assert per_sample == pytest.approx({"loss": (2 * 1.0 + 6 * 3.0) / 8, "rmse": 2 * 4.0 / 8})
    assert validation_mean(batches, scores, ONE_RANK)["loss"] == pytest.approx(104.0 / 3)  # no limit: all
    assert validation_mean([], scores, ONE_RANK) == {}
