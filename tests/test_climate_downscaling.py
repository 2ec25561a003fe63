# SPDX-License-Identifier: Apache-2.0
"""Climate-model downscaling (``task=climate_downscaling``): valid-time pairing and the calendar
rule, the interpolations, the scores against hand computations, the residual option, and
train -> evaluate -> downscale a coarse file end to end on tiny stores."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from test_recipes import config as recipes_config

from physicsnemo_climax.cli import main
from physicsnemo_climax.climate_downscaling import DownscalingRun, downscale_coarse, evaluate, write_downscaled
from physicsnemo_climax.climate_downscaling.data import PairedFields, bilinear_matrices, interpolate, store_pair
from physicsnemo_climax.climate_downscaling.model import build_model, predict, residual_map
from physicsnemo_climax.climate_downscaling.pairing import pair_times
from physicsnemo_climax.climate_downscaling.scores import DownscalingScores
from physicsnemo_climax.config import load_config, load_run_config
from physicsnemo_climax.data.regrid import regrid, regrid_weights
from physicsnemo_climax.data.store import ShardStore
from physicsnemo_climax.errors import ConfigError, DataError, InputError, OutputError
from physicsnemo_climax.grid import regular_grid
from physicsnemo_climax.metrics import latitude_weights
from physicsnemo_climax.tasks import summarize, train

VARS = ["temperature_850", "geopotential_500"]
UNITS = {"temperature_850": "K", "geopotential_500": "m**2 s**-2"}


def field(times: np.ndarray, lat: np.ndarray, lon: np.ndarray, k: int) -> np.ndarray:
    """A smooth analytic field ``[T, H, W]`` of valid time and place: the same on every grid."""
    days = (times - np.datetime64("2000-01-01", "h")) / np.timedelta64(24, "h")
    la, lo = np.deg2rad(lat)[None, :, None], np.deg2rad(lon)[None, None, :]
    wave = np.cos(la) * np.cos(2 * lo - 0.7 * days[:, None, None] + k) + 0.3 * np.sin(3 * la) * np.sin(lo + k)
    return (10.0 * (k + 1) * wave + 100.0 * k + 250.0).astype(np.float32)


def make_store(root, periods: dict, grid=(8, 16), calendar=None, variables=VARS, value=field):
    """A store in the layout of ``climax data prepare`` (one shard per split, 6-hourly steps from
    each period's start), written directly: ``periods`` is ``{split: (first, last)}``."""
    lat, lon = regular_grid(grid)
    all_fields = {}
    for split, (first, last) in periods.items():
        times = np.arange(np.datetime64(first, "h"), np.datetime64(last, "D") + 1, np.timedelta64(6, "h"))
        fields = {v: value(times, lat, lon, k)[:, None] for k, v in enumerate(variables)}
        (root / split).mkdir(parents=True)
        np.savez(root / split / f"{first[:4]}_0.npz", **fields)
        all_fields.setdefault("train", fields) if split == "train" else None
    np.save(root / "lat.npy", lat)
    np.save(root / "lon.npy", lon)
    stats = all_fields.get("train") or fields
    np.savez(root / "normalize_mean.npz", **{v: np.array([stats[v].mean()]) for v in variables})
    np.savez(root / "normalize_std.npz", **{v: np.array([stats[v].std()]) for v in variables})
    spans = {s: [[f"{a}T00", f"{b}T18"]] for s, (a, b) in periods.items()}
    manifest = {"variables": variables, "hours_per_step": 6, "splits": spans, "coverage": spans, "units": UNITS}
    if calendar is not None:
        manifest["calendar"] = calendar
    (root / "store.json").write_text(json.dumps(manifest))
    return root


PERIODS = {
    "train": ("2000-01-01", "2000-01-20"),
    "val": ("2000-01-21", "2000-01-24"),
    "test": ("2000-01-25", "2000-01-31"),
}


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    """A coarse (8 x 16) input and a fine (16 x 32) target store of the same analytic fields."""
    root = tmp_path_factory.mktemp("pair")
    return make_store(root / "coarse", PERIODS, (8, 16)), make_store(root / "fine", PERIODS, (16, 32))


# ------------------------------------------------------------------ pairing and calendars
def stamp_store(root, first, last, calendar=None):
    """A store whose only field is its own valid time (hours since 2000): pairs are checkable."""
    hours = lambda times, lat, lon, k: (
        np.broadcast_to(
            ((times - np.datetime64("2000-01-01", "h")) / np.timedelta64(1, "h"))[:, None, None],
            (len(times), *lat.shape, *lon.shape),
        ).astype(np.float32)
        + k
    )
    return ShardStore(make_store(root, {"train": (first, last)}, (4, 8), calendar, value=hours))


def test_partial_overlap_pairs_the_common_valid_times(tmp_path):
    source = stamp_store(tmp_path / "in", "2000-01-01", "2000-01-10")
    target = stamp_store(tmp_path / "out", "2000-01-05", "2000-01-15")
    pairs = pair_times(source, target, "train")
    assert pairs.times[0] == np.datetime64("2000-01-05T00") and pairs.times[-1] == np.datetime64("2000-01-10T18")
    assert len(pairs.times) == 6 * 4 and pairs.unmatched_targets == 5 * 4 and pairs.dropped_leap_days == 0
    for (si, ti), (so, to), t in zip(pairs.input_at, pairs.target_at, pairs.times):
        hours = (t - np.datetime64("2000-01-01T00")) / np.timedelta64(1, "h")
        assert source.shards("train")[si].array(VARS[0])[ti, 0, 0, 0] == hours
        assert target.shards("train")[so].array(VARS[0])[to, 0, 0, 0] == hours


def test_no_common_valid_time_names_both_stores_and_periods(tmp_path):
    source = stamp_store(tmp_path / "in", "2000-01-01", "2000-01-03")
    target = stamp_store(tmp_path / "out", "2000-02-01", "2000-02-03")
    with pytest.raises(DataError, match="no valid time") as err:
        pair_times(source, target, "train")
    for text in (str(source.root), str(target.root), "'train'", "2000-01-01T00", "2000-02-03T18"):
        assert text in str(err.value)


@pytest.mark.parametrize("given,wanted", [("360_day", "standard"), ("standard", "noleap"), ("noleap", "360_day")])
def test_calendar_mismatch_is_refused_naming_both(tmp_path, given, wanted):
    source = stamp_store(tmp_path / "in", "2000-01-01", "2000-01-03", given)
    target = stamp_store(tmp_path / "out", "2000-01-01", "2000-01-03", wanted)
    with pytest.raises(DataError, match="calendars differ") as err:
        pair_times(source, target, "train")
    assert f"'{given}'" in str(err.value) and f"'{wanted}'" in str(err.value)


def test_standard_family_is_one_calendar_after_1582(tmp_path):
    source = stamp_store(tmp_path / "in", "2000-01-01", "2000-01-03", "proleptic_gregorian")
    target = stamp_store(tmp_path / "out", "2000-01-01", "2000-01-03", "gregorian")
    pairs = pair_times(source, target, "train")
    assert pairs.rule == "same" and len(pairs.times) == 12


def test_noleap_input_drops_and_counts_29_february_targets(tmp_path, monkeypatch):
    source = stamp_store(tmp_path / "in", "2000-02-27", "2000-03-02", "365_day")
    target = stamp_store(tmp_path / "out", "2000-02-27", "2000-03-02")
    # a noleap store's stamps are calendar dates, with no 29 February (the data layer's contract)
    noleap = [t[(t.astype("datetime64[D]") != np.datetime64("2000-02-29"))] for t in source.shard_times("train")]
    monkeypatch.setattr(source, "shard_times", lambda split: noleap)
    pairs = pair_times(source, target, "train")
    assert pairs.rule == "noleap_to_standard" and pairs.dropped_leap_days == 4 and pairs.unmatched_targets == 4
    assert not any(str(t).startswith("2000-02-29") for t in pairs.times) and len(pairs.times) == 4 * 4


def test_a_split_a_store_lacks_is_named(tmp_path):
    source = stamp_store(tmp_path / "in", "2000-01-01", "2000-01-03")
    target = stamp_store(tmp_path / "out", "2000-01-01", "2000-01-03")
    with pytest.raises(DataError, match=r"in has no 'val' split; it has \['train'\]"):
        pair_times(source, target, "val")


# ------------------------------------------------------------------ interpolation and scores
@pytest.mark.parametrize("method", ["bilinear", "conservative"])
def test_interpolation_is_data_regrid(method):
    lat, lon = regular_grid((8, 16))
    lat_out, lon_out = regular_grid((16, 32))
    values = np.random.default_rng(0).normal(size=(3, 8, 16))
    da = xr.DataArray(values, dims=("time", "lat", "lon"), coords={"lat": lat, "lon": lon})
    expected = regrid(da, lat_out, lon_out, method).values
    if method == "bilinear":
        matrices = bilinear_matrices(lat, lon, lat_out, lon_out)
    else:
        matrices = tuple(torch.as_tensor(w) for w in regrid_weights(lat, lon, lat_out, lon_out, method))
    got = interpolate(torch.as_tensor(values), matrices).numpy()
    np.testing.assert_allclose(got, expected, rtol=1e-6, atol=1e-6)


def test_scores_match_hand_computations():
    rng = np.random.default_rng(1)
    lat, _ = regular_grid((6, 12))
    truth = rng.normal(5e4, 300.0, size=(5, 2, 6, 12))
    pred = truth + rng.normal(20.0, 50.0, size=truth.shape)
    scores = DownscalingScores(torch.as_tensor(lat), {"a": 5e4, "b": 5e4})
    for part in (slice(0, 2), slice(2, 5)):  # two batches
        scores.add("model", ["a", "b"], torch.as_tensor(pred[part]), torch.as_tensor(truth[part]))
    table = scores.table().set_index("variable")
    w = np.cos(np.deg2rad(lat))
    w = (w / w.mean())[:, None]
    for k, name in enumerate("ab"):
        p, t = pred[:, k], truth[:, k]
        row = table.loc[name]
        assert row.rmse == pytest.approx(
            np.mean(np.sqrt(((p - t) ** 2 * w).mean(axis=(1, 2)))), rel=1e-6
        )  # float32 weights
        assert row.mean_bias == pytest.approx(p.mean() - t.mean(), rel=1e-9)
        assert row.area_weighted_bias == pytest.approx(((p - t) * w).mean(), rel=1e-6)
        assert row.pearson == pytest.approx(np.corrcoef(p.ravel(), t.ravel())[0, 1], rel=1e-9)
        assert row.samples == 5
    spectra = scores.spectra()
    assert set(spectra.method) == {"model", "truth"} and spectra.wavenumber.max() == 6


# ------------------------------------------------------------------ residual
def test_residual_prediction_is_interpolation_plus_model_output(stores):
    cfg = load_config(["task=climate_downscaling", f"data.input_root={stores[0]}", f"data.root={stores[1]}"])
    pair = store_pair(cfg)
    data = PairedFields(pair, pair_times(pair.input_store, pair.target_store, "test"))
    batch = torch.utils.data.default_collate([data[0], data[3]])
    residual = residual_map(pair.model_inputs, pair.out_variables, pair.statistics)
    torch.manual_seed(0)
    net = lambda x, lead, inputs, outputs: torch.randn(x.shape[0], len(outputs), *x.shape[2:])
    torch.manual_seed(0)
    plain = predict(net, batch["x"], pair.model_inputs, pair.out_variables, None)
    torch.manual_seed(0)
    with_residual = predict(net, batch["x"], pair.model_inputs, pair.out_variables, residual)
    # in physical units, the residual part is the bilinear interpolation of the coarse input itself
    s_out = pair.statistics["target"]
    coarse = ShardStore(stores[0])
    for k, name in enumerate(pair.out_variables):
        base = (with_residual - plain)[:, k] * s_out[name]["std"] + s_out[name]["mean"]
        raw = coarse.shards("test")[0].array(name)[[0, 3], 0]
        expected = regrid(
            xr.DataArray(raw, dims=("t", "lat", "lon"), coords={"lat": coarse.lat, "lon": coarse.lon}),
            *regular_grid((16, 32)),
            "bilinear",
        )
        np.testing.assert_allclose(base.numpy(), expected.values, rtol=1e-5, atol=1e-3)


def test_residual_needs_outputs_among_inputs():
    stats = {"input": {"a": {"mean": 0, "std": 1}}, "target": {"b": {"mean": 0, "std": 1}}}
    with pytest.raises(ConfigError, match=r"task.residual.*\['b'\]"):
        residual_map(["a"], ["b"], stats)


# ------------------------------------------------------------------ end to end
def config(stores, run_dir, *overrides):
    """The recipes' tiny run (:func:`test_recipes.config`) as climate downscaling of ``stores``
    (coarse, fine), validated and saved once, at its last step."""
    return recipes_config(
        stores[1],
        run_dir,
        "task=climate_downscaling",
        f"data.input_root={stores[0]}",
        "train.warmup_steps=1",
        "train.val_every=6",
        "train.ckpt_every=6",
        *overrides,
    )


@pytest.fixture(scope="module")
def trained(stores, tmp_path_factory):
    run_dir = tmp_path_factory.mktemp("runs") / "cds"
    train(config(stores, run_dir, "task.residual=true"))
    return run_dir


def test_the_run_records_what_evaluation_needs(trained, stores):
    info = json.loads((trained / "run.json").read_text())
    facts = info["downscaling"]
    assert info["out_variables"] == VARS and info["variables"] == [] and len(info["lat"]) == 16
    assert facts["input_variables"] == VARS and len(facts["input_lat"]) == 8 and facts["residual"] is True
    assert facts["calendars"] == {"input": "standard", "target": "standard"}
    assert facts["pairs"]["train"]["samples"] == 20 * 4 and facts["pairs"]["train"]["calendar_rule"] == "same"
    assert facts["pairs"]["test"] == {
        "samples": 7 * 4,
        "first": "2000-01-25T00",
        "last": "2000-01-31T18",
        "calendar_rule": "same",
        "dropped_leap_days": 0,
        "unmatched_targets": 0,
    }
    assert facts["input_statistics"]["temperature_850"]["mean"] == pytest.approx(
        float(np.load(stores[0] / "normalize_mean.npz")["temperature_850"][0])
    )


def test_evaluation_scores_model_and_both_interpolations(trained, stores):
    cfg = load_run_config(trained, ["eval.max_samples=10", "eval.batch_size=4"])
    scored = evaluate(cfg)
    assert "conservative" in summarize(cfg, scored) and str(cfg.eval.out_dir) in summarize(cfg, scored)
    table = scored.set_index(["method", "variable"])
    assert set(table.index.get_level_values("method")) == {"model", "bilinear", "conservative"}
    assert (table.samples == 10).all()
    # the bilinear row is data.regrid.regrid of the test inputs, scored by hand
    coarse, fine = ShardStore(stores[0]), ShardStore(stores[1])
    chosen = np.unique(np.linspace(0, 27, 10).round().astype(int))
    w = latitude_weights(torch.as_tensor(fine.lat)).double().numpy()[:, None]
    for name in VARS:
        raw = np.asarray(coarse.shards("test")[0].array(name))[chosen, 0].astype(np.float64)
        da = xr.DataArray(raw, dims=("t", "lat", "lon"), coords={"lat": coarse.lat, "lon": coarse.lon})
        guess = regrid(da, fine.lat, fine.lon, "bilinear").values
        truth = np.asarray(fine.shards("test")[0].array(name))[chosen, 0].astype(np.float64)
        expected = np.mean(np.sqrt(((guess - truth) ** 2 * w).mean(axis=(1, 2))))
        assert table.loc[("bilinear", name), "rmse"] == pytest.approx(expected, rel=1e-4)
    out = trained / "eval"
    for name in ("scores.csv", "scores.json", "summary.md", "spectra.csv", "spectra.png"):
        assert (out / name).exists(), name
    record = json.loads((out / "scores.json").read_text())
    assert record["pairs"]["calendar_rule"] == "same"
    assert record["device"] == ("cuda" if torch.cuda.is_available() else "cpu")  # eval.device unset
    spectra = pd.read_csv(out / "spectra.csv")
    assert set(spectra.method) == {"model", "truth", "bilinear", "conservative"}


def coarse_file(stores, path):
    """The coarse test fields of the input store as a NetCDF file (latitudes north to south)."""
    coarse = ShardStore(stores[0])
    times = coarse.shard_times("test")[0][:5]
    data = {v: (("time", "lat", "lon"), np.asarray(coarse.shards("test")[0].array(v))[:5, 0, ::-1]) for v in VARS}
    ds = xr.Dataset(data, coords={"time": times.astype("datetime64[ns]"), "lat": coarse.lat[::-1], "lon": coarse.lon})
    ds.to_netcdf(path)
    return ds


def test_downscaling_a_coarse_file_matches_the_evaluated_model(trained, stores, tmp_path):
    ds = coarse_file(stores, tmp_path / "coarse.nc")
    run = DownscalingRun.load(trained, "cpu")
    out = downscale_coarse(run, ds)
    assert list(out.data_vars) == VARS and out.temperature_850.shape == (5, 16, 32)
    assert np.array_equal(out.time.values, ds.time.values) and out.temperature_850.attrs["units"] == "K"
    cfg = load_run_config(trained)
    pair = store_pair(cfg)
    data = PairedFields(pair, pair_times(pair.input_store, pair.target_store, "test"))
    x = torch.stack([data[i]["x"] for i in range(5)])
    stats = run.statistics["target"]["geopotential_500"]
    expected = run.predict(x)[:, 1].detach().numpy() * stats["std"] + stats["mean"]
    np.testing.assert_allclose(out.geopotential_500.values, expected, rtol=1e-4, atol=1e-2)


def test_a_coarse_dataset_the_run_cannot_read_is_refused_by_name(trained, stores, tmp_path):
    ds = coarse_file(stores, tmp_path / "coarse.nc")
    run = DownscalingRun.load(trained, "cpu")
    with pytest.raises(InputError, match=r"lacks the run's inputs \['geopotential_500'\]"):
        downscale_coarse(run, ds.drop_vars("geopotential_500"))
    with pytest.raises(InputError, match="not the run's input grid"):
        downscale_coarse(run, ds.isel(lat=slice(0, 4)))
    with pytest.raises(InputError, match="temperature_850 is in 'degC'"):
        downscale_coarse(run, ds.assign(temperature_850=ds.temperature_850.assign_attrs(units="degC")))
    with pytest.raises(InputError, match="temperature_850 holds non-finite"):
        downscale_coarse(run, ds.where(ds.lat > -70))
    single = downscale_coarse(run, ds.isel(time=0).rename(lat="latitude", lon="longitude"))
    assert single.geopotential_500.shape == (1, 16, 32)


def test_cli_downscales_a_file_atomically_and_refuses_to_overwrite(trained, stores, tmp_path, capsys):
    coarse_file(stores, tmp_path / "coarse.nc")
    output = tmp_path / "fine.nc"
    args = ["forecast", "--run", str(trained), "--input", str(tmp_path / "coarse.nc"), "--output", str(output)]
    main([*args, "--device", "cpu"])
    assert "wrote" in capsys.readouterr().out
    with xr.open_dataset(output) as fine:
        assert fine.geopotential_500.shape == (5, 16, 32) and fine.attrs["device"] == "cpu"
    before = output.read_bytes()
    with pytest.raises(SystemExit) as stop:
        main(args)
    assert stop.value.code == 1 and "--overwrite" in capsys.readouterr().err and output.read_bytes() == before
    with pytest.raises(SystemExit):
        main([*args, "--lead", "6"])  # a downscaling run has no lead
    assert "leave out --lead" in capsys.readouterr().err
    with pytest.raises(OutputError):
        write_downscaled(trained, tmp_path / "coarse.nc", output)


def test_init_moves_variables_by_name_and_resamples_the_positions(trained, stores, caplog):
    source = next((trained / "checkpoints").glob("ClimaX.*.mdlus"))
    cfg = config(stores, trained.parent / "unused", f"init={source}")
    lat, lon = regular_grid((32, 64))  # another grid: twice the patches each way
    with caplog.at_level("INFO"):
        model = build_model(cfg, ["geopotential_500", "temperature_850"], ["geopotential_500"], lat, lon)
    before = DownscalingRun.load(trained, "cpu").model
    assert model.pos_embed.shape[1] == 4 * before.pos_embed.shape[1]
    for name in ("geopotential_500", "temperature_850"):
        here, there = model.variables.index(name), before.variables.index(name)
        assert torch.equal(model.var_embed[0, here], before.var_embed[0, there])
        assert torch.equal(model.token_embeds[here].proj.weight, before.token_embeds[there].proj.weight)
    assert torch.equal(model.blocks[0].attn.qkv.weight, before.blocks[0].attn.qkv.weight)
    assert "pos_embed" in caplog.text


def test_config_errors_name_the_key(stores, tmp_path):
    with pytest.raises(ConfigError, match="model.residual"):
        train(config(stores, tmp_path / "a", "model.residual=true"))
    with pytest.raises(ConfigError, match="data.out_variables.*nope"):
        train(config(stores, tmp_path / "b", "data.out_variables=[nope]"))
    with pytest.raises(ConfigError, match="data.input_root"):
        train(config(stores, tmp_path / "c", f"data.input_root={tmp_path / 'missing'}"))
