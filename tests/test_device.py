# SPDX-License-Identifier: Apache-2.0
"""One device rule for every entry point (engine.plan.decide_device), checked on the CPU with the
CUDA probe faked: nothing runs on the faked GPU."""

import json

import pytest
import torch
import xarray as xr
from faults import climax, forecast_args, initial_condition

from physicsnemo_climax.config import load_config, load_run_config
from physicsnemo_climax.engine.plan import decide_device
from physicsnemo_climax.errors import ConfigError
from physicsnemo_climax.forecasting import Run, evaluate


@pytest.fixture
def gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)


@pytest.fixture
def no_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_unset_is_cuda_where_a_gpu_is_visible_and_explicit_devices_are_honoured(gpu):
    assert decide_device(None) == torch.device("cuda")
    assert decide_device("auto") == torch.device("cuda")
    assert decide_device("cpu") == torch.device("cpu")
    assert decide_device("cuda:1") == torch.device("cuda", 1)
    with pytest.raises(ConfigError, match=r"--device='cuda:2'.*2 CUDA device"):
        decide_device("cuda:2", "--device")


def test_unset_is_the_cpu_without_a_gpu_and_cuda_is_an_error_naming_the_option(no_gpu):
    assert decide_device(None) == torch.device("cpu")
    assert decide_device(torch.device("cpu")) == torch.device("cpu")
    for option in ("--device", "eval.device", "generation.device"):
        with pytest.raises(ConfigError, match=rf"^{option}='cuda': no CUDA GPU is visible"):
            decide_device("cuda", option)
    with pytest.raises(ConfigError, match=r"--device='gpu'.*cpu, cuda or cuda:N"):
        decide_device("gpu", "--device")
    with pytest.raises(ConfigError, match=r"device='tpu'"):
        decide_device("tpu")


def test_every_entry_point_refuses_cuda_without_a_gpu_before_any_work(no_gpu, tmp_path, capsys):
    with pytest.raises(ConfigError, match="^device='cuda'"):
        Run.load(tmp_path / "no_run", "cuda")  # decided before the folder is read
    cfg = load_config([f"run_dir={tmp_path / 'no_run'}", "eval.device=cuda"])
    with pytest.raises(ConfigError, match="^eval.device='cuda'"):
        evaluate(cfg)
    code, err = climax(
        capsys, *forecast_args(tmp_path / "no_run", "ic.nc", tmp_path / "out.nc", "12", "--device", "cuda")
    )
    assert code != 0 and any("--device='cuda'" in line for line in err)


def test_the_device_used_is_recorded_in_the_forecast_and_the_scorecard(trained, store, tmp_path, capsys):
    initial_condition(store).to_netcdf(tmp_path / "ic.nc")
    code, err = climax(capsys, *forecast_args(trained, tmp_path / "ic.nc", tmp_path / "fc.nc", "12", "--device", "cpu"))
    assert code == 0, err
    with xr.open_dataset(tmp_path / "fc.nc") as fc:
        assert fc.attrs["device"] == "cpu"
    assert Run.load(trained).provenance()["device"] == "cpu"  # unset: no GPU here
    evaluate(
        load_run_config(
            trained,
            [
                f"eval.out_dir={tmp_path / 'eval'}",
                "eval.leads=[12]",
                "eval.max_samples=2",
                "eval.batch_size=2",
                "eval.regions=[global]",
                "eval.climatology=train_mean",
                "eval.device=cpu",
            ],
        )
    )
    assert json.loads((tmp_path / "eval" / "scorecard.json").read_text())["device"] == "cpu"
