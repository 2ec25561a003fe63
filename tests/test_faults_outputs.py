# SPDX-License-Identifier: Apache-2.0
"""The fault suite, part two: what this package writes and where.

Outputs never destroy what they did not create (folders of another kind, the
inputs, an earlier output without ``--overwrite``); an evaluation's files are
replaced as one set; temporary files are cleaned on signals and on the next
start. A run folder is a boundary: its saved config cannot send outputs
elsewhere or read the environment, links inside it are not written through,
and a folder that is not a run does not become one. A run knows its data:
evaluation finds the store it was trained on from any folder, and refuses
another store in its place.
"""

import json
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
import torch
import xarray as xr
from faults import VARS, climax, copy_year, fit, initial_condition, kill_self_at, snapshot

from physicsnemo_climax.config import load_run_config
from physicsnemo_climax.data import PrepareConfig, prepare
from physicsnemo_climax.errors import ConfigError, DataError, OutputError
from physicsnemo_climax.forecasting import evaluate
from physicsnemo_climax.models.variables import DEFAULT_VARIABLES

EVAL = ["eval.leads=[12]", "eval.max_samples=2"]


def forecast_argv(run, ic, output, *extra):
    return ["forecast", "--run", str(run), "--input", str(ic), "--lead", "12h", "--output", str(output), *extra]


def hidden(folder: Path) -> list[str]:
    """Names of hidden temporary entries (``.name.tmp...``, ``.name.new...``, ``.name.old...``) in ``folder``."""
    return sorted(
        p.name
        for p in folder.iterdir()
        if p.name.startswith(".") and any(tag in p.name for tag in (".tmp", ".new", ".old"))
    )


@pytest.fixture
def ic(store, tmp_path):
    path = tmp_path / "ic.nc"
    initial_condition(store).to_netcdf(path)
    return path


# ------------------------------------------------------------------ outputs never destroy what they did not make
@pytest.mark.parametrize(
    "target, why",
    [
        ("the run it reads", "is the input"),
        ("another run", "not a WeatherBench 2 forecast"),
        ("a folder of notes", "not a WeatherBench 2 forecast"),
    ],
)
def test_a_wb2_forecast_never_replaces_a_folder_it_did_not_write(capsys, run, store, ic, tmp_path, target, why):
    folder = {
        "the run it reads": run,
        "another run": Path(shutil.copytree(run, tmp_path / "other")),
        "a folder of notes": tmp_path / "notes",
    }[target]
    folder.mkdir(exist_ok=True)
    (folder / "notes.txt").write_text("a month of work")
    before = snapshot(folder)
    code, err = climax(capsys, *forecast_argv(run, ic, folder, "--format", "wb2", "--overwrite"))
    assert code == 1 and str(folder) in err[0] and why in err[0], err
    assert snapshot(folder) == before


def test_an_output_equal_to_the_input_is_refused(capsys, trained, ic, tmp_path, monkeypatch):
    before = ic.read_bytes()
    monkeypatch.chdir(tmp_path)
    for output in (ic, Path("ic.nc"), Path("./sub/../ic.nc")):  # the same file, however it is spelled
        (tmp_path / "sub").mkdir(exist_ok=True)
        code, err = climax(capsys, *forecast_argv(trained, ic, output, "--overwrite"))
        assert code == 1 and "is the input" in err[0], err
    assert ic.read_bytes() == before


def test_an_existing_forecast_is_replaced_only_with_overwrite(capsys, trained, ic, tmp_path):
    out = tmp_path / "out.nc"
    out.write_bytes(b"yesterday's forecast")
    code, err = climax(capsys, *forecast_argv(trained, ic, out))
    assert code == 1 and "--overwrite" in err[0] and str(out) in err[0]
    assert out.read_bytes() == b"yesterday's forecast"
    assert climax(capsys, *forecast_argv(trained, ic, out, "--overwrite"))[0] == 0
    with xr.open_dataset(out) as ds:
        assert ds.temperature_850.shape == (2, 1, 8, 16)


def test_a_folder_is_not_a_forecast_file(capsys, trained, ic, tmp_path):
    (tmp_path / "folder").mkdir()
    code, err = climax(capsys, *forecast_argv(trained, ic, tmp_path / "folder", "--overwrite"))
    assert code == 1 and "is a folder" in err[0]


