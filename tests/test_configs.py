# SPDX-License-Identifier: Apache-2.0
"""Model presets in conf/ compose with Hydra and build the model they describe."""

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from hydra.utils import instantiate

from physicsnemo_climax.models import ClimaX

CONF = Path(__file__).parents[1] / "conf" / "model"


@pytest.mark.parametrize(
    "preset, img_size, patch, dim, params",
    [
        ("climax", (32, 64), 2, 1024, 108_088_512),
        # only pos_embed grows: 2048 instead of 512 tokens, and p=4 kernels/head rows
        ("climax_1.40625deg", (128, 256), 4, 1024, None),
        ("climax_tiny", (32, 64), 2, 128, None),
    ],
)
def test_model_presets(preset, img_size, patch, dim, params):
    with initialize_config_dir(config_dir=str(CONF), version_base=None):
        cfg = compose(config_name=preset)
    model = instantiate(cfg)
    assert isinstance(model, ClimaX)
    assert (model.img_size, model.patch_size, model.pos_embed.shape[-1]) == (img_size, patch, dim)
    if params:
        assert sum(p.numel() for p in model.parameters()) == params
    if preset == "climax_1.40625deg":
        base = 108_088_512
        extra = (2048 - 512) * 1024 + 48 * 1024 * (16 - 4) + (48 * 16 - 48 * 4) * 1025
        assert sum(p.numel() for p in model.parameters()) == base + extra


def test_each_task_config_names_its_package():
    from omegaconf import OmegaConf, open_dict

    from physicsnemo_climax import climate_downscaling, climate_projection, forecasting, s2s
    from physicsnemo_climax.config import load_config
    from physicsnemo_climax.engine.checks import ConfigError
    from physicsnemo_climax.tasks import package

    tasks = sorted(p.stem for p in (CONF.parent / "task").glob("*.yaml"))
    newer = {"s2s": s2s, "climate_downscaling": climate_downscaling}  # their run folders always name it
    for task in tasks:
        want = newer.get(task) or (climate_projection if task == "climatebench" else forecasting)
        cfg = load_config([f"task={task}"])
        assert package(cfg) is want, task
        if task in newer:
            continue
        with open_dict(cfg):
            del cfg.task["package"]  # a run folder from before task.package
        assert package(cfg) is want, task
    with pytest.raises(ConfigError, match="task.package='weather'"):
        package(OmegaConf.create({"task": {"name": "x", "package": "weather"}}))
