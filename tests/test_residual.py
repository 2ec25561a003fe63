# SPDX-License-Identifier: Apache-2.0
"""Residual prediction (``model.residual``): damped persistence of each variable's anomaly plus
the head in units of that forecast's error; off by default (the paper's model and its checkpoints exact);
with regions, rollouts, ``.mdlus`` and ``init=`` from a plain run."""

import numpy as np
import pytest
import torch
from physicsnemo.core import Module
from test_recipes import config, store  # noqa: F401 -- the store fixture

from physicsnemo_climax.data import ShardStore
from physicsnemo_climax.data.anomalies import anomaly_statistics
from physicsnemo_climax.engine import checkpointing
from physicsnemo_climax.forecasting import Run, forecast
from physicsnemo_climax.models import ClimaX
from physicsnemo_climax.tasks import train

VARS = ["t2m", "z500", "lsm"]


def tiny(residual):
    torch.manual_seed(0)
    return ClimaX(
        variables=VARS,
        img_size=(8, 16),
        patch_size=2,
        embed_dim=32,
        depth=1,
        num_heads=4,
        decoder_depth=1,
        drop_path=0.0,
        drop_rate=0.0,
        residual=residual,
    ).eval()


def test_residual_output_is_damped_anomaly_persistence_plus_scaled_head():
    plain, residual = tiny(False), tiny(True)
    residual.load_state_dict(plain.state_dict(), strict=False)
    x, lead = torch.randn(2, 3, 8, 16), torch.tensor([6.0, 9.0])
    # until the data set them: the head's output alone at a table step or more
    torch.testing.assert_close(residual(x, lead, VARS, ["t2m"]), plain(x, lead, VARS, ["t2m"]))
    clim = torch.randn(3, 8, 16)
    # per latitude row: rows 0-3 persist as [0.9, 0.6] at lag 1 and [0.5, 0.2] beyond, rows 4-7 as 0.3 and 0.1
    corr = torch.ones(3, 8, residual.anomaly_corr.shape[-1])
    corr[:, :4, 1], corr[:, :4, 2:] = (
        torch.tensor([0.9, 0.6, 1.0])[:, None],
        torch.tensor([0.5, 0.2, 1.0])[:, None, None],
    )
    corr[:2, 4:, 1], corr[:2, 4:, 2:] = 0.3, 0.1
    std = torch.tensor([0.5, 0.2, 0.01])[:, None].repeat(1, 8)
    std[:2, 4:] = 2.0
    residual.set_anomalies(clim, std, corr, hours=6.0)
    head = plain(x, lead, VARS, ["t2m", "z500"])
    out = residual(x, lead, VARS, ["t2m", "z500"])
    south = [torch.tensor([0.9, 0.6]), torch.tensor([0.7, 0.4])]  # 9 h: half way to lag 2
    north = [torch.tensor([0.3, 0.3]), torch.tensor([0.2, 0.2])]
    for b in range(2):
        for j, sd in enumerate([0.5, 0.2]):
            for rows, rho, s in ((slice(0, 4), south[b][j], sd), (slice(4, 8), north[b][j], 2.0)):
                c, a = clim[j, rows], x[b, j, rows]
                want = c + rho * (a - c) + head[b, j, rows] * s * (1 - rho**2) ** 0.5
                torch.testing.assert_close(out[b, j, rows], want, atol=1e-5, rtol=1e-5)
    # an output that is not an input stays the head's
    only = residual(x[:, [0, 2]], lead, ["t2m", "lsm"], ["z500"])
    torch.testing.assert_close(only, plain(x[:, [0, 2]], lead, ["t2m", "lsm"], ["z500"]))
    # a regional forecast damps towards the region's climatology, with its rows' persistence
    region = residual.resolve_region((-30, 30, 0, 90))
    for p in residual.head.parameters():
        p.data.zero_()
    got = residual(x, lead, VARS, ["t2m"], region=region)
    rho = torch.where(region.rows < 4, 0.9, 0.3)[:, None]
    torch.testing.assert_close(got[0, 0], region.crop(clim[0]) + rho * region.crop(x[0, 0] - clim[0]))


