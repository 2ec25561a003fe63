# SPDX-License-Identifier: Apache-2.0
"""Faults and bad input, as a new user and a fault injector would try them.

Each test expects a clear error (one or two lines from ``climax``, naming the
item) or the preserved state: no silent wrong result, no lost or half-written
file. Groups: the command line and its overrides; relaunching a run folder;
checkpoints (damaged, missing, planted, interrupted, disk full); forecast and
evaluation inputs; raw data files and stores; outputs; kill -9 at the worst
moments (in subprocesses that kill themselves at a chosen point).
"""

import errno
import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import xarray as xr
from faults import (
    VARS,
    climax,
    copy_year,
    damage,
    fit,
    forecast_args,
    initial_condition,
    kill_self_at,
    settings,
    snapshot,
)
from omegaconf import OmegaConf

from physicsnemo_climax import cli
from physicsnemo_climax.config import load_config, load_run_config
from physicsnemo_climax.data import PrepareConfig, ShardStore, prepare
from physicsnemo_climax.data.sources import Catalogue
from physicsnemo_climax.engine import checkpointing
from physicsnemo_climax.errors import CheckpointError, ConfigError, DataError, InputError, OutputError, RunInUse
from physicsnemo_climax.files import atomic_path
from physicsnemo_climax.forecasting import Run, evaluate, forecast


# ------------------------------------------------------------------ the command line
@pytest.mark.parametrize(
    "override, suggestion",
    [
        ("train.stpes=2", "did you mean train.steps?"),
        ("+train.stpes=2", "did you mean train.steps?"),
        ("model.embed_dm=64", "did you mean model.embed_dim?"),
    ],
)
def test_unknown_override_keys_are_errors_with_the_nearest_key(capsys, store, tmp_path, override, suggestion):
    code, err = climax(capsys, "train", *settings(store, tmp_path / "run"), override)
    assert code == 1 and len(err) == 2 and suggestion in err[0] and "Traceback" not in "\n".join(err)
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "override, match",
    [
        ("train.val_every=0", "train.val_every=0: must be a whole number >= 1"),
        ("train.ckpt_every=0", "train.ckpt_every=0: must be a whole number >= 1"),
        ("train.lr=fast", "train.lr='fast': must be a number"),
        ("train.lr=0", "train.lr=0: must be > 0.0"),
        ("train.betas=[0.9]", "train.betas=[0.9]: must be two numbers"),
        ("train.precision=fp8", "train.precision='fp8': choose from"),
    ],
)
def test_bad_train_values_stop_before_anything_runs(capsys, store, tmp_path, override, match):
    code, err = climax(capsys, "train", *settings(store, tmp_path / "run"), override)
    assert code == 1 and match in err[0]
    assert not (tmp_path / "run").exists()


def test_evaluate_refuses_unknown_keys(capsys, trained):
    code, err = climax(capsys, "evaluate", f"run_dir={trained}", "eval.leads_typo=[6]")
    assert code == 1 and "eval.leads_typo" in err[0] and "did you mean eval.leads?" in err[0]


def test_debug_shows_the_traceback(capsys, store, tmp_path, monkeypatch):
    with pytest.raises(ConfigError, match="train.val_every"):
        cli.main(["--debug", "train", *settings(store, tmp_path / "run"), "train.val_every=0"])
    monkeypatch.setenv("CLIMAX_DEBUG", "1")
    with pytest.raises(ConfigError, match="train.val_every"):
        cli.main(["train", *settings(store, tmp_path / "run"), "train.val_every=0"])


def test_a_missing_input_file_is_one_line(capsys, trained, tmp_path):
    code, err = climax(capsys, *forecast_args(trained, tmp_path / "nope.nc", tmp_path / "out.nc", "12h"))
    assert code == 1 and "nope.nc" in err[0] and len(err) == 2


# ------------------------------------------------------------------ relaunching a run folder
@pytest.mark.parametrize(
    "change, listed",
    [
        ("train.lr=1e-3", "train.lr: 0.0005 -> 0.001"),
        ("train.batch_size=4", "train.batch_size: 8 -> 4"),
        ("data.variables=[2m_temperature,geopotential_500]", "data.variables"),
        ("train.steps=9", "train.steps: 4 -> 9"),
        ("seed=3", "seed: 0 -> 3"),
    ],
)
def test_a_relaunch_with_other_settings_is_refused_and_changes_nothing(store, run, change, listed):
    before = snapshot(run)
    with pytest.raises(ConfigError, match="holds a run trained with other settings") as err:
        fit(store, run, change)
    assert listed in str(err.value)
    assert snapshot(run) == before


