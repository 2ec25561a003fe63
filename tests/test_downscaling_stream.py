# SPDX-License-Identifier: Apache-2.0
"""The streaming generation writer, and the run plan's generation speed-ups, without networks."""

import errno
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr

from physicsnemo_climax.config import load_config
from physicsnemo_climax.downscaling import generation, nets_by_lead, writer
from physicsnemo_climax.downscaling.domain import Domain
from physicsnemo_climax.downscaling.writer import Block, GenerationWriter
from physicsnemo_climax.engine import plan
from physicsnemo_climax.engine.environment import Feature, probe
from physicsnemo_climax.engine.plan import RunPlan
from physicsnemo_climax.errors import ConfigError, MissingFeature, OutputError

N, H, W = 3, 4, 5
INPUTS, INVARIANTS, OUTPUTS = ["u", "t"], ["elev"], ["u", "v"]


def domain(lat: bool = False) -> Domain:
    stats = {
        "input": {"u": {"mean": 1.0, "std": 2.0}, "t": {"mean": 280.0, "std": 10.0}},
        "invariant": {"elev": {"mean": 100.0, "std": 50.0}},
        "output": {"u": {"mean": -1.0, "std": 3.0}, "v": {"mean": 0.5, "std": 4.0}},
    }
    grid = np.meshgrid(np.linspace(30, 31, H), np.linspace(-100, -99, W), indexing="ij")
    return Domain(INPUTS, OUTPUTS, INVARIANTS, stats, 2, (H, W), *(grid if lat else (None, None)))


def blocks(sizes, lead: bool = False, seed: int = 0) -> list[Block]:
    rng = np.random.default_rng(seed)
    out, start = [], 0
    for t in sizes:
        times = pd.date_range("2021-01-01", periods=start + t, freq="3h")[start:].values
        f = lambda *s: torch.from_numpy(rng.normal(size=s).astype(np.float32))  # noqa: E731
        out.append(
            Block(
                times,
                f(t, 3, H, W),
                f(t, 2, H, W),
                f(N, t, 2, H, W),
                rng.normal(size=(t, 2, H, W)),
                pd.to_timedelta(np.arange(start, start + t) * 6, "h").values if lead else None,
            )
        )
        start += t
    return out


def write(path, parts, **kwargs):
    with GenerationWriter(path, domain(kwargs.pop("lat", False)), N, **kwargs) as w:
        for b in parts:
            w.put(b)
    return path


def test_blocks_are_appended_in_physical_units_with_upstream_coordinates(tmp_path):
    d, parts = domain(lat=True), blocks([2, 1, 3], lead=True)
    path = write(tmp_path / "g.nc", parts, lat=True, lead_time=True)
    root = xr.open_dataset(path)
    assert list(root.time.values) == list(pd.date_range("2021-01-01", periods=6, freq="3h"))
    assert list(root.lead_time.values) == list(pd.to_timedelta(np.arange(6) * 6, "h"))
    assert list(root.ensemble.values) == [0, 1, 2]
    assert root.lat.dims == ("y", "x") and np.allclose(root.lat.values, d.lat) and np.allclose(root.lon.values, d.lon)
    assert root.lat.attrs["units"] == "degrees_north" and root.lon.attrs["standard_name"] == "longitude"
    members = torch.cat([b.members for b in parts], dim=1).numpy()
    pred = xr.open_dataset(path, group="prediction")
    assert pred["v"].dims == ("ensemble", "time", "y", "x")
    assert np.allclose(pred["v"].values, members[:, :, 1] * 4.0 + 0.5, atol=1e-5)
    inputs = torch.cat([b.inputs for b in parts]).numpy()
    assert np.allclose(xr.open_dataset(path, group="input")["elev"].values, inputs[:, 2] * 50 + 100, atol=1e-4)
    mean = torch.cat([b.mean for b in parts]).numpy()
    assert np.allclose(xr.open_dataset(path, group="regression")["u"].values, mean[:, 0] * 3 - 1, atol=1e-5)
    truth = np.concatenate([b.truth for b in parts])
    assert np.allclose(xr.open_dataset(path, group="truth")["v"].values, truth[:, 1], atol=1e-6)
    assert not list(tmp_path.glob(".*"))


