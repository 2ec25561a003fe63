# SPDX-License-Identifier: Apache-2.0
"""Residual prediction (``model.residual``): increments over the input in units of each
variable's one-step change; off by default (the paper's model and its checkpoints exact);
with regions, rollouts, ``.mdlus`` and ``init=`` from a plain run."""

import numpy as np
import pytest
import torch
from physicsnemo.core import Module
from test_recipes import config, store  # noqa: F401 -- the store fixture

from physicsnemo_climax.data import ShardStore
from physicsnemo_climax.engine import checkpointing
from physicsnemo_climax.forecasting import Run, forecast
from physicsnemo_climax.models import ClimaX
from physicsnemo_climax.tasks import train

VARS = ["t2m", "z500", "lsm"]


def tiny(residual):
    torch.manual_seed(0)
    return ClimaX(variables=VARS, img_size=(8, 16), patch_size=2, embed_dim=32, depth=1, num_heads=4,
                  decoder_depth=1, drop_path=0.0, drop_rate=0.0, residual=residual).eval()


def test_residual_output_is_input_plus_scaled_head_output():
    plain, residual = tiny(False), tiny(True)
    residual.load_state_dict(plain.state_dict(), strict=False)
    residual.set_increments([0.5, 0.2, 0.01], hours=6.0)
    x, lead = torch.randn(2, 3, 8, 16), torch.tensor([6.0, 24.0])
    head = plain(x, lead, VARS, ["t2m", "z500"])
    out = residual(x, lead, VARS, ["t2m", "z500"])
    growth = torch.tensor([1.0, 2.0])[:, None, None]  # sqrt(lead / 6 h)
    assert torch.allclose(out[:, 0], x[:, 0] + head[:, 0] * 0.5 * growth, atol=1e-5)
    assert torch.allclose(out[:, 1], x[:, 1] + head[:, 1] * 0.2 * growth, atol=1e-5)
    # an output that is not an input stays the head's
    only = residual(x[:, [0, 2]], lead, ["t2m", "lsm"], ["z500"])
    assert torch.allclose(only, plain(x[:, [0, 2]], lead, ["t2m", "lsm"], ["z500"]), atol=1e-6)
    # the scale stops at sqrt(2), the change between two independent states
    residual.set_increments([1.0, 1.0, 1.0], hours=6.0)
    long = torch.tensor([48.0, 48.0])
    want = x[:, :1] + plain(x, long, VARS, ["t2m"]) * 2**0.5
    assert torch.allclose(residual(x, long, VARS, ["t2m"]), want, atol=1e-5)
    # a zero head forecasts persistence
    for p in residual.head.parameters():
        p.data.zero_()
    assert torch.equal(residual(x, lead, VARS, ["z500"])[:, 0], x[:, 1])


def test_the_default_model_has_no_residual_state():
    assert not any(k.startswith("increment") for k in tiny(False).state_dict())
    assert {"increment_std", "increment_hours"} <= set(tiny(True).state_dict())


def test_increment_std_by_hand(store):  # noqa: F811
    st = ShardStore(store)
    got = st.increment_std(["temperature_850"], pairs=10_000)  # every pair
    values = np.concatenate([np.diff(np.asarray(s.array("temperature_850"))[:, 0].astype(np.float64), axis=0)
                             for s in st.shards("train")])
    assert got[0] == pytest.approx(np.sqrt((values**2).mean()) / st.statistics(["temperature_850"])[1][0], rel=1e-6)


def test_residual_runs_train_roll_out_and_save_their_scale(store, tmp_path):  # noqa: F811
    run = train(config(store, tmp_path / "rollout", "task=finetune_rollout", "model.residual=true"))
    model = Module.from_checkpoint(str(checkpointing.model_file(run / "checkpoints")))
    st = ShardStore(store)
    assert model.residual and torch.allclose(model.increment_std.double(),
                                             torch.as_tensor(st.increment_std(model.variables)), rtol=1e-5)
    assert model.increment_hours.item() == st.hours_per_step
    shard = st.shards("test")[0]
    import xarray as xr

    ic = xr.Dataset({v: (("lat", "lon"), np.asarray(shard.array(v))[0, 0]) for v in model.variables},
                    coords={"lat": st.lat, "lon": st.lon})
    out = forecast(Run.load(run), ic, ["48h"])  # a rollout through residual steps
    assert np.isfinite(out.temperature_850.values).all()
    regional = train(config(store, tmp_path / "regional", "task=finetune_regional", "model.residual=true",
                            f"init={checkpointing.model_file(run / 'checkpoints')}"))
    assert Module.from_checkpoint(str(checkpointing.model_file(regional / "checkpoints"))).residual