def test_a_relaunch_may_change_how_it_runs_and_says_so(store, run):
    fit(store, run, "train.log_every=1", "train.num_workers=1")
    record = json.loads((run / "run.json").read_text())
    [entry] = record["history"]
    assert entry["resumed_at_step"] == 4
    assert entry["changed"]["train.log_every"] == [50, 1] and entry["changed"]["train.num_workers"] == [0, 1]
    assert load_run_config(run).train.log_every == 1  # config.yaml says what ran


def test_a_moved_store_may_resume_a_changed_one_may_not(store, run, tmp_path):
    moved = shutil.copytree(store, tmp_path / "moved")
    fit(moved, run)  # the same content elsewhere
    changed = Path(shutil.copytree(store, tmp_path / "changed"))
    mean = np.load(changed / "normalize_mean.npz")
    np.savez(changed / "normalize_mean.npz", **{k: mean[k] + (k == "2m_temperature") for k in mean.files})
    with pytest.raises(ConfigError, match="run.json statistics"):
        fit(changed, run)


def test_a_run_from_an_older_version_resumes(store, run):
    """Keys a newer version adds to the config are not changes of the run."""
    saved = load_run_config(run)
    del saved.task["package"]
    (run / "config.yaml").write_text(OmegaConf.to_yaml(saved))
    fit(store, run)
    assert json.loads((run / "run.json").read_text())["history"][0]["changed"] == {}


def test_resume_false_never_overwrites_checkpoints(store, run):
    before = snapshot(run / "checkpoints")
    with pytest.raises(ConfigError, match="train.resume=false"):
        fit(store, run, "train.resume=false")
    assert snapshot(run / "checkpoints") == before


def test_a_folder_in_use_is_refused(store, run):
    (run / ".lock").write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": "now"}))
    before = snapshot(run)
    with pytest.raises(RunInUse, match=f"in use by process {os.getpid()}"):
        fit(store, run)
    assert snapshot(run) == before


def test_a_lock_left_by_a_dead_process_is_taken_over(store, run, caplog):
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    ).stdout.strip()
    (run / ".lock").write_text(json.dumps({"pid": int(dead), "host": socket.gethostname(), "started": "then"}))
    fit(store, run)
    assert "taking over" in caplog.text and not (run / ".lock").exists()


def test_a_lock_of_another_host_is_respected(store, run):
    (run / ".lock").write_text(json.dumps({"pid": 1, "host": "node-elsewhere", "started": "then"}))
    with pytest.raises(RunInUse, match="node-elsewhere"):
        fit(store, run)


def test_a_failed_first_launch_leaves_no_folder(store, tmp_path):
    with pytest.raises(ConfigError):
        fit(store, tmp_path / "fresh", "task.region=[89,90,0,1]")
    assert not (tmp_path / "fresh").exists()


# ------------------------------------------------------------------ checkpoints
@pytest.mark.parametrize(
    "part, how",
    [
        ("model", "delete"),
        ("state", "truncate"),
        ("state", "flip"),
        ("model", "flip"),
        ("checksums", "flip"),
    ],
)
def test_a_damaged_latest_checkpoint_falls_back_to_the_one_before(store, run, part, how, caplog):
    damage(checkpointing.files_of(run / "checkpoints", 4)[part], how)
    fit(store, run, "train.log_every=1")
    assert "skipping checkpoint 4" in caplog.text
    assert checkpointing.checkpoint_steps(run / "checkpoints") == [2, 4]  # step 4 trained again from 2
    assert [h["resumed_at_step"] for h in json.loads((run / "run.json").read_text())["history"]] == [2]
    assert (run / "checkpoints" / "skipped").is_dir()  # kept, not deleted