def test_statistics_saved_per_variable_load_on_every_row():
    residual = tiny(True)
    state = residual.state_dict()
    state["anomaly_std"] = torch.tensor([0.5, 0.2, 0.1])
    state["anomaly_corr"] = torch.linspace(1, 0, residual.anomaly_corr.shape[-1]).repeat(3, 1)
    residual.load_state_dict(state)
    assert torch.equal(residual.anomaly_std, torch.tensor([0.5, 0.2, 0.1])[:, None].expand(3, 8))
    assert torch.equal(residual.anomaly_corr[:, 5], state["anomaly_corr"])


def test_the_default_model_has_no_residual_state():
    assert not any(k.startswith(("anomaly", "climatology")) for k in tiny(False).state_dict())
    assert {"climatology", "anomaly_std", "anomaly_corr", "anomaly_hours"} <= set(tiny(True).state_dict())


def test_anomaly_statistics_by_hand(store):  # noqa: F811
    st = ShardStore(store)
    stats = anomaly_statistics(st, ["temperature_850"], 12.0, lags=8, anchors=10_000)  # every anchor
    mean, std = st.statistics(["temperature_850"])
    clim = (st.climatology("train", ["temperature_850"])[0] - mean[0]) / std[0]
    series = [
        (np.asarray(s.array("temperature_850"))[:, 0].astype(np.float64) - mean[0]) / std[0] - clim
        for s in st.shards("train")
    ]
    anchors = [(a[: len(a) - 2], a) for a in series]  # 12 h = 2 steps of 6 h
    assert stats.std.shape == (1, len(st.lat)) and stats.corr.shape == (1, len(st.lat), 8)
    for row in (0, len(st.lat) // 2, len(st.lat) - 1):  # each latitude row on its own
        power0 = sum((x[:, row] ** 2).sum() for x, _ in anchors)
        cells = st.grid[1] * sum(len(x) for x, _ in anchors)
        assert stats.std[0, row] == pytest.approx(np.sqrt(power0 / cells), rel=1e-5)
        for k in (1, 2):
            cross = sum((x[:, row] * a[k : k + len(x), row]).sum() for x, a in anchors)
            powerk = sum((a[k : k + len(x), row] ** 2).sum() for x, a in anchors)
            assert stats.corr[0, row, k] == pytest.approx(cross / np.sqrt(power0 * powerk), rel=1e-5)
    assert (stats.corr[..., 0] == pytest.approx(1.0)) and (stats.corr[..., 3:] == stats.corr[..., 2:3]).all()
    np.testing.assert_allclose(stats.climatology[0], clim, rtol=1e-5, atol=1e-6)
    assert stats.hours == 6.0


def test_residual_runs_train_roll_out_and_save_their_scale(store, tmp_path):  # noqa: F811
    run = train(config(store, tmp_path / "rollout", "task=finetune_rollout", "model.residual=true"))
    model = Module.from_checkpoint(str(checkpointing.model_file(run / "checkpoints")))
    st = ShardStore(store)
    stats = anomaly_statistics(st, model.variables, 6.0)
    assert model.residual and torch.allclose(model.anomaly_std.double(), torch.as_tensor(stats.std), rtol=1e-5)
    assert torch.allclose(model.anomaly_corr.double(), torch.as_tensor(stats.corr), rtol=1e-5)
    assert model.anomaly_hours.item() == st.hours_per_step
    shard = st.shards("test")[0]
    import xarray as xr

    ic = xr.Dataset(
        {
            v: (("lat", "lon"), np.asarray(shard.array(v))[0, 0], {"units": st.manifest["units"][v]})
            for v in model.variables
        },
        coords={"lat": st.lat, "lon": st.lon},
    )
    out = forecast(Run.load(run), ic, ["48h"])  # a rollout through residual steps
    assert np.isfinite(out.temperature_850.values).all()
    regional = train(
        config(
            store,
            tmp_path / "regional",
            "task=finetune_regional",
            "model.residual=true",
            f"init={checkpointing.model_file(run / 'checkpoints')}",
        )
    )
    assert Module.from_checkpoint(str(checkpointing.model_file(regional / "checkpoints"))).residual