def test_without_coordinates_lat_lon_are_nan_and_the_file_reads_as_upstream_tools_read_it(tmp_path):
    path = write(tmp_path / "g.nc", blocks([2]), truth=False)
    root = xr.open_dataset(path)
    assert root.lat.shape == (H, W) and np.isnan(root.lat.values).all() and np.isnan(root.lon.values).all()
    # upstream's score_samples.py: merge the root into the groups, lat/lon as coordinates
    pred = xr.open_dataset(path, group="prediction").merge(root).set_coords(["lon", "lat"])
    assert pred["u"].std("ensemble").mean(["x", "y"]).shape == (2,)
    assert "lead_time" not in root and "truth" not in xr.open_datatree(path).children


def test_block_size_does_not_change_the_file(tmp_path):
    one = write(tmp_path / "a.nc", blocks([1] * 5))
    rng_blocks = blocks([1] * 5)
    merged = Block(
        np.concatenate([b.times for b in rng_blocks[:3]]),
        torch.cat([b.inputs for b in rng_blocks[:3]]),
        torch.cat([b.mean for b in rng_blocks[:3]]),
        torch.cat([b.members for b in rng_blocks[:3]], 1),
        np.concatenate([b.truth for b in rng_blocks[:3]]),
    )
    three = write(tmp_path / "b.nc", [merged, *rng_blocks[3:]])
    for group in ("input", "regression", "prediction", "truth"):
        xr.testing.assert_identical(xr.open_dataset(one, group=group), xr.open_dataset(three, group=group))
    xr.testing.assert_identical(xr.open_dataset(one), xr.open_dataset(three))


def test_the_partial_file_is_readable_by_another_process_while_writing(tmp_path):
    parts = blocks([2, 1, 1])
    reads = []
    read = (
        "import sys, xarray as xr; p = xr.open_dataset(sys.argv[1], group='prediction'); "
        "print(p['u'].shape[1], float(p['u'].values[-1, -1, 0, 0]))"
    )
    with GenerationWriter(tmp_path / "g.nc", domain(), N) as w:
        for k, b in enumerate(parts):
            w.put(b)
            deadline = time.monotonic() + 60
            while w.written < sum(len(p.times) for p in parts[: k + 1]) and time.monotonic() < deadline:
                time.sleep(0.01)
            r = subprocess.run([sys.executable, "-c", read, str(w.tmp)], capture_output=True, text=True)
            assert r.returncode == 0, r.stderr[-2000:]
            reads.append(r.stdout.split())
        assert not (tmp_path / "g.nc").exists()  # complete only at the end
    last = [float(b.members[-1, -1, 0, 0, 0] * 3 - 1) for b in parts]
    assert [int(n) for n, _ in reads] == [2, 3, 4]
    assert np.allclose([float(v) for _, v in reads], last, atol=1e-5)
    assert (tmp_path / "g.nc").exists() and not list(tmp_path.glob(".*"))


