# SPDX-License-Identifier: Apache-2.0
"""Scores, spectra and plots of a downscaling generation file."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from physicsnemo.metrics.general.crps import crps

from physicsnemo_climax.downscaling import scores
from physicsnemo_climax.downscaling.plots import plot_maps, plot_spectra
from physicsnemo_climax.downscaling.scores import (
    LEAD_SCORE_COLUMNS,
    SCORE_COLUMNS,
    ensemble_scores,
    radial_spectrum,
    score_file,
    spectra_file,
    write_scores,
)

T, N, H, W = 3, 4, 8, 10


def write_generation(path, truth=True, regression=True, leads=None):
    """Small generation file (with ``lead_time``, in hours, when ``leads`` are given, as from forecast
    inputs); returns the arrays written, ``{group: {var: array}}``."""
    rng = np.random.default_rng(0)
    f = lambda *s: rng.normal(size=s).astype(np.float32)  # noqa: E731
    data = {
        "input": {"10u": f(T, H, W), "10v": f(T, H, W)},
        "regression": {"10u": f(T, H, W), "t2m": 280 + f(T, H, W)},
        "prediction": {"10u": f(N, T, H, W), "t2m": 280 + f(N, T, H, W)},
        "truth": {"10u": f(T, H, W), "t2m": 280 + f(T, H, W)},
    }
    if not truth:
        del data["truth"]
    if not regression:
        del data["regression"]
    lat = np.repeat(np.linspace(30, 31, H)[:, None], W, 1)
    root = xr.Dataset(
        {"lat": (("y", "x"), lat), "lon": (("y", "x"), np.repeat(np.linspace(-100, -99, W)[None], H, 0))},
        coords={"time": pd.date_range("2021-06-01", periods=T, freq="6h")},
    )
    if leads is not None:
        root = root.assign_coords(lead_time=("time", pd.to_timedelta(leads, "h")))
    root.to_netcdf(path, mode="w")
    for group, variables in data.items():
        dims = lambda a: ("ensemble", "time", "y", "x") if a.ndim == 4 else ("time", "y", "x")  # noqa: E731
        xr.Dataset({v: (dims(a), a) for v, a in variables.items()}).to_netcdf(path, mode="a", group=group)
    return data


@pytest.fixture
def gen(tmp_path):
    path = tmp_path / "gen.nc"
    return path, write_generation(path)


# ----------------------------------------------------------------------------- ensemble_scores


def test_crps_of_one_member_is_mae():
    s = ensemble_scores(torch.tensor([[1.0, 2.0, 3.0]]), torch.tensor([0.0, 0.0, 5.0]))
    assert s["mae"] == pytest.approx(5 / 3) and s["crps"] == pytest.approx(5 / 3)
    assert s["rmse"] == pytest.approx(math.sqrt((1 + 4 + 4) / 3))
    assert s["spread"] == 0 and s["spread_skill"] == 0


def test_identical_members():
    x = torch.tensor([0.1, -2.0, 7.3, 4.0])
    s = ensemble_scores(x.expand(5, 4), torch.tensor([1.0, 1.0, 1.0, 1.0]))
    assert s["crps"] == pytest.approx(s["mae"], abs=1e-12)
    assert s["mae"] == pytest.approx((0.9 + 3.0 + 6.3 + 3.0) / 4)
    assert s["spread"] == pytest.approx(0, abs=1e-12)


def test_crps_two_members_by_hand():
    # members 0, 2: E|X-y| - E|X-X'|/2 with the biased (1/m^2) pair mean
    pred = torch.tensor([[0.0, 0.0], [2.0, 2.0]])
    obs = torch.tensor([1.0, 5.0])
    assert crps(pred, obs, dim=0).tolist() == pytest.approx([1 - 0.5, 4 - 0.5])
    assert ensemble_scores(pred, obs)["crps"] == pytest.approx((0.5 + 3.5) / 2)


def test_scores_by_hand():
    pred = torch.tensor([[1.0, 3.0], [3.0, 5.0]])  # mean (2, 4), member variance (2, 2)
    s = ensemble_scores(pred, torch.tensor([1.0, 1.0]))  # errors (1, 3)
    assert s["rmse"] == pytest.approx(math.sqrt(5))
    assert s["mae"] == pytest.approx(2)
    assert s["crps"] == pytest.approx((0.5 + 2.5) / 2)
    assert s["spread"] == pytest.approx(math.sqrt(2))
    assert s["spread_skill"] == pytest.approx(math.sqrt(3 / 2) * math.sqrt(2) / math.sqrt(5))


def test_spread_skill_of_a_consistent_small_ensemble_is_one():
    # truth and 2 members drawn from the same distribution: the raw ratio is sqrt(2/3), corrected 1
    g = torch.Generator().manual_seed(0)
    draws = torch.randn(3, 200_000, generator=g, dtype=torch.float64) + torch.linspace(-5, 5, 200_000)
    assert ensemble_scores(draws[:2], draws[2])["spread_skill"] == pytest.approx(1, abs=0.01)


def test_shape_mismatch():
    with pytest.raises(ValueError, match="must be"):
        ensemble_scores(torch.zeros(2, 3), torch.zeros(4))


# ----------------------------------------------------------------------------- radial_spectrum


def test_spectrum_of_a_plane_wave():
    x = torch.arange(32.0)
    k, p = radial_spectrum(torch.cos(2 * math.pi * 5 * x / 32).expand(32, 32))
    assert k.shape == p.shape == (17,) and k[-1] == 0.5
    assert k[p.argmax()] == 5 / 32
    assert p[5] == pytest.approx(0.5)  # mean of cos^2
    assert p.sum() == pytest.approx(0.5)
    # diagonal wave, |k| = 2 sqrt(2) / 32 = 2.83 / 32: the ring nearest to it, index 3
    k, p = radial_spectrum(torch.cos(2 * math.pi * (2 * x[:, None] + 2 * x) / 32))
    assert p[3] == pytest.approx(0.5) and p.argmax() == 3


def test_spectrum_non_square_and_mean():
    y, x = torch.arange(16.0)[:, None], torch.arange(32.0)
    k, p = radial_spectrum(3 + torch.cos(2 * math.pi * 4 * x / 32) + torch.cos(2 * math.pi * 2 * y / 16))
    assert k.shape == (9,)  # n = min(H, W) = 16
    assert p[0] == pytest.approx(9)  # squared mean
    assert k[2] == 1 / 8 and p[2] == pytest.approx(1.0)  # both waves have wavelength 8 grid spacings
    assert p.sum() == pytest.approx(10.0)


def test_spectrum_keeps_leading_dims():
    x = torch.randn(3, 2, 16, 16)
    k, p = radial_spectrum(x)
    assert p.shape == (3, 2, 9)
    assert torch.allclose(p[1, 0], radial_spectrum(x[1, 0])[1])
    assert (p.sum(-1) <= x.square().mean((-2, -1)) + 1e-12).all()  # corners beyond Nyquist left out


# ----------------------------------------------------------------------------- files


def test_score_file_values(gen, monkeypatch):
    path, data = gen
    monkeypatch.setattr(scores, "_CHUNK_ELEMENTS", 1)  # one time at a time: sums must add up
    df = score_file(path)
    assert list(df.columns) == SCORE_COLUMNS
    assert list(zip(df.method, df.variable)) == [
        ("corrdiff", "10u"),
        ("corrdiff", "t2m"),
        ("regression", "10u"),
        ("regression", "t2m"),
        ("bilinear", "10u"),
    ]
    t = lambda a: torch.from_numpy(a)  # noqa: E731
    for v in ("10u", "t2m"):
        obs = t(data["truth"][v])
        expect = {
            "corrdiff": ensemble_scores(t(data["prediction"][v]), obs),
            "regression": ensemble_scores(t(data["regression"][v])[None], obs),
        }
        if v == "10u":
            expect["bilinear"] = ensemble_scores(t(data["input"][v])[None], obs)
        for method, e in expect.items():
            row = df[(df.method == method) & (df.variable == v)].iloc[0]
            for c in ("rmse", "mae", "crps", "spread", "spread_skill"):
                assert row[c] == pytest.approx(e[c], rel=1e-10), (method, v, c)
    det = df[df.method != "corrdiff"]
    assert np.allclose(det.crps, det.mae) and (det.spread == 0).all()
    assert (df[df.method == "corrdiff"].spread > 0).all()


def test_a_file_from_forecasts_is_scored_per_lead(tmp_path, monkeypatch):
    path = tmp_path / "gen.nc"
    data = write_generation(path, leads=[72, 6, 72])  # times 0 and 2 at 72 h, time 1 at 6 h
    monkeypatch.setattr(scores, "_CHUNK_ELEMENTS", 2 * N * H * W)  # chunks of two times: a lead split in two
    df = score_file(path, ["t2m"])
    assert list(df.columns) == LEAD_SCORE_COLUMNS
    assert list(zip(df.method, df.lead_hours)) == [
        ("corrdiff", 6),
        ("corrdiff", 72),
        ("regression", 6),
        ("regression", 72),
    ]
    t = lambda a: torch.from_numpy(a)  # noqa: E731
    truth, members = t(data["truth"]["t2m"]), t(data["prediction"]["t2m"])
    for lead, times in ((6, [1]), (72, [0, 2])):
        row = df[(df.method == "corrdiff") & (df.lead_hours == lead)].iloc[0]
        expect = ensemble_scores(members[:, times], truth[times])  # the times of that lead alone
        for c in ("rmse", "mae", "crps", "spread", "spread_skill"):
            assert row[c] == pytest.approx(expect[c], rel=1e-10), (lead, c)
    assert df.attrs["by_time"].lead_hours.tolist() == [72, 72, 6, 6, 72, 72]  # time order, method by method
    histograms = df.attrs["rank_histograms"]
    assert histograms.groupby(["method", "lead_hours"]).frequency.sum().round(6).eq(1).all()


def test_score_file_subset_and_no_regression(tmp_path):
    path = tmp_path / "g.nc"
    write_generation(path, regression=False)
    df = score_file(path, ["t2m"])
    assert list(zip(df.method, df.variable)) == [("corrdiff", "t2m")]


def test_score_file_errors(gen, tmp_path):
    path, _ = gen
    with pytest.raises(ValueError, match=r"nope.*available.*10u"):
        score_file(path, ["10u", "nope"])
    bare = tmp_path / "no_truth.nc"
    write_generation(bare, truth=False)
    with pytest.raises(ValueError, match="no_truth.nc.*truth"):
        score_file(bare)


def test_spectra_file(gen):
    path, data = gen
    spectra = spectra_file(path)
    assert list(spectra) == ["10u", "t2m"]
    assert list(spectra["10u"]) == ["truth", "corrdiff", "regression", "bilinear"]
    assert list(spectra["t2m"]) == ["truth", "corrdiff", "regression"]
    k, p = spectra["10u"]["corrdiff"]
    k_ref, p_ref = radial_spectrum(torch.from_numpy(data["prediction"]["10u"]))
    np.testing.assert_allclose(k, k_ref.numpy())
    np.testing.assert_allclose(p, p_ref.mean((0, 1)).numpy(), rtol=1e-12)  # members and times averaged
    np.testing.assert_allclose(spectra["t2m"]["truth"][1], radial_spectrum(data["truth"]["t2m"])[1].mean(0))


def test_write_scores(gen, tmp_path):
    path, _ = gen
    df = write_scores(path, tmp_path / "out")
    assert pd.read_csv(tmp_path / "out" / "scores.csv").equals(df)
    records = json.loads((tmp_path / "out" / "scores.json").read_text())
    assert len(records) == len(df) == 5 and records[0]["method"] == "corrdiff"
    assert records[-1]["crps"] == pytest.approx(df.crps.iloc[-1])


def numpy_scores(pred: np.ndarray, obs: np.ndarray, ddof: int) -> dict[str, float]:
    """The scores computed directly: ``pred`` ``[N, ...]``, ``obs`` ``[...]``, float64."""
    pred, obs = pred.astype(np.float64), obs.astype(np.float64)
    n, err = pred.shape[0], pred.mean(0) - obs
    pairs = np.abs(pred[:, None] - pred[None]).mean((0, 1))  # E|X - X'| over all N^2 pairs
    var = pred.var(0, ddof=ddof).mean() if n > 1 else 0.0
    rmse = np.sqrt((err**2).mean())
    unbiased = pred.var(0, ddof=1).mean() if n > 1 else 0.0
    return {
        "rmse": rmse,
        "mae": np.abs(err).mean(),
        "crps": (np.abs(pred - obs).mean(0) - pairs / 2).mean(),
        "spread": np.sqrt(var),
        "spread_skill": np.sqrt((n + 1) / n * unbiased) / rmse,
    }


@pytest.mark.parametrize("ddof", [0, 1])
def test_scores_per_time_and_whole_period_against_numpy(gen, monkeypatch, ddof):
    path, data = gen
    monkeypatch.setattr(scores, "_CHUNK_ELEMENTS", 2 * N * H * W)  # chunks of 2 times, then 1
    df = score_file(path, spread_ddof=ddof)
    by_time = df.attrs["by_time"]
    assert list(by_time.columns) == ["time", *SCORE_COLUMNS] and len(by_time) == T * len(df)
    times = pd.date_range("2021-06-01", periods=T, freq="6h")
    assert list(by_time.time) == [t for t in times for _ in range(len(df))]  # each time: the whole-period order
    assert list(by_time.method[:5]) == list(df.method) and list(by_time.variable[:5]) == list(df.variable)
    fields = {
        "corrdiff": lambda v: data["prediction"][v],
        "regression": lambda v: data["regression"][v][None],
        "bilinear": lambda v: data["input"][v][None],
    }
    for row in by_time.itertuples():
        k = list(times).index(row.time)
        want = numpy_scores(fields[row.method](row.variable)[:, k], data["truth"][row.variable][k], ddof)
        for c in ("rmse", "mae", "crps", "spread", "spread_skill"):
            assert getattr(row, c) == pytest.approx(want[c], rel=1e-9), (row.time, row.method, row.variable, c)
    for row in df.itertuples():  # over all times and points
        want = numpy_scores(fields[row.method](row.variable), data["truth"][row.variable], ddof)
        for c in ("rmse", "mae", "crps", "spread", "spread_skill"):
            assert getattr(row, c) == pytest.approx(want[c], rel=1e-9), (row.method, row.variable, c)


def test_the_spread_convention_changes_the_spread_only():
    pred = torch.tensor([[1.0, 3.0], [3.0, 5.0]])  # member variance: (2, 2) unbiased, (1, 1) population
    one, zero = (ensemble_scores(pred, torch.tensor([1.0, 1.0]), ddof) for ddof in (1, 0))
    assert one["spread"] == pytest.approx(math.sqrt(2)) and zero["spread"] == pytest.approx(1)
    assert {k: v for k, v in one.items() if k != "spread"} == {k: v for k, v in zero.items() if k != "spread"}
    with pytest.raises(ValueError, match="spread_ddof=2"):
        ensemble_scores(pred, torch.tensor([1.0, 1.0]), 2)


def test_write_scores_by_time(gen, tmp_path):
    path, _ = gen
    df = write_scores(path, tmp_path, spread_ddof=0)
    written = pd.read_csv(tmp_path / "scores_by_time.csv", parse_dates=["time"])
    pd.testing.assert_frame_equal(written, df.attrs["by_time"], check_dtype=False)
    assert pd.read_csv(tmp_path / "scores.csv").spread.equals(df.spread)


# ----------------------------------------------------------------------------- plots

PNG = b"\x89PNG\r\n\x1a\n"


def test_plots(gen, tmp_path):
    path, _ = gen
    out = plot_maps(path, tmp_path / "figs" / "maps.png", time_index=1)
    assert out.read_bytes()[:8] == PNG and out.stat().st_size > 1000
    out = plot_maps(path, tmp_path / "maps_t2m.png", variable="t2m")
    assert out.read_bytes()[:8] == PNG
    out = plot_spectra(path, tmp_path / "spectra.png")
    assert out.read_bytes()[:8] == PNG and out.stat().st_size > 1000
    with pytest.raises(ValueError, match="nope"):
        plot_spectra(path, tmp_path / "x.png", variable="nope")


def test_rank_histogram_of_the_corrdiff_members_against_a_direct_count(gen, tmp_path):
    path, data = gen
    write_scores(path, tmp_path)
    ranks = pd.read_csv(tmp_path / "rank_histogram.csv")
    assert set(ranks.method) == {"corrdiff"}  # the deterministic baselines have no members
    for v in ("10u", "t2m"):
        below = (data["prediction"][v] < data["truth"][v][None]).sum(axis=0)  # no ties in random floats
        want = np.bincount(below.ravel(), minlength=N + 1) / below.size
        got = ranks[ranks.variable == v].sort_values("rank").frequency.to_numpy()
        assert np.allclose(got, want)