def test_forecasts_use_the_newest_intact_model_file(run):
    folder = run / "checkpoints"
    damage(checkpointing.files_of(folder, 4)["state"], "flip")  # the optimizer state is not needed here
    assert checkpointing.model_file(folder) == checkpointing.files_of(folder, 4)["model"]
    damage(checkpointing.files_of(folder, 4)["model"], "flip")
    assert checkpointing.model_file(folder) == checkpointing.files_of(folder, 2)["model"]


def test_no_usable_checkpoint_stops_instead_of_starting_fresh(store, run):
    for step in (2, 4):
        damage(checkpointing.files_of(run / "checkpoints", step)["state"], "flip")
    config_before = (run / "config.yaml").read_text()
    with pytest.raises(CheckpointError, match="no checkpoint can be used.*Nothing was trained"):
        fit(store, run)
    assert (run / "config.yaml").read_text() == config_before
    assert len(list((run / "checkpoints" / "skipped").iterdir())) == 6


class Payload:
    def __reduce__(self):
        return (os.system, (f"touch {MARKER}",))


MARKER = Path("/tmp") / f"climax_payload_{os.getpid()}"


def test_a_planted_pickle_in_a_checkpoint_never_runs(store, run):
    folder = run / "checkpoints"
    files = checkpointing.files_of(folder, 4)
    state = torch.load(files["state"], weights_only=True)
    state["metadata"]["payload"] = Payload()
    torch.save(state, files["state"])  # torch.load(weights_only=False) would run the payload
    checksums = json.loads(files["checksums"].read_text())  # the attacker fixes the checksum too
    checksums[files["state"].name] = checkpointing.sha256(files["state"])
    files["checksums"].write_text(json.dumps(checksums))
    MARKER.unlink(missing_ok=True)
    fit(store, run)
    assert not MARKER.exists()
    assert checkpointing.checkpoint_steps(folder) == [2, 4]


def test_a_checkpoint_save_on_a_full_disk_keeps_the_earlier_ones(store, tmp_path, monkeypatch):
    original, calls = checkpointing.save_checkpoint, []

    def full_disk_at_the_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device", "checkpoints/.saving/ClimaX.0.4.mdlus")
        return original(*args, **kwargs)

    monkeypatch.setattr(checkpointing, "save_checkpoint", full_disk_at_the_second)
    with pytest.raises(CheckpointError, match="checkpoint 4 not saved.*disk is full.*earlier checkpoints"):
        fit(store, tmp_path / "run")
    folder = tmp_path / "run" / "checkpoints"
    assert checkpointing.checkpoint_steps(folder) == [2] and checkpointing.problem(folder, 2) is None
    assert not (folder / ".saving").exists()


def test_a_crash_between_the_files_of_a_save_keeps_the_previous_checkpoint(store, tmp_path, monkeypatch):
    original = os.replace

    def crash_before_the_state(src, dst):
        if str(dst).endswith("checkpoint.0.4.pt"):  # the model file is in place, the training state is not
            raise KeyboardInterrupt
        return original(src, dst)

    monkeypatch.setattr(checkpointing.os, "replace", crash_before_the_state)
    with pytest.raises(KeyboardInterrupt):
        fit(store, tmp_path / "run")
    monkeypatch.setattr(checkpointing.os, "replace", original)
    assert checkpointing.checkpoint_steps(tmp_path / "run" / "checkpoints") == [2]
    fit(store, tmp_path / "run")
    assert checkpointing.checkpoint_steps(tmp_path / "run" / "checkpoints") == [2, 4]


@pytest.mark.slow
@pytest.mark.parametrize(
    "target, when",
    [
        ("os:replace", "str(args[1]).endswith('checkpoint.0.4.pt')"),  # inside checkpoint 4's save
        ("physicsnemo_climax.forecasting.training:forecast_loss", "len(_calls) == 3"),  # inside step 3
    ],
    ids=["checkpoint_save", "training_step"],
)
def test_kill_9_during_training_then_resume(store, tmp_path, target, when):
    run_dir = tmp_path / "run"
    kill_self_at(
        target,
        when,
        f"""
        from physicsnemo_climax.config import load_config
        from physicsnemo_climax.tasks import train
        train(load_config({settings(store, run_dir)!r}))
    """,
        tmp_path,
    )
    assert checkpointing.checkpoint_steps(run_dir / "checkpoints") == [2]
    assert (run_dir / ".lock").exists()  # left by the killed process
    fit(store, run_dir)  # and taken over
    assert checkpointing.checkpoint_steps(run_dir / "checkpoints") == [2, 4]


