# SPDX-License-Identifier: Apache-2.0
"""DALI CPU pipeline gives the same batches as the torch path."""

import pytest
import torch
from era5_files import write_era5

from physicsnemo_climax.data import ClimaXShardReader, ForecastBatches, PrepareConfig, make_loader, prepare

pytest.importorskip("nvidia.dali")
pytestmark = pytest.mark.slow  # spawns DALI worker processes

from physicsnemo_climax.data.dali import DaliEpochs, DaliForecastLoader  # noqa: E402
from physicsnemo_climax.data.epochs import forecast_epochs  # noqa: E402


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    files = write_era5(tmp_path_factory.mktemp("raw"), years=(2000,))
    cfg = PrepareConfig(
        files,
        ["2m_temperature", "geopotential_500", "temperature_850"],
        {"train": 2000},
        grid=(4, 8),
        shards_per_year=24,
    )
    return prepare(cfg, tmp_path_factory.mktemp("s") / "store")


def sources(store, normalize):
    return [
        ClimaXShardReader(store, variables=["2m_temperature", "geopotential_500"], normalize=normalize),
        ClimaXShardReader(store, variables=["temperature_850"], lead_hours=12, rollout_steps=2, normalize=normalize),
    ]


def test_dali_cpu_equals_torch_path(store):
    plan = dict(batch_size=64, rank=1, world=2, seed=3, even=True)
    torch_batches = ForecastBatches(sources(store, True), **plan)
    torch_batches.set_epoch(4)
    expected = list(make_loader(torch_batches, num_workers=0))

    dali = DaliForecastLoader(
        ForecastBatches(sources(store, False), **plan), device_id=None, num_workers=2, first_epoch=4
    )
    got = list(dali)
    assert len(got) == len(expected) > 2
    for a, b in zip(got, expected):
        assert a.source == b.source and a.variables == b.variables
        assert torch.equal(a.index, b.index) and torch.equal(a.lead_time, b.lead_time)
        assert a.y.shape == b.y.shape
        assert torch.allclose(a.x, b.x, atol=1e-5) and torch.allclose(a.y, b.y, atol=1e-5)
    # a second pass is the next epoch: same plan as the torch path at epoch 5
    torch_batches.set_epoch(5)
    second = [b.index for b in dali]
    assert [torch.equal(a, b.index) for a, b in zip(second, make_loader(torch_batches, 0))] == [True] * len(second)


def test_dali_reads_raw_samples_whatever_the_readers_normalize(store):
    """The pipeline normalizes; readers built to normalize (the torch path's) give the same batches."""
    plan = dict(batch_size=64, seed=3)
    a = list(DaliForecastLoader(ForecastBatches(sources(store, True), **plan), num_workers=1))
    b = list(DaliForecastLoader(ForecastBatches(sources(store, False), **plan), num_workers=1))
    assert len(a) == len(b) > 0 and all(torch.equal(x.x, y.x) and torch.equal(x.y, y.y) for x, y in zip(a, b))


def test_forecast_epochs_builds_one_dali_pipeline_for_the_run(store):
    epochs = forecast_epochs(
        ForecastBatches(sources(store, True), batch_size=64), "dali_cpu", torch.device("cpu"), num_workers=1
    )
    assert isinstance(epochs, DaliEpochs)
    first = epochs(2)
    assert isinstance(first, DaliForecastLoader) and epochs(3) is first
