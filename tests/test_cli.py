# SPDX-License-Identifier: Apache-2.0
import pytest
import torch
from conftest import tiny_climax
from physicsnemo.core import Module
from test_official_checkpoint import official_like_state, write_ckpt

from physicsnemo_climax.cli import main
from physicsnemo_climax.models import DEFAULT_VARIABLES


@pytest.mark.parametrize("command", ["demo", "convert", "train", "evaluate", "forecast", "quickstart",
                                     "data prepare", "data stats", "data simulate"])
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
    main(["convert", str(ckpt), str(out), "--num-heads", "4", "--img-size", "64", "128",
          "--variables", "2m_temperature,geopotential_500"])
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
    main(["quickstart", "simulation.days=6", "simulation.spinup_days=0.5",
          "simulation.splits.train=2000-01-01:2000-01-03", "simulation.splits.val=2000-01-04:2000-01-04",
          "simulation.splits.test=2000-01-05:2000-01-06", "train.steps=4", "train.val_every=2",
          "train.ckpt_every=2", "train.warmup_steps=1", "task.lead_range=[6,12]", "eval.leads=[6,12]",
          "eval.max_samples=4"])
    out = capsys.readouterr().out
    assert "model against the better baseline (RMSE):" in out and "+12 h" in out
    assert "variable-lead pairs beat both baselines" in out
    assert (tmp_path / "runs" / "quickstart" / "eval" / "summary.md").exists()
    from physicsnemo.core import Module

    from physicsnemo_climax.engine import checkpointing

    model = Module.from_checkpoint(str(checkpointing.model_file(tmp_path / "runs" / "quickstart" / "checkpoints")))
    assert model.head.window == 2 * model.patch_size and model.periodic  # overlapping windows, wrapping east-west
    assert model.anomaly_corr.shape[:2] == (len(model.variables), 32)  # persistence per latitude row