# ------------------------------------------------------------------ forecast and evaluation inputs
@pytest.mark.parametrize("value", [np.nan, np.inf])
def test_non_finite_initial_conditions_are_named(trained, store, value):
    ic = initial_condition(store)
    ic["temperature_850"][0, 3, 4] = value
    with pytest.raises(InputError, match=r"non-finite values \(temperature_850: 1\)"):
        forecast(Run.load(trained), ic, ["12h"])


def test_nan_policy_mean_uses_the_training_mean_there(trained, store):
    run = Run.load(trained)
    ic = initial_condition(store)
    mean = run.info.statistics["temperature_850"]["mean"]
    filled = ic.copy(deep=True)
    filled["temperature_850"][0, 3, 4] = mean
    ic["temperature_850"][0, 3, 4] = np.nan
    got = forecast(run, ic, ["12h"], nan_policy="mean")
    want = forecast(run, filled, ["12h"])
    assert np.allclose(got.temperature_850.values, want.temperature_850.values, atol=1e-5)


@pytest.mark.parametrize(
    "lead, match",
    [
        ("-24h", "positive multiple"),
        ("0h", "positive multiple"),
        ("25h", "not a positive multiple of 6 h"),
        ("18h", "not a multiple of the run's 12 h lead"),
        ("soon", "not a duration"),
    ],
)
def test_leads_are_checked_on_every_path(trained, store, lead, match):
    with pytest.raises(InputError, match=match):
        forecast(Run.load(trained), initial_condition(store), [lead])


def test_evaluation_refuses_a_lead_off_the_data_step(trained):
    with pytest.raises(InputError, match="lead 25 h"):
        evaluate(load_run_config(trained, ["eval.leads=[25]", "eval.max_samples=2"]))


def test_a_lead_the_random_lead_run_never_trained_is_refused(store, tmp_path):
    run = fit(
        store,
        tmp_path / "run",
        "task=pretrain",
        "task.lead_hours=null",
        "task.lead_range=[12,24]",
        "task.lead_step=12",
        "train.steps=2",
    )
    for lead in ("6h", "18h"):
        with pytest.raises(InputError, match="not one the run was trained on"):
            forecast(Run.load(run), initial_condition(store), [lead])
    assert forecast(Run.load(run), initial_condition(store), ["36h"]).lead_time.size == 1  # 24 + 12


@pytest.mark.parametrize("order", [{"descending": True}, {"lon180": True}])
def test_the_same_grid_in_another_order_gives_the_same_forecast(trained, store, order):
    run = Run.load(trained)
    want = forecast(run, initial_condition(store), ["12h"])
    got = forecast(run, initial_condition(store, **order), ["12h"])
    assert np.allclose(got.temperature_850.values, want.temperature_850.values, atol=1e-5)


def test_another_grid_is_named_with_both_ranges(trained, store):
    coarse = initial_condition(store).isel(lat=slice(0, None, 2))
    with pytest.raises(InputError, match=r"lat of the initial condition \(4 points.*the model's \(8 points"):
        forecast(Run.load(trained), coarse, ["12h"])


def test_an_initial_condition_without_time_forecasts(capsys, trained, store, tmp_path):
    initial_condition(store).isel(time=0, drop=True).to_netcdf(tmp_path / "ic.nc")
    code, err = climax(capsys, *forecast_args(trained, tmp_path / "ic.nc", tmp_path / "out.nc", "12h"))
    assert code == 0, err
    with xr.open_dataset(tmp_path / "out.nc") as out:
        assert out.temperature_850.shape == (1, 1, 8, 16)


# ------------------------------------------------------------------ raw data and stores
def test_conflicting_duplicate_stamps_across_files_name_both(raw, tmp_path):
    other = copy_year(raw[0], tmp_path, lambda ds: ds.assign(t2m=ds.t2m + 1.0))
    with pytest.raises(DataError, match=r"era5_2000.nc and .*copy_era5_2000.nc hold different values"):
        Catalogue([raw[0], other]).read("2m_temperature", Catalogue([raw[0]]).times("2m_temperature")[:4])


