# SPDX-License-Identifier: Apache-2.0
"""Forecast reader, sharding over ranks x workers, several sources, registry."""

from collections import Counter

import numpy as np
import pytest
import torch
from era5_files import write_era5

from physicsnemo_climax.data import (
    ClimaXShardReader,
    ForecastBatches,
    PrepareConfig,
    make_loader,
    partition,
    prepare,
)


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    files = write_era5(tmp_path_factory.mktemp("raw"), years=(2000,))
    cfg = PrepareConfig(
        files,
        ["2m_temperature", "geopotential_500", "temperature_850", "land_sea_mask"],
        {"train": 2000},
        grid=(4, 8),
        shards_per_year=12,
    )
    return prepare(cfg, tmp_path_factory.mktemp("s") / "store")


def raw(reader, shard, t, names):
    return np.stack([np.asarray(reader.shards[shard].array(v))[t, 0] for v in names])


def test_random_leads_in_6h_steps_and_targets_match(store):
    reader = ClimaXShardReader(
        store, variables=["2m_temperature", "land_sea_mask"], out_variables=["geopotential_500"], normalize=False
    )
    reader.set_generator(torch.Generator().manual_seed(3))
    leads = []
    for i in range(0, len(reader), 7):
        sample = reader.read_raw(i)
        lead = float(sample["lead_time"])
        leads.append(lead)
        shard, t = reader.locate(i)
        assert np.array_equal(sample["x"], raw(reader, shard, t, reader.variables))
        assert np.array_equal(sample["y"], raw(reader, shard, t + int(lead) // 6, ["geopotential_500"])[0:1])
    assert set(leads) <= set(range(6, 169, 6)) and len(set(leads)) > 10
    assert min(leads) >= 6 and max(leads) <= 168
    # every sample's horizon stays inside its shard (30.5 days of 6-hourly steps)
    assert len(reader) == sum(s.steps - 28 for s in reader.shards)


def test_random_leads_depend_only_on_seed_epoch_index(store):
    def leads(seed, epoch):
        r = ClimaXShardReader(store, normalize=False)
        r.set_generator(torch.Generator().manual_seed(seed))
        r.set_epoch(epoch)
        return [r.lead_steps_of(i) for i in range(40)]

    assert leads(1, 0) == leads(1, 0)
    assert leads(1, 0) != leads(1, 1) and leads(1, 0) != leads(2, 0)


def test_fixed_lead_rollout_and_normalization(store):
    reader = ClimaXShardReader(store, variables=["temperature_850"], lead_hours=24, rollout_steps=3)
    sample = reader[5][0]
    assert sample["y"].shape == (3, 1, 4, 8) and float(sample["lead_time"]) == 24.0
    mean, std = reader.store.statistics(["temperature_850"])
    shard, t = reader.locate(5)
    for k in range(3):
        want = (raw(reader, shard, t + 4 * (k + 1), ["temperature_850"]) - mean[0]) / std[0]
        assert torch.allclose(sample["y"][k], torch.as_tensor(want, dtype=torch.float32), atol=1e-5)


def test_bad_reader_arguments(store):
    with pytest.raises(ValueError, match=r"\[9\] h are not multiples"):
        ClimaXShardReader(store, lead_hours=9)
    with pytest.raises(ValueError, match="rollout_steps"):
        ClimaXShardReader(store, lead_hours=6, rollout_steps=0)
    with pytest.raises(ValueError, match="no shard is longer"):
        ClimaXShardReader(store, lead_hours=6 * 200)
    with pytest.raises(ValueError, match="specific_humidity_850"):
        ClimaXShardReader(store, variables=["specific_humidity_850"])


@pytest.mark.parametrize("n", [10, 11, 13, 3])
@pytest.mark.parametrize("shuffle", [False, True])
def test_two_ranks_two_workers_cover_every_sample_once(n, shuffle):
    seen = np.concatenate(
        [partition(n, r, 2, w, 2, seed=5, epoch=2, shuffle=shuffle) for r in range(2) for w in range(2)]
    )
    assert sorted(seen.tolist()) == list(range(n))


def test_even_partition_gives_every_rank_the_same_count():
    for n in (10, 11, 13):
        counts = [len(partition(n, r, 4, seed=0, epoch=e, even=True)) for r in range(4) for e in (0, 1)]
        assert set(counts) == {n // 4}
    a = partition(11, 0, 2, seed=0, epoch=0)
    assert np.array_equal(a, partition(11, 0, 2, seed=0, epoch=0))
    assert not np.array_equal(a, partition(11, 0, 2, seed=0, epoch=1))


@pytest.mark.parametrize("backend", ["threads", "processes"])
def test_loader_with_workers_covers_each_sample_once_across_ranks(store, backend):
    reader = ClimaXShardReader(store, lead_hours=6)
    seen = Counter()
    for rank in range(2):
        batches = ForecastBatches([reader], batch_size=16, rank=rank, world=2, seed=0, even=False)
        batches.set_epoch(1)
        for batch in make_loader(batches, num_workers=2, backend=backend):
            assert batch.x.shape[1:] == (4, 4, 8) and batch.lead_time.eq(6).all()
            seen.update(batch.index.tolist())
    assert sorted(seen) == list(range(len(reader))) and set(seen.values()) == {1}


def test_threads_and_processes_give_the_same_batches_in_the_same_order(store):
    reader = ClimaXShardReader(store)  # random leads
    batches = ForecastBatches([reader], batch_size=50, seed=4, even=False)
    batches.set_epoch(3)
    a = list(make_loader(batches, num_workers=2, backend="threads"))
    b = list(make_loader(batches, num_workers=2, backend="processes"))
    assert len(a) == len(b) == batches.num_batches(2) == len(make_loader(batches, 2))
    for p, q in zip(a, b):
        assert torch.equal(p.index, q.index) and torch.equal(p.x, q.x) and torch.equal(p.y, q.y)
        assert torch.equal(p.lead_time, q.lead_time)
    with pytest.raises(ValueError, match="backend"):
        make_loader(batches, 2, backend="fibers")


def test_even_loader_runs_the_same_number_of_batches_on_each_rank(store):
    reader = ClimaXShardReader(store, lead_hours=6)
    lengths = [len(list(make_loader(ForecastBatches([reader], 7, rank=r, world=3), num_workers=2))) for r in range(3)]
    assert len(set(lengths)) == 1


def test_several_sources_with_different_variables(store):
    a = ClimaXShardReader(store, variables=["2m_temperature", "land_sea_mask"], lead_hours=6)
    b = ClimaXShardReader(
        store, variables=["geopotential_500", "temperature_850", "2m_temperature"], out_variables=["temperature_850"]
    )
    batches = ForecastBatches([a, b], batch_size=32, world=1, seed=1, even=False)
    seen = {0: Counter(), 1: Counter()}
    order = []
    for batch in make_loader(batches, num_workers=2):
        source = [a, b][batch.source]
        assert batch.variables == source.variables and batch.x.shape[1] == len(source.variables)
        assert batch.y.shape[1] == len(source.out_variables)
        seen[batch.source].update(batch.index.tolist())
        order.append(batch.source)
    assert sorted(seen[0]) == list(range(len(a))) and sorted(seen[1]) == list(range(len(b)))
    assert order != sorted(order)  # interleaved, not one source after the other


def test_registry_and_hydra_resolution(store):
    import importlib

    from hydra.utils import instantiate
    from omegaconf import OmegaConf
    from physicsnemo.datapipes.registry import COMPONENT_REGISTRY, register_resolvers

    import physicsnemo_climax.data as data

    importlib.reload(data)  # registering twice must not fail
    assert "ClimaXShardReader" in COMPONENT_REGISTRY.list()
    register_resolvers()
    cfg = OmegaConf.create(
        {
            "reader": {
                "_target_": "${dp:ClimaXShardReader}",
                "root": str(store),
                "variables": ["2m_temperature"],
                "lead_hours": 12,
            }
        }
    )
    reader = instantiate(cfg.reader)
    assert type(reader).__name__ == "ClimaXShardReader" and reader.lead_steps.tolist() == [2]


def test_batch_size_must_be_positive(store):
    with pytest.raises(ValueError, match="batch_size"):
        ForecastBatches([ClimaXShardReader(store, lead_hours=6)], batch_size=0)


def test_without_dali_the_torch_path_is_used_and_said(store, caplog):
    from physicsnemo_climax.config import load_config
    from physicsnemo_climax.data.epochs import forecast_epochs
    from physicsnemo_climax.data.loader import ThreadedLoader
    from physicsnemo_climax.engine.environment import Feature, probe
    from physicsnemo_climax.engine.plan import resolve

    env = probe()
    env.features["dali"] = Feature("DALI", False, "not installed")
    with caplog.at_level("WARNING"):
        plan = resolve(load_config(["train.loader=dali_cpu", "train.fallback=true"]), env)
    assert plan.loader == "threads"
    assert [r.message for r in caplog.records] == [
        "train.loader='dali_cpu' is not available here (NVIDIA DALI is missing (not installed)): "
        "falling back to 'threads', as fallback=true allows"
    ]
    batches = ForecastBatches([ClimaXShardReader(store, lead_hours=6)], batch_size=8)
    assert isinstance(forecast_epochs(batches, plan.loader, torch.device("cpu"), num_workers=2)(0), ThreadedLoader)
