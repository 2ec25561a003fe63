# SPDX-License-Identifier: Apache-2.0
"""`climax doctor`, the start-of-run check of a config's asks, and the SLURM address fix."""

import importlib.util
import json
import logging

import physicsnemo
import pytest
import torch

from physicsnemo_climax import cli
from physicsnemo_climax.config import load_config
from physicsnemo_climax.engine import distributed, plan
from physicsnemo_climax.engine.environment import Feature, probe
from physicsnemo_climax.engine.plan import MissingFeature

CUDA = torch.cuda.is_available()
HAS_DALI = importlib.util.find_spec("nvidia.dali") is not None
HAS_APEX = importlib.util.find_spec("apex") is not None and CUDA


def run_doctor(capsys, *argv):
    code = 0
    try:
        cli.main(["doctor", *argv])
    except SystemExit as exit:
        code = exit.code
    return code, capsys.readouterr().out


def machine(**features):
    """This machine's probe with some features replaced: ``gpu=True`` etc."""
    env = probe()
    for name, ok in features.items():
        env.features[name] = Feature(name, ok, "faked by the test")
    return env


def test_doctor_reports_this_machine(capsys):
    code, out = run_doctor(capsys, "--json")
    report = json.loads(out)
    found = {name: f["ok"] for name, f in report["environment"].items()}
    assert found["gpu"] == CUDA and found["fp16"] == CUDA
    assert found["dali"] == HAS_DALI and found["dali_gpu"] == (HAS_DALI and CUDA)
    assert found["apex_adam"] == found["apex_layer_norm"] == HAS_APEX
    assert found["transformer_engine"] == (importlib.util.find_spec("transformer_engine") is not None)
    assert torch.__version__ in report["environment"]["torch"]["detail"]
    assert physicsnemo.__version__ in report["environment"]["physicsnemo"]["detail"]
    assert found["distributed"]
    # the default config asks for nothing special: it runs anywhere
    assert code == 0 and report["ready"]
    assert [c["key"] for c in report["choices"]] == ["train.precision", "train.fused", "train.loader"]


@pytest.mark.skipif(CUDA, reason="checks the report of a machine without a GPU")
def test_the_text_report_marks_what_this_cpu_machine_lacks(capsys):
    code, out = run_doctor(capsys)
    lines = {line[5:].split("  ")[0].strip(): line[:5] for line in out.splitlines() if line.startswith("  ")}
    assert lines["GPU"] == lines["fp16"] == lines["DALI GPU pipelines"] == "   - "
    assert lines["torch"] == lines["PhysicsNeMo"] == "  ok "
    if not HAS_APEX:
        assert lines["apex FusedAdam"] == lines["apex GroupNorm"] == "   - "
    assert "ready: the config's requests are met here" in out and code == 0


@pytest.mark.skipif(HAS_APEX, reason="apex is present")
def test_unmet_ask_exits_nonzero_unless_fallback_is_allowed(capsys):
    code, out = run_doctor(capsys, "train.fused=apex")
    assert code == 1
    assert "train.fused='apex': NVIDIA apex fused kernels are missing" in out
    assert "train.fallback=true" in out
    code, out = run_doctor(capsys, "train.fused=apex", "train.fallback=true")
    assert code == 0 and "falls back to 'torch'" in out and "1 fallback(s)" in out


def test_precision_asks_depend_on_gpu_and_job():
    climax, corrdiff = (
        load_config(["train.precision=bf16"]),
        load_config(["train.precision=bf16"], name="config_training_hrrr_mini_regression"),
    )
    no_gpu = machine(gpu=False, bf16=True, fp16=False)
    [c] = [c for c in plan.choices(climax, no_gpu) if c.key == "train.precision"]
    assert c.missing is None  # ClimaX autocasts bf16 on the CPU
    [c] = [c for c in plan.choices(corrdiff, no_gpu) if c.key == "train.precision"]
    assert "CUDA only" in c.missing and c.fallback == "fp32"
    old_gpu = machine(gpu=True, bf16=False, fp16=True)
    [c] = [c for c in plan.choices(climax, old_gpu) if c.key == "train.precision"]
    assert "no bf16" in c.missing
    fp16 = load_config(["train.precision=fp16"])
    assert [c.missing for c in plan.choices(fp16, old_gpu) if c.key == "train.precision"] == [None]
    [c] = [c for c in plan.choices(fp16, no_gpu) if c.key == "train.precision"]
    assert "CUDA GPU" in c.missing


def test_loader_fallbacks_step_down_to_what_is_present():
    cfg = load_config(["train.loader=dali_gpu", "train.fallback=true"])
    [c] = [c for c in plan.choices(cfg, machine(gpu=False, dali=True, dali_gpu=False)) if c.key == "train.loader"]
    assert c.fallback == "dali_cpu" and c.allowed and not c.fails
    [c] = [c for c in plan.choices(cfg, machine(dali=False, dali_gpu=False)) if c.key == "train.loader"]
    assert c.fallback == "threads"
    [c] = [c for c in plan.choices(cfg, machine(gpu=True, dali=True, dali_gpu=True)) if c.key == "train.loader"]
    assert c.missing is None