def test_identical_duplicate_stamps_are_merged(raw, tmp_path):
    other = copy_year(raw[0], tmp_path)
    times = Catalogue([raw[0]]).times("2m_temperature")[:4]
    assert np.array_equal(
        Catalogue([raw[0], other]).read("2m_temperature", times), Catalogue([raw[0]]).read("2m_temperature", times)
    )


def test_duplicate_stamps_inside_a_file_are_named(raw, tmp_path):
    twice = copy_year(raw[0], tmp_path, lambda ds: xr.concat([ds.isel(time=slice(0, 3)), ds.isel(time=[1])], "time"))
    with pytest.raises(DataError, match=r"copy_era5_2000.nc: variable 't2m' has duplicate time stamps"):
        Catalogue([twice]).read("2m_temperature", np.array(["2000-01-01T06"], "datetime64[ns]"))


def test_files_with_opposite_latitude_order_read_alike(raw, tmp_path):
    flipped = copy_year(raw[1], tmp_path, lambda ds: ds.isel(latitude=slice(None, None, -1)))
    times = Catalogue([raw[1]]).times("2m_temperature")[:3]
    assert np.array_equal(
        Catalogue([raw[0], flipped]).read("2m_temperature", times),
        Catalogue([raw[0], raw[1]]).read("2m_temperature", times),
    )


def test_files_on_other_grids_are_named_with_their_ranges(raw, tmp_path):
    coarse = copy_year(raw[1], tmp_path, lambda ds: ds.isel(latitude=slice(0, None, 2)))
    with pytest.raises(DataError, match=r"lat of .*copy_era5_2001.nc \(4 points, .*\) is not that of"):
        Catalogue([raw[0], coarse])


def test_a_truncated_input_file_is_named(raw, tmp_path):
    broken = tmp_path / "broken.nc"
    broken.write_bytes(Path(raw[0]).read_bytes()[:2000])
    with pytest.raises(DataError, match="broken.nc: cannot be opened as NetCDF"):
        Catalogue([str(broken)])


def test_a_damaged_data_chunk_names_file_and_variable(raw, tmp_path):
    with xr.open_dataset(raw[0]) as ds:
        ds.load().to_netcdf(tmp_path / "packed.nc", encoding={v: {"zlib": True} for v in ds.data_vars})
    data = bytearray((tmp_path / "packed.nc").read_bytes())
    third = len(data) // 3
    data[third : third + 2000] = bytes(b ^ 0xFF for b in data[third : third + 2000])
    (tmp_path / "damaged.nc").write_bytes(bytes(data))
    catalogue, errors = Catalogue([str(tmp_path / "damaged.nc")]), []
    for name in ("2m_temperature", "geopotential_500", "temperature_850"):
        try:
            catalogue.read(name, catalogue.times(name))
        except DataError as err:  # nothing but a DataError naming the file
            errors.append(str(err))
    assert errors and all(e.startswith(f"{tmp_path / 'damaged.nc'}: cannot read variable") for e in errors)


def test_a_shard_overwritten_in_place_is_caught_on_first_read(store, tmp_path):
    copy = Path(shutil.copytree(store, tmp_path / "store"))
    shard = copy / "train" / "2000_0.npz"
    damage(shard, "flip")
    with pytest.raises(DataError, match="2000_0.npz: its content is not what `climax data prepare` wrote"):
        ShardStore(copy).shards("train")[0].array("2m_temperature")


def test_the_store_records_the_periods_the_data_reach(raw, tmp_path):
    early = copy_year(raw[0], tmp_path, lambda ds: ds.sel(time=slice(None, "2000-12-14T18")))
    store = prepare(
        PrepareConfig(
            [early],
            ["2m_temperature"],
            {"train": "2000-01-01:2000-06-30", "test": "2000-12-01:2000-12-31"},
            grid=(8, 16),
        ),
        tmp_path / "store",
    )
    manifest = json.loads((store / "store.json").read_text())
    assert manifest["splits"]["test"] == [["2000-12-01", "2001-01-01"]]  # as asked
    assert manifest["coverage"]["test"] == [["2000-12-01T00", "2000-12-15T00"]]  # as the data reach
    assert ShardStore(store).shard_times("test")[-1][-1] == np.datetime64("2000-12-14T18")


