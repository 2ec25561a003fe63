# SPDX-License-Identifier: Apache-2.0
"""What the fault suite (``tests/test_faults*.py``) shares: a small ERA5-like store, a
trained run and copies of it to damage, the ``climax`` command run in-process, and
kill -9 at a chosen moment.

``conftest.py`` loads this module as a plugin, so its fixtures (``raw``, ``store``,
``trained``, ``run``, ``small_disk``) reach every test module; module-scoped ones are
built once per module that uses them. The helpers are imported by name.
"""

import os
import shutil
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from era5_files import write_era5

from physicsnemo_climax import cli
from physicsnemo_climax.config import load_config
from physicsnemo_climax.data import PrepareConfig, ShardStore, prepare
from physicsnemo_climax.tasks import train

VARS = ["2m_temperature", "geopotential_500", "temperature_850", "land_sea_mask"]
ROOT = Path(__file__).parents[1]


# ------------------------------------------------------------------ fixtures
@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    return write_era5(tmp_path_factory.mktemp("raw"), years=(2000, 2001))


@pytest.fixture(scope="module")
def store(raw, tmp_path_factory):
    return prepare(
        PrepareConfig(raw, VARS, {"train": 2000, "val": 2001, "test": 2001}, grid=(8, 16), shards_per_year=2),
        tmp_path_factory.mktemp("s") / "store",
    )


def settings(store, run_dir, *extra):
    return [
        f"data.root={store}",
        f"run_dir={run_dir}",
        "model.embed_dim=32",
        "model.depth=1",
        "model.num_heads=4",
        "train.batch_size=8",
        "train.steps=4",
        "train.warmup_steps=1",
        "train.val_every=100",
        "train.ckpt_every=2",
        "train.progress=false",
        "train.num_workers=0",
        "task=finetune_global",
        "task.lead_hours=12",
        *extra,
    ]


def fit(store, run_dir, *extra):
    return train(load_config(settings(store, run_dir, *extra)))


@pytest.fixture(scope="module")
def trained(store, tmp_path_factory):
    """A finished run: checkpoints at steps 2 and 4."""
    return fit(store, tmp_path_factory.mktemp("trained") / "run")


@pytest.fixture
def run(trained, tmp_path):
    """A copy of the finished run, for a test to damage."""
    return Path(shutil.copytree(trained, tmp_path / "run"))


def climax(capsys, *argv):
    """Run ``climax argv`` in this process: ``(exit code, stderr lines)``."""
    try:
        cli.main(list(argv))
        code = 0
    except SystemExit as exit:
        code = exit.code
    return code, [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def forecast_args(run, initial, output, lead: str = "12h", *extra: str) -> list[str]:
    """The arguments of ``climax forecast`` from ``run`` and the initial-condition file ``initial``
    to ``output`` at ``lead``, then ``extra`` options."""
    return ["forecast", "--run", str(run), "--input", str(initial), "--lead", lead, "--output", str(output), *extra]


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def initial_condition(store, descending=False, lon180=False, units=True) -> xr.Dataset:
    """Two times of the store's test split, each field with the store's ``units`` attribute
    (``units=False``: none)."""
    st = ShardStore(store)
    shard = st.shards("test")[0]
    recorded = (st.manifest or {}).get("units", {}) if units else {}
    ic = xr.Dataset(
        {
            v: (
                ("time", "lat", "lon"),
                np.array(shard.array(v)[:2, 0]),
                {"units": recorded[v]} if recorded.get(v) else {},
            )
            for v in VARS
        },
        coords={"time": pd.date_range("2001-01-01", periods=2, freq="6h"), "lat": st.lat, "lon": st.lon},
    )
    if descending:
        ic = ic.isel(lat=slice(None, None, -1))
    if lon180:
        ic = ic.assign_coords(lon=((ic.lon + 180) % 360) - 180).sortby("lon")
    return ic


def kill_self_at(target: str, when: str, script: str, tmp_path: Path) -> subprocess.CompletedProcess:
    """Run ``script`` in a subprocess that sends SIGKILL to itself when ``target``
    (``module:function`` or ``module:Class.method``) is called with ``args`` making
    ``when`` true: a kill -9 at a chosen moment."""
    module, attribute = target.split(":")
    owner, _, function = attribute.rpartition(".")
    prelude = textwrap.dedent(f"""
        import os, signal, importlib
        _mod = importlib.import_module({module!r})
        for _part in {owner!r}.split(".") if {owner!r} else []:
            _mod = getattr(_mod, _part)
        _orig, _calls = getattr(_mod, {function!r}), []
        def _killer(*args, **kwargs):
            _calls.append(1)
            if {when}:
                os.kill(os.getpid(), signal.SIGKILL)
            return _orig(*args, **kwargs)
        setattr(_mod, {function!r}, _killer)
    """)
    path = tmp_path / "killed.py"
    path.write_text(prelude + textwrap.dedent(script))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(
        [sys.executable, str(path)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == -signal.SIGKILL, result.stderr[-3000:]
    return result


def damage(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "truncate":
        path.write_bytes(bytes(data[: len(data) // 2]))
    elif how == "flip":  # same size, other bytes
        middle = len(data) // 2
        data[middle : middle + 64] = bytes(b ^ 0xFF for b in data[middle : middle + 64])
        path.write_bytes(bytes(data))
    else:
        path.unlink()


def copy_year(path: str, folder: Path, change=None) -> str:
    with xr.open_dataset(path) as ds:
        ds = ds.load()
    if change is not None:
        ds = change(ds)
    target = folder / f"copy_{Path(path).name}"
    ds.to_netcdf(target)
    return str(target)


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MiB tmpfs (root only; skipped where mounting is not allowed)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount)], capture_output=True)
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)