def test_a_wb2_forecast_replaces_its_own_kind_only_with_overwrite(capsys, trained, ic, tmp_path, monkeypatch):
    out = tmp_path / "forecast.zarr"
    assert climax(capsys, *forecast_argv(trained, ic, out, "--format", "wb2"))[0] == 0
    first = snapshot(out)
    code, err = climax(capsys, *forecast_argv(trained, ic, out, "--format", "wb2"))
    assert code == 1 and "--overwrite" in err[0]
    assert snapshot(out) == first

    def disk_full(self, *args, **kwargs):  # the new write fails half-way: the old forecast survives
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(xr.Dataset, "to_zarr", disk_full)
    code, err = climax(capsys, *forecast_argv(trained, ic, out, "--format", "wb2", "--overwrite"))
    assert code == 1 and "disk is full" in err[0]
    assert snapshot(out) == first and hidden(tmp_path) == []
    monkeypatch.undo()
    assert climax(capsys, *forecast_argv(trained, ic, out, "--format", "wb2", "--overwrite"))[0] == 0
    assert xr.open_zarr(out).sizes["time"] == 2


def test_convert_replaces_an_existing_file_only_with_overwrite(capsys, tmp_path):
    from conftest import tiny_climax
    from test_official_checkpoint import official_like_state, write_ckpt

    torch.manual_seed(0)
    ckpt = write_ckpt(
        tmp_path / "official.ckpt",
        official_like_state(tiny_climax(variables=list(DEFAULT_VARIABLES), img_size=(16, 32))),
    )
    out = tmp_path / "climax.mdlus"
    out.write_bytes(b"an earlier conversion")
    code, err = climax(capsys, "convert", str(ckpt), str(out), "--num-heads", "4")
    assert code == 1 and "--overwrite" in err[0] and out.read_bytes() == b"an earlier conversion"
    code, err = climax(capsys, "convert", str(ckpt), str(ckpt), "--num-heads", "4", "--overwrite")
    assert code == 1 and "is the input" in err[0]
    assert climax(capsys, "convert", str(ckpt), str(out), "--num-heads", "4", "--overwrite")[0] == 0


def test_a_launch_script_is_replaced_only_with_overwrite(capsys, tmp_path):
    script = tmp_path / "job.sh"
    script.write_text("#!/bin/bash\necho my own job\n")
    argv = ["launch", "torchrun", "--gpus-per-node", "2", "--run", "train task=pretrain", "-o", str(script)]
    code, err = climax(capsys, *argv)
    assert code == 1 and "--overwrite" in err[0] and "my own job" in script.read_text()
    assert climax(capsys, *argv, "--overwrite")[0] == 0 and "torchrun" in script.read_text()


def test_the_quickstart_never_deletes_a_store_it_did_not_make(capsys, store, tmp_path, monkeypatch):
    mine = Path(shutil.copytree(store, tmp_path / "my_era5"))
    before = snapshot(mine)
    monkeypatch.chdir(tmp_path)
    code, err = climax(capsys, "quickstart", f"data.root={mine}", f"simulation.raw_dir={tmp_path / 'sim'}")
    assert code == 1 and str(mine) in err[0] and "not made by the quickstart" in err[0]
    assert snapshot(mine) == before and not (tmp_path / "sim").exists()


# ------------------------------------------------------------------ an evaluation is one set of files
def test_an_evaluation_is_replaced_only_with_overwrite(trained, tmp_path):
    out = tmp_path / "eval"
    evaluate(load_run_config(trained, EVAL + [f"eval.out_dir={out}"]))
    before = snapshot(out)
    with pytest.raises(OutputError, match=r"eval\.overwrite=true"):
        evaluate(load_run_config(trained, EVAL + [f"eval.out_dir={out}"]))
    assert snapshot(out) == before


def test_an_evaluation_that_fails_late_keeps_the_whole_previous_set(trained, tmp_path, monkeypatch):
    out = tmp_path / "eval"
    cfg = load_run_config(trained, EVAL + [f"eval.out_dir={out}", "eval.overwrite=true"])
    evaluate(cfg)
    (out / "scorecard.csv").write_text("the scorecard of last week")
    before = snapshot(out)
    from physicsnemo_climax.forecasting import report

    def summary_fails(*args, **kwargs):  # the last file of the set
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(report, "summary_markdown", summary_fails)
    with pytest.raises(OutputError):
        evaluate(cfg)
    assert snapshot(out) == before and hidden(tmp_path) == []


def test_an_evaluation_into_a_folder_of_other_files_is_refused(trained, tmp_path):
    out = tmp_path / "results"
    out.mkdir()
    (out / "paper_figure.png").write_bytes(b"not ours")
    with pytest.raises(OutputError, match="not an evaluation"):
        evaluate(load_run_config(trained, EVAL + [f"eval.out_dir={out}", "eval.overwrite=true"]))
    assert snapshot(out) == {"paper_figure.png": b"not ours"}