@pytest.mark.slow
def test_kill_9_during_prepare_then_the_rerun_completes(raw, tmp_path):
    out = tmp_path / "store"
    config = dict(inputs=raw, variables=VARS, splits={"train": 2000, "test": 2001}, grid=[8, 16], shards_per_year=2)
    kill_self_at(
        "physicsnemo_climax.data.preparation:write_climatology",
        "len(_calls) == 2",
        f"""
        from physicsnemo_climax.data import PrepareConfig, prepare
        prepare(PrepareConfig(**{config!r}), {str(out)!r})
    """,
        tmp_path,
    )  # the training split is done; the test split's shards are written
    assert not out.exists() and out.with_name("store.partial").exists()
    prepare(PrepareConfig(**config), out)
    again = prepare(PrepareConfig(**config), tmp_path / "straight")
    for split, name in (("train", "2000_1.npz"), ("test", "2001_0.npz")):
        a, b = np.load(out / split / name), np.load(again / split / name)
        assert all(np.array_equal(a[k], b[k]) for k in a.files)


@pytest.mark.slow
def test_kill_9_during_an_evaluation_keeps_every_file_whole(trained, tmp_path):
    out = tmp_path / "eval"
    overrides = ["eval.leads=[12]", "eval.max_samples=2", f"eval.out_dir={out}", "eval.overwrite=true"]
    evaluate(load_run_config(trained, overrides))
    (out / "scorecard.csv").write_text("an older scorecard")
    before = snapshot(out)
    kill_self_at(
        "physicsnemo_climax.forecasting.report:plot_scores",
        "True",
        f"""
        from physicsnemo_climax.config import load_run_config
        from physicsnemo_climax.forecasting import evaluate
        evaluate(load_run_config({str(trained)!r}, {overrides!r}))
    """,
        tmp_path,
    )
    assert snapshot(out) == before  # the old set, whole: the new one was being written beside it
    evaluate(load_run_config(trained, overrides))  # the next evaluation clears what the killed one left
    new = pd.read_csv(out / "scorecard.csv")
    assert len(new.query("region == 'global'")) == 9 and new.region.nunique() > 1
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


@pytest.mark.slow
def test_kill_9_during_generation_leaves_no_half_file(tmp_path):
    from physicsnemo_climax.downscaling import write_mini_file
    from physicsnemo_climax.downscaling.training import train as train_stage

    write_mini_file(
        tmp_path / "mini.nc", tmp_path / "stats.json", samples=4, shape=(16, 16), factor=4, invariant_shape=(24, 24)
    )
    data = [f"dataset.data_path={tmp_path / 'mini.nc'}", f"dataset.stats_path={tmp_path / 'stats.json'}"]
    reg = train_stage(
        load_config(
            data
            + [
                f"run_dir={tmp_path / 'reg'}",
                "model_size=tiny",
                "train.steps=1",
                "train.batch_size=2",
                "train.num_workers=0",
                "train.progress=false",
            ],
            "config_training_hrrr_mini_regression",
        )
    )
    output = tmp_path / "out.nc"
    output.write_bytes(b"an earlier generation")
    overrides = data + [
        f"generation.io.reg_ckpt_filename={reg}",
        "generation.io.res_ckpt_filename=unused",
        "generation.inference_mode=regression",
        "generation.num_ensembles=1",
        "generation.seed_batch_size=1",
        "generation.times=null",
        "generation.max_times=1",
        f"generation.io.output_filename={output}",
        "generation.io.overwrite=true",
    ]
    # generation streams: the hidden partial file has its layout on disk when the first block is written
    kill_self_at(
        "physicsnemo_climax.downscaling.writer:GenerationWriter._append",
        "args[0].tmp.exists()",
        f"""
        from physicsnemo_climax.config import load_config
        from physicsnemo_climax.downscaling.generation import generate
        generate(load_config({overrides!r}, "config_generate_hrrr_mini"))
    """,
        tmp_path,
    )  # killed with part of the new file on disk
    assert output.read_bytes() == b"an earlier generation"
    assert sorted(p.name for p in tmp_path.glob("out*")) == ["out.nc"]  # only a hidden partial file is left


