# SPDX-License-Identifier: Apache-2.0
"""ClimaX as a downscaler: built for the target grid, fed the interpolated inputs.

The model is :class:`..models.ClimaX` on the fine grid. Its inputs are the
interpolated input variables (and the target store's constants), its outputs
the target variables; a variable in both keeps one name, so its embedding and
head rows are shared (and move by name from a pretrained checkpoint). The lead
time is a constant 0: there is no step forward in time. With
``task.residual`` the model predicts the correction to the interpolation:
``prediction = interpolated input + ClimaX output`` in the target's
normalized units.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from omegaconf import DictConfig, OmegaConf

from ..engine.checks import config_error
from ..errors import ConfigError
from ..models import ClimaX


def model_names(inputs, outputs) -> list[str]:
    """Every variable the model embeds: inputs then outputs, in first-seen order."""
    return list(dict.fromkeys([*inputs, *outputs]))


def build_model(cfg: DictConfig, inputs, outputs, lat, lon) -> ClimaX:
    """ClimaX on the target grid ``lat`` ``[H]``, ``lon`` ``[W]``, from ``cfg.init`` when given
    (:func:`..models.pretrained.load_weights`: variables by name, ``pos_embed`` resampled).

    Raises
    ------
    ConfigError
        ``model.residual=true`` (the forecasting residual, not this task's: ``task.residual``),
        ``model.noise_dim > 0`` (a forecasting model), or weights of ``init`` that do not fit.
    """
    args = OmegaConf.to_container(cfg.model, resolve=True)
    args.pop("_target_", None)
    if args.pop("residual", False):
        raise config_error(
            "model.residual",
            True,
            "that is the forecasting residual around persistence; downscaling's is task.residual",
        )
    if args.pop("noise_dim", 0):
        raise config_error(
            "model.noise_dim", cfg.model.noise_dim, "the stochastic ClimaX is a forecasting model; leave it 0"
        )
    args.update(variables=model_names(inputs, outputs), img_size=[len(lat), len(lon)], lat=list(lat), lon=list(lon))
    try:
        return ClimaX.from_pretrained(str(cfg.init), **args) if cfg.get("init") else ClimaX(**args)
    except (KeyError, ValueError) as err:
        raise ConfigError(f"init={cfg.init}: {err}") from err


@dataclass(frozen=True)
class ResidualMap:
    """Each output's interpolated input in the output's normalized units: ``x[rows] * scale + offset``.

    Attributes
    ----------
    rows : tuple of int
        The channel of ``x`` holding each output's interpolated input.
    scale, offset : tuple of float
        ``std_in / std_out`` and ``(mean_in - mean_out) / std_out`` per output.
    """

    rows: tuple[int, ...]
    scale: tuple[float, ...]
    offset: tuple[float, ...]

    def base(self, x: torch.Tensor) -> torch.Tensor:
        """The interpolation ``[B, V_out, H, W]`` of ``x`` ``[B, V, H, W]``, in normalized target units."""
        scale = torch.tensor(self.scale, dtype=x.dtype, device=x.device)[:, None, None]
        offset = torch.tensor(self.offset, dtype=x.dtype, device=x.device)[:, None, None]
        return x[:, list(self.rows)] * scale + offset


def residual_map(inputs, outputs, statistics: dict) -> ResidualMap:
    """The :class:`ResidualMap` of ``outputs`` over ``inputs`` (the model's channels).

    Raises
    ------
    ConfigError
        Naming ``task.residual`` and the outputs that are not inputs.
    """
    inputs = list(inputs)
    missing = [v for v in outputs if v not in inputs]
    if missing:
        raise config_error(
            "task.residual",
            True,
            f"outputs {missing} are not inputs, so there is no interpolation to correct; "
            "add them to data.variables or set task.residual=false",
        )
    s_in, s_out = statistics["input"], statistics["target"]
    return ResidualMap(
        rows=tuple(inputs.index(v) for v in outputs),
        scale=tuple(s_in[v]["std"] / s_out[v]["std"] for v in outputs),
        offset=tuple((s_in[v]["mean"] - s_out[v]["mean"]) / s_out[v]["std"] for v in outputs),
    )


def predict(net, x: torch.Tensor, inputs, outputs, residual: ResidualMap | None) -> torch.Tensor:
    """Normalized target fields ``[B, V_out, H, W]`` from the model inputs ``x`` ``[B, V, H, W]``."""
    lead = torch.zeros(x.shape[0], device=x.device, dtype=x.dtype)  # no step in time
    out = net(x, lead, list(inputs), list(outputs))
    return out if residual is None else out + residual.base(x).to(out.dtype)