def test_sigterm_during_an_evaluation_keeps_the_old_set_and_leaves_nothing_behind(trained, tmp_path):
    out = tmp_path / "eval"
    argv = ["evaluate", f"run_dir={trained}", *EVAL, f"eval.out_dir={out}", "eval.overwrite=true"]
    evaluate(load_run_config(trained, argv[2:]))
    before = snapshot(out)
    script = tmp_path / "terminated.py"
    script.write_text(
        textwrap.dedent(f"""
        import os, signal
        from physicsnemo_climax import cli
        from physicsnemo_climax.forecasting import report
        def plot_then_terminate(*args, **kwargs):
            os.kill(os.getpid(), signal.SIGTERM)
        report.plot_scores = plot_then_terminate
        cli.main({argv!r})
    """)
    )
    result = subprocess.run(
        [sys.executable, str(script)],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert result.returncode == 128 + signal.SIGTERM, result.stderr[-2000:]
    assert "terminated" in result.stderr
    assert snapshot(out) == before and hidden(tmp_path) == []


@pytest.mark.slow
def test_a_temporary_folder_left_by_kill_9_is_cleaned_on_the_next_start(trained, ic, tmp_path):
    out = tmp_path / "forecast.zarr"
    kill_self_at(
        "xarray:Dataset.to_zarr",
        "True",
        f"""
        from physicsnemo_climax import cli
        cli.main({forecast_argv(trained, ic, out, "--format", "wb2")!r})
    """,
        tmp_path,
    )
    assert hidden(tmp_path) and not out.exists()  # the killed write left its temporary folder
    subprocess.run(
        [sys.executable, "-m", "physicsnemo_climax.cli", *forecast_argv(trained, ic, out, "--format", "wb2")],
        check=True,
        cwd=tmp_path,
    )
    assert hidden(tmp_path) == [] and xr.open_zarr(out).sizes["time"] == 2


# ------------------------------------------------------------------ a run folder is a boundary
def test_a_saved_config_may_not_read_the_environment(run, tmp_path, monkeypatch):
    monkeypatch.setenv("CLIMAX_TARGET", str(tmp_path / "elsewhere"))
    saved = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(saved.replace("out_dir: ${run_dir}/eval", "out_dir: ${oc.env:CLIMAX_TARGET}"))
    with pytest.raises(ConfigError, match=r"eval\.out_dir.*oc\.env"):
        evaluate(load_run_config(run, EVAL))
    assert not (tmp_path / "elsewhere").exists()


def test_a_saved_config_may_not_send_outputs_out_of_its_run(run, tmp_path):
    outside = tmp_path / "outside"
    saved = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(saved.replace("out_dir: ${run_dir}/eval", f"out_dir: {outside}"))
    with pytest.raises(ConfigError, match="outside the run folder"):
        evaluate(load_run_config(run, EVAL))
    assert not outside.exists()
    evaluate(load_run_config(run, EVAL + [f"eval.out_dir={outside}"]))  # said on the command line: fine
    assert (outside / "scorecard.csv").exists()


@pytest.mark.parametrize("link", ["metrics.csv", "checkpoints", "checkpoints/best"])
def test_links_in_a_run_folder_are_not_written_through(store, tmp_path, link):
    victim = tmp_path / "victim"
    if link == "metrics.csv":
        victim.write_text("someone's file\n")
    else:
        victim.mkdir()
    before = snapshot(tmp_path / "victim") if victim.is_dir() else victim.read_bytes()
    run_dir = tmp_path / "run"
    (run_dir / link).parent.mkdir(parents=True)
    (run_dir / link).symlink_to(victim)
    with pytest.raises(OutputError, match=f"{link}.*symbolic link"):
        fit(store, run_dir, "train.log_every=1")
    assert (snapshot(victim) if victim.is_dir() else victim.read_bytes()) == before


def test_a_new_run_into_a_folder_of_other_files_is_refused(store, tmp_path):
    folder = tmp_path / "thesis"
    folder.mkdir()
    (folder / "chapter1.tex").write_text("...")
    with pytest.raises(ConfigError, match="not a run folder"):
        fit(store, folder)
    assert snapshot(folder) == {"chapter1.tex": b"..."}


def test_an_empty_folder_may_become_a_run(store, tmp_path):
    (tmp_path / "empty").mkdir()
    assert (fit(store, tmp_path / "empty", "train.steps=2") / "run.json").exists()


# ------------------------------------------------------------------ a run knows its data
@pytest.fixture
def relative_run(store, tmp_path, monkeypatch):
    """A run trained with a relative ``data.root`` from ``tmp_path/work``."""
    work = tmp_path / "work"
    work.mkdir()
    shutil.copytree(store, work / "store")
    monkeypatch.chdir(work)
    fit(Path("store"), work / "run")
    return work / "run"


def test_a_run_records_where_its_store_is_and_what_it_holds(relative_run):
    info = json.loads((relative_run / "run.json").read_text())
    assert info["data_root"] == str(relative_run.parent / "store")
    assert len(info["data_fingerprint"]) == 64


def test_evaluation_from_another_folder_scores_the_runs_store(relative_run, raw, tmp_path, monkeypatch):
    want = evaluate(load_run_config(relative_run, EVAL + [f"eval.out_dir={tmp_path / 'a'}"]))
    elsewhere = tmp_path / "elsewhere"
    warmer = [copy_year(path, tmp_path, lambda ds: ds.assign(t=ds.t + 3.0) if "t" in ds else ds) for path in raw]
    prepare(
        PrepareConfig(warmer, VARS, {"train": 2000, "val": 2001, "test": 2001}, grid=(8, 16), shards_per_year=2),
        elsewhere / "store",
    )  # other data under the same relative name
    monkeypatch.chdir(elsewhere)
    got = evaluate(load_run_config(relative_run, EVAL + [f"eval.out_dir={tmp_path / 'b'}"]))
    pd.testing.assert_frame_equal(got, want)


def test_another_store_in_the_runs_place_is_refused_naming_both(relative_run, store):
    recorded = relative_run.parent / "store"
    mean = np.load(recorded / "normalize_mean.npz")
    np.savez(recorded / "normalize_mean.npz", **{k: mean[k] + 1.0 for k in mean.files})
    fingerprint = json.loads((relative_run / "run.json").read_text())["data_fingerprint"]
    with pytest.raises(DataError, match=f"{recorded}.*not the store.*{fingerprint[:12]}"):
        evaluate(load_run_config(relative_run, EVAL))


def test_data_root_moves_the_store_and_is_checked_too(relative_run, store, tmp_path):
    moved = Path(shutil.copytree(relative_run.parent / "store", tmp_path / "moved"))
    shutil.rmtree(relative_run.parent / "store")
    table = evaluate(load_run_config(relative_run, EVAL + [f"data.root={moved}"]))
    assert (table.method == "model").any()
    other = Path(shutil.copytree(moved, tmp_path / "other"))
    (other / "store.json").write_text((other / "store.json").read_text().replace('"method"', '"methodx"'))
    with pytest.raises(DataError, match="not the store"):
        evaluate(load_run_config(relative_run, EVAL + [f"data.root={other}", "eval.overwrite=true"]))


# ------------------------------------------------------------------ evaluation settings
@pytest.mark.parametrize(
    "override, key",
    [
        ("eval.max_samples=0", "eval.max_samples"),
        ("eval.batch_size=0", "eval.batch_size"),
        ("eval.leads=[]", "eval.leads"),
        ("eval.leads=[-6]", "eval.leads"),
    ],
)
def test_bad_evaluation_settings_are_named(capsys, trained, tmp_path, override, key):
    code, err = climax(
        capsys, "evaluate", f"run_dir={trained}", "eval.leads=[12]", override, f"eval.out_dir={tmp_path / 'eval'}"
    )
    assert code == 1 and err[0].startswith(f"climax evaluate: error: {override}") and key in err[0], err
    assert not (tmp_path / "eval").exists()


def test_an_older_output_without_marker_is_recognised_by_its_files_only(tmp_path):
    from physicsnemo_climax.files import output_folder
    from physicsnemo_climax.forecasting.report import EVALUATION, is_report

    older = tmp_path / "eval"
    older.mkdir()
    (older / "scorecard.csv").write_text("an older scorecard")
    (older / "summary.md").write_text("# older")
    with output_folder(older, EVALUATION, overwrite=True, legacy=is_report) as staging:
        (staging / "scorecard.csv").write_text("new")
    assert snapshot(older) == {".climax-output.json": b'{"kind": "evaluation"}', "scorecard.csv": b"new"}
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "scorecard.csv").write_text("a scorecard")
    (mixed / "thesis.tex").write_text("not ours")
    with pytest.raises(OutputError, match="not an evaluation"):
        with output_folder(mixed, EVALUATION, overwrite=True, legacy=is_report):
            pass
    assert snapshot(mixed) == {"scorecard.csv": b"a scorecard", "thesis.tex": b"not ours"}