# ------------------------------------------------------------------ outputs
def test_a_failed_forecast_write_keeps_the_old_file(capsys, trained, store, tmp_path, monkeypatch):
    initial_condition(store).to_netcdf(tmp_path / "ic.nc")
    (tmp_path / "out.nc").write_bytes(b"the previous forecast")

    def disk_full(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(xr.Dataset, "to_netcdf", disk_full)
    code, err = climax(capsys, *forecast_args(trained, tmp_path / "ic.nc", tmp_path / "out.nc", "12h", "--overwrite"))
    assert code == 1 and "out.nc: the disk is full" in err[0]
    assert (tmp_path / "out.nc").read_bytes() == b"the previous forecast"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ic.nc", "out.nc"]  # no partial file left


def test_an_unwritable_output_folder_is_one_line(capsys, trained, store, tmp_path, monkeypatch):
    initial_condition(store).to_netcdf(tmp_path / "ic.nc")

    def read_only(self, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "out.nc"))

    monkeypatch.setattr(xr.Dataset, "to_netcdf", read_only)
    code, err = climax(capsys, *forecast_args(trained, tmp_path / "ic.nc", tmp_path / "out.nc", "12h"))
    assert code == 1 and "could not write" in err[0] and "choose a folder you can write to" in err[0]


def test_an_evaluation_that_fails_keeps_the_previous_scorecard(trained, tmp_path, monkeypatch):
    cfg = load_run_config(
        trained, ["eval.leads=[12]", "eval.max_samples=2", f"eval.out_dir={tmp_path / 'eval'}", "eval.overwrite=true"]
    )
    evaluate(cfg)
    before = snapshot(tmp_path / "eval")
    from physicsnemo_climax.forecasting import report

    def broken(*args, **kwargs):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(report.pd.DataFrame, "to_csv", broken)
    with pytest.raises(OutputError, match="scorecard.csv: Input/output error"):
        evaluate(cfg)
    assert snapshot(tmp_path / "eval") == before


def test_convert_of_a_truncated_checkpoint_names_it_and_writes_nothing(capsys, tmp_path):
    path = tmp_path / "official.ckpt"
    torch.save({"state_dict": {"net.pos_embed": torch.zeros(1, 4, 8)}}, path)
    path.write_bytes(path.read_bytes()[:100])
    (tmp_path / "climax.mdlus").write_bytes(b"an earlier conversion")
    code, err = climax(capsys, "convert", str(path), str(tmp_path / "climax.mdlus"), "--overwrite")
    assert code == 1 and "official.ckpt: not a readable checkpoint file" in err[0]
    assert (tmp_path / "climax.mdlus").read_bytes() == b"an earlier conversion"


def test_atomic_path_removes_its_partial_file_on_any_failure(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(ValueError):
        with atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise ValueError("the writer failed")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_a_real_full_disk_during_a_forecast(capsys, trained, store, tmp_path, small_disk):
    initial_condition(store).to_netcdf(tmp_path / "ic.nc")
    (small_disk / "ballast").write_bytes(b"\0" * (2 * 2**20 - 4096))
    code, err = climax(capsys, *forecast_args(trained, tmp_path / "ic.nc", small_disk / "out.nc", "12h"))
    assert code == 1 and "the disk is full" in err[0]
    assert sorted(p.name for p in small_disk.iterdir()) == ["ballast"]


def test_a_real_full_disk_during_a_checkpoint(store, small_disk):
    run_dir = small_disk / "run"
    original = checkpointing.save

    def then_fill(folder, *args, **kwargs):
        original(folder, *args, **kwargs)
        free = shutil.disk_usage(small_disk).free
        (small_disk / "ballast").write_bytes(b"\0" * max(free - 8192, 0))

    checkpointing.save = then_fill
    try:
        with pytest.raises(CheckpointError, match="checkpoint 4 not saved.*disk is full"):
            fit(store, run_dir, "model.embed_dim=16", "model.num_heads=2")
    finally:
        checkpointing.save = original
    assert checkpointing.checkpoint_steps(run_dir / "checkpoints") == [2]
    assert checkpointing.problem(run_dir / "checkpoints", 2) is None