def test_resolve_raises_with_every_unmet_ask_and_leaves_the_config_alone():
    cfg = load_config(["train.fused=apex", "train.precision=fp16", "train.compile=true"])
    env = machine(gpu=False, fp16=False, apex_adam=False, apex_layer_norm=False, compile=False)
    with pytest.raises(MissingFeature) as err:
        plan.resolve(cfg, env)
    message = str(err.value)
    for key in ("train.fused='apex'", "train.precision='fp16'", "train.compile=True"):
        assert key in message
    assert "climax doctor" in message
    assert cfg.train.fused == "apex" and cfg.train.precision == "fp16"


def test_resolve_falls_back_where_allowed_and_says_so(caplog):
    cfg = load_config(["train.fused=apex", "train.precision=fp16", "train.loader=dali_gpu", "train.fallback=true"])
    env = machine(gpu=False, fp16=False, apex_adam=False, dali=True, dali_gpu=False)
    with caplog.at_level(logging.WARNING, logger="physicsnemo_climax.engine.plan"):
        resolved = plan.resolve(cfg, env)
    assert (resolved.fused, resolved.precision, resolved.loader) == ("torch", "fp32", "dali_cpu")
    recorded = resolved.applied(cfg)  # what the run's config.yaml says
    assert (recorded.train.fused, recorded.train.precision, recorded.train.loader) == ("torch", "fp32", "dali_cpu")
    assert cfg.train.fused == "apex"  # a copy was changed
    assert [c.key for c in resolved.fallbacks] == ["train.precision", "train.fused", "train.loader"]
    warned = [r.getMessage() for r in caplog.records]
    assert len(warned) == 3 and all("falling back" in w for w in warned)


def test_apex_group_norm_true_is_required_and_auto_is_not():
    env = machine(apex_group_norm=False)
    name = "config_training_hrrr_mini_regression"
    with pytest.raises(MissingFeature, match="model.use_apex_gn=True: apex GroupNorm is missing"):
        plan.resolve(load_config(["model.use_apex_gn=true"], name=name), env)
    cfg = load_config(["model.use_apex_gn=true", "train.fallback=true"], name=name)
    resolved = plan.resolve(cfg, env)
    assert resolved.apex_group_norm is False and resolved.applied(cfg).model.use_apex_gn is False
    cfg = load_config([], name=name)
    resolved = plan.resolve(cfg, env)
    assert resolved.apex_group_norm is False and resolved.applied(cfg).model.use_apex_gn == "auto"


def test_generation_precision_has_its_own_fallback():
    name = "config_generate_hrrr_mini"
    env = machine(gpu=False, fp16=False)
    with pytest.raises(MissingFeature, match="generation.fallback=true"):
        plan.resolve(load_config(["generation.precision=fp16"], name=name), env)
    resolved = plan.resolve(load_config(["generation.precision=fp16", "generation.fallback=true"], name=name), env)
    assert resolved.precision == "fp32"


# ------------------------------------------------------------------ SLURM rendezvous address
@pytest.fixture
def slurm_env(monkeypatch):
    for key in ("RANK", "MASTER_ADDR", "SLURM_LAUNCH_NODE_IPADDR", "PHYSICSNEMO_DISTRIBUTED_INITIALIZATION_METHOD"):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("SLURM_PROCID", "3")
    monkeypatch.setenv("SLURM_NPROCS", "8")
    return monkeypatch


def test_slurm_address_comes_from_master_addr(slurm_env):
    import os

    slurm_env.setenv("MASTER_ADDR", "node017")
    distributed._slurm_address()
    assert os.environ["SLURM_LAUNCH_NODE_IPADDR"] == "node017"
    slurm_env.setenv("SLURM_LAUNCH_NODE_IPADDR", "10.0.0.1")  # srun's own value wins
    distributed._slurm_address()
    assert os.environ["SLURM_LAUNCH_NODE_IPADDR"] == "10.0.0.1"


def test_slurm_without_any_address_says_what_to_export(slurm_env):
    with pytest.raises(RuntimeError, match="export MASTER_ADDR"):
        distributed._slurm_address()
    launcher = probe()["launcher"]
    assert not launcher.ok and launcher.detail.startswith("SLURM: rank 3 of 8")
    assert "export MASTER_ADDR" in launcher.detail
    slurm_env.setenv("RANK", "3")  # torchrun inside an allocation: the ENV method, no address needed
    distributed._slurm_address()


def test_precision_auto_is_bf16_on_a_bf16_gpu_or_an_amx_cpu_and_fp32_elsewhere():
    cfg = load_config(["train.precision=auto"])
    cases = [
        (dict(gpu=False, amx=True), "bf16"),
        (dict(gpu=False, amx=False), "fp32"),
        (dict(gpu=True, bf16=True, amx=False), "bf16"),
        (dict(gpu=True, bf16=False, amx=True), "fp32"),
    ]
    for features, want in cases:
        assert plan.resolve(cfg, machine(**features)).precision == want, features
    corrdiff = load_config(["train.precision=auto"], name="config_training_hrrr_mini_regression")
    assert plan.resolve(corrdiff, machine(gpu=False, amx=True)).precision == "fp32"  # CUDA only
