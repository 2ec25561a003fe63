# SPDX-License-Identifier: Apache-2.0
"""The train and eval sections as typed records: every value from the YAML, typed, checked,
and a key the config lacks named (no second default in the code)."""

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from physicsnemo_climax.config import load_config
from physicsnemo_climax.engine.settings import TrainSettings
from physicsnemo_climax.errors import ConfigError
from physicsnemo_climax.forecasting.settings import EvalSettings


def section(cfg, name, drop=None):
    values = OmegaConf.to_container(cfg[name], resolve=False)
    values.pop(drop, None)
    return OmegaConf.create(values)


def test_eval_settings_carry_the_yaml_values_typed():
    cfg = load_config(
        [
            "eval.leads=[6,1D,36h]",
            "eval.members=3",
            "eval.perturbation=bred",
            "eval.seed=7",
            "eval.variables=[2m_temperature]",
            "eval.out_dir=/tmp/x",
        ]
    )
    e = EvalSettings.from_config(cfg.eval)
    assert e.leads == (6.0, 24.0, 36.0) and e.variables == ("2m_temperature",) and e.out_dir == Path("/tmp/x")
    assert (e.ensemble.members, e.ensemble.perturbation, e.ensemble.seed) == (3, "bred", 7)
    assert e.ensemble.scale == cfg.eval.perturbation_scale  # the YAML's default, not one of the code's
    assert e.regions == ("all",) and e.spectra_leads is None and e.climatology == "wb2"


@pytest.mark.parametrize(
    "override, key",
    [
        ("eval.mode=sideways", "eval.mode"),
        ("eval.members=0", "eval.members"),
        ("eval.leads=[]", "eval.leads"),
        ("eval.leads=[-6]", "eval.leads"),
        ("eval.seed=-1", "eval.seed"),
        ("eval.batch_size=1.5", "eval.batch_size"),
    ],
)
def test_eval_settings_refuse_bad_values_by_name(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        EvalSettings.from_config(load_config([override, "eval.out_dir=/tmp/x"]).eval)


def test_a_section_lacking_a_key_is_an_error_naming_it():
    cfg = load_config(["eval.out_dir=/tmp/x"])
    with pytest.raises(ConfigError, match=r"eval\.climatology_window is missing.*conf/config\.yaml"):
        EvalSettings.from_config(section(cfg, "eval", drop="climatology_window"))
    with pytest.raises(ConfigError, match=r"train\.val_batches is missing.*conf/train/default\.yaml"):
        TrainSettings.from_config(section(cfg, "train", drop="val_batches"))


def test_train_settings_carry_the_yaml_values_typed():
    t = TrainSettings.from_config(load_config(["train.lora.rank=4", "train.freeze=[blocks.*]"]).train)
    assert (t.lora.rank, t.lora.alpha, t.lora.targets) == (4, 16.0, None)
    assert t.freeze == ("blocks.*",) and t.betas == (0.9, 0.95) and t.steps == 2000
    with pytest.raises(AttributeError):
        t.steps = 1  # frozen: decided once
