# SPDX-License-Identifier: Apache-2.0
from pathlib import Path

import pytest
import torch
from conftest import tiny_climax
from physicsnemo.core import Module
from test_official_checkpoint import official_like_state, write_ckpt

from physicsnemo_climax.cli import main
from physicsnemo_climax.models import DEFAULT_VARIABLES


@pytest.mark.parametrize(
    "command",
    ["demo", "convert", "train", "evaluate", "forecast", "quickstart", "data prepare", "data stats", "data simulate"],
)
def test_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        main([*command.split(), "--help"])
    assert exit_.value.code == 0
    assert "usage: climax " + command in capsys.readouterr().out


def test_demo_runs_small(capsys):
    main(["demo", "--embed-dim", "64", "--depth", "1", "--num-heads", "4", "--batch", "1"])
    out = capsys.readouterr().out
    assert "output (1, 3, 32, 64)" in out and "NorthAmerica region output (1, 3, 10, 14)" in out


def test_convert(tmp_path, capsys):
    torch.manual_seed(0)
    source = tiny_climax(variables=list(DEFAULT_VARIABLES), img_size=(32, 64))
    ckpt = write_ckpt(tmp_path / "official.ckpt", official_like_state(source))
    out = tmp_path / "climax.mdlus"
    main(
        [
            "convert",
            str(ckpt),
            str(out),
            "--num-heads",
            "4",
            "--img-size",
            "64",
            "128",
            "--variables",
            "2m_temperature,geopotential_500",
        ]
    )
    assert "grid (64, 128)" in capsys.readouterr().out
    model = Module.from_checkpoint(str(out))
    assert model.variables == ["2m_temperature", "geopotential_500"]
    assert model.img_size == (64, 128)


def test_quickstart_example_runs(capsys, monkeypatch):
    import runpy
    from pathlib import Path

    script = Path(__file__).parents[1] / "examples" / "climax" / "quickstart.py"
    monkeypatch.setattr("sys.argv", [str(script)])
    runpy.run_path(str(script), run_name="__main__")
    assert "identical outputs: True" in capsys.readouterr().out


@pytest.mark.slow
def test_quickstart_settings_run_end_to_end_and_say_what_beats_the_baselines(tmp_path, monkeypatch, capsys):
    pytest.importorskip("dinosaur_torch")
    from physicsnemo_climax.cli import main

    monkeypatch.chdir(tmp_path)  # data/ and runs/ of the quickstart go here
    main(
        [
            "quickstart",
            "simulation.days=6",
            "simulation.spinup_days=0.5",
            "simulation.splits.train=2000-01-01:2000-01-03",
            "simulation.splits.val=2000-01-04:2000-01-04",
            "simulation.splits.test=2000-01-05:2000-01-06",
            "train.steps=4",
            "train.val_every=2",
            "train.ckpt_every=2",
            "train.warmup_steps=1",
            "task.lead_range=[6,12]",
            "eval.leads=[6,12]",
            "eval.max_samples=4",
        ]
    )
    out = capsys.readouterr().out
    assert "model against the better baseline (RMSE):" in out and "+12 h" in out
    assert "variable-lead pairs beat both baselines" in out
    assert (tmp_path / "runs" / "quickstart" / "eval" / "summary.md").exists()
    from physicsnemo.core import Module

    from physicsnemo_climax.engine import checkpointing

    model = Module.from_checkpoint(str(checkpointing.model_file(tmp_path / "runs" / "quickstart" / "checkpoints")))
    assert model.head.window == 2 * model.patch_size and model.periodic  # overlapping windows, wrapping east-west
    assert model.anomaly_corr.shape[:2] == (len(model.variables), 32)  # persistence per latitude row


def test_forecast_takes_a_run_folder_or_one_of_its_model_files(trained, store, tmp_path, capsys):
    """``--run`` is the run folder (its newest checkpoint); ``--checkpoint`` also takes a model file in
    the run's ``checkpoints/``: that step's weights with the run's ``run.json``."""
    import shutil

    import xarray as xr
    from faults import climax, initial_condition

    from physicsnemo_climax.engine import checkpointing
    from physicsnemo_climax.errors import CheckpointError, ConfigError
    from physicsnemo_climax.forecasting import Run

    initial_condition(store).to_netcdf(tmp_path / "ic.nc")
    folder = trained / "checkpoints"
    newest, older = (checkpointing.files_of(folder, step)["model"] for step in (4, 2))

    def forecast(option, path, name):
        code, err = climax(
            capsys,
            "forecast",
            option,
            str(path),
            "--input",
            str(tmp_path / "ic.nc"),
            "--lead",
            "12",
            "--output",
            str(tmp_path / name),
            "--device",
            "cpu",
        )
        assert code == 0, err
        return xr.open_dataset(tmp_path / name)

    with (
        forecast("--run", trained, "run.nc") as a,
        forecast("--checkpoint", newest, "newest.nc") as b,
        forecast("--checkpoint", older, "older.nc") as c,
        forecast("--checkpoint", trained, "alias.nc") as d,
    ):
        assert a.attrs["checkpoint"] == b.attrs["checkpoint"] == d.attrs["checkpoint"] == str(newest.resolve())
        assert c.attrs["checkpoint"] == str(older.resolve()) and c.attrs["run_dir"] == str(trained.resolve())
        xr.testing.assert_identical(a.drop_attrs(), b.drop_attrs())
        assert not a["2m_temperature"].equals(c["2m_temperature"])  # step 2's weights, not step 4's

    outside = Path(shutil.copy(older, tmp_path / "loose.mdlus"))  # no run.json above it
    code, err = climax(
        capsys,
        "forecast",
        "--checkpoint",
        str(outside),
        "--input",
        str(tmp_path / "ic.nc"),
        "--lead",
        "12",
        "--output",
        str(tmp_path / "x.nc"),
    )
    assert code != 0 and any("--checkpoint" in line and "statistics" in line for line in err), err
    with pytest.raises(ConfigError, match="not inside a training run folder"):
        Run.load(outside)

    damaged = Path(shutil.copytree(trained, tmp_path / "damaged"))
    file = checkpointing.files_of(damaged / "checkpoints", 2)["model"]
    file.write_bytes(file.read_bytes()[:-10] + b"0123456789")
    with pytest.raises(CheckpointError, match="step 2.*checksum"):  # refused, never replaced by step 4
        Run.load(file)
    with pytest.raises(SystemExit):  # one of the two, not both
        main(
            [
                "forecast",
                "--run",
                str(trained),
                "--checkpoint",
                str(newest),
                "--input",
                "ic.nc",
                "--lead",
                "12",
                "--output",
                "x.nc",
            ]
        )