def test_an_error_in_the_caller_removes_the_partial_file(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        with GenerationWriter(tmp_path / "g.nc", domain(), N) as w:
            w.put(blocks([1])[0])
            raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_an_error_in_the_writer_thread_reaches_the_caller(tmp_path, monkeypatch):
    original = GenerationWriter._append

    def failing(self, block):
        if self.written:
            raise OSError(errno.EIO, "Input/output error")
        original(self, block)

    monkeypatch.setattr(GenerationWriter, "_append", failing)
    with pytest.raises(OutputError, match=r"could not write .*g\.nc: Input/output error"):
        write(tmp_path / "g.nc", blocks([1, 1, 1, 1, 1]))
    assert list(tmp_path.iterdir()) == []


def test_a_full_disk_stops_before_the_block_is_written(tmp_path, monkeypatch):
    real = writer.shutil.disk_usage
    monkeypatch.setattr(writer.shutil, "disk_usage", lambda p: real(p)._replace(free=1000))
    with pytest.raises(OutputError, match=r"g\.nc: the disk is full"):
        write(tmp_path / "g.nc", blocks([1]))
    assert list(tmp_path.iterdir()) == []


def test_a_block_of_the_wrong_ensemble_size_is_an_error(tmp_path):
    b = blocks([1])[0]
    with pytest.raises(ValueError, match="a block of 2 members for a file of 3"):
        write(tmp_path / "g.nc", [Block(b.times, b.inputs, b.mean, b.members[:2], b.truth)])
    assert list(tmp_path.iterdir()) == []


def test_time_blocks():
    assert nets_by_lead.pair_chunks([0, 0, 0, 0], 3) == [(0, [0, 1, 2]), (0, [3])]  # one pair of nets
    assert nets_by_lead.pair_chunks([0, 0], 1) == [(0, [0]), (0, [1])]
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ConfigError, match=f"generation.time_block={bad!r}"):
            nets_by_lead.pair_chunks([0], bad)


# ------------------------------------------------------------------ the run plan's generation speed-ups
def machine(**features):
    env = probe()
    for name, ok in features.items():
        env.features[name] = Feature(name, ok, "faked by the test")
    return env


def test_the_plan_records_compile_and_apex_group_norm_for_generation():
    name = "config_generate_hrrr_mini"
    resolved = plan.resolve(load_config([], name), machine(apex_group_norm=False))
    keys = {c.key: c for c in resolved.choices}
    assert not resolved.compile and "generation.compile" not in keys  # off unless asked
    assert keys["generation.use_apex_gn"].asked == "auto" and resolved.apex_group_norm is False
    assert plan.resolve(load_config([], name), machine(apex_group_norm=True)).apex_group_norm is True
    on = plan.resolve(load_config(["generation.compile=true"], name), machine(compile=True))
    assert on.compile and {c.key: c.runs for c in on.choices}["generation.compile"] is True
    with pytest.raises(MissingFeature, match="generation.compile=True: torch.compile cannot build kernels here"):
        plan.resolve(load_config(["generation.compile=true"], name), machine(compile=False))
    fallback = plan.resolve(
        load_config(["generation.compile=true", "generation.fallback=true"], name), machine(compile=False)
    )
    assert fallback.compile is False
    with pytest.raises(MissingFeature, match="generation.use_apex_gn=True: apex GroupNorm is missing"):
        plan.resolve(load_config(["generation.use_apex_gn=true"], name), machine(apex_group_norm=False))
    with pytest.raises(ConfigError, match="generation.use_apex_gn='yes'"):
        plan.resolve(load_config(["generation.use_apex_gn=yes"], name))


class _Unet(torch.nn.Module):
    _overridable_args = {"use_apex_gn"}

    def __init__(self, use_apex_gn=False):
        super().__init__()
        self.conv, self.use_apex_gn, self.amp_mode = torch.nn.Conv2d(2, 2, 3), use_apex_gn, None


def test_prepare_net_follows_the_plan():
    """A net comes loaded with the plan's GroupNorm (net_files.load_net); prepare_net never loads
    it again: autocast mode, channels_last with apex GroupNorm, compile."""
    net = generation.prepare_net(_Unet(use_apex_gn=True), RunPlan(apex_group_norm=True, precision="bf16"))
    assert net.use_apex_gn and net.amp_mode is True
    assert net.conv.weight.is_contiguous(memory_format=torch.channels_last)
    plain = generation.prepare_net(_Unet(), RunPlan())
    assert plain.amp_mode is False and not isinstance(plain, torch._dynamo.eval_frame.OptimizedModule)
    assert isinstance(generation.prepare_net(_Unet(), RunPlan(compile=True)), torch._dynamo.eval_frame.OptimizedModule)
    assert generation.prepare_net(None, RunPlan(compile=True)) is None
