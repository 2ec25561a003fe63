# SPDX-License-Identifier: Apache-2.0
"""ClimaX as an Earth2Studio prognostic model (``earth2studio.models.px`` protocol).

Coordinates, as Earth2Studio's own wrappers declare them::

    input:  batch (any leading dims), lead_time = [0 h], variable, lat, lon
    output: the same, lead_time advanced by one model step

``variable`` holds the Earth2Studio ids of the model's non-constant inputs;
the model predicts all of them, so its output feeds the next step. Constant
inputs (land-sea mask, orography, latitude) live inside the wrapper. Fields
come in physical units and are normalized with the statistics ClimaX was
trained with.

For a rollout to be good, the ClimaX run must predict every non-constant
input (``task=finetune_rollout`` trains such a model, as does the
quickstart). A run that predicts fewer still steps, but the variables it
was not trained to predict come from untrained head rows.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from ..data import open_store
from ..data.forcings import Forcings, unix_seconds
from ..engine.plan import decide_device
from ..errors import ConfigError, InputError, UnknownName
from ..forecasting import Run
from ..forecasting.rollout import forecast_steps
from ..forecasting.run import check_store
from ..hub import CATALOGUE, WeightsPackage, local_file
from ..models import ClimaX, mdlus
from ..models.variables import CONSTANTS
from .lexicon import to_e2s_all

CoordSystem = OrderedDict  # Earth2Studio's CoordSystem: OrderedDict[str, np.ndarray]

#: Where the official ClimaX checkpoints are published (``load_default_package``).
OFFICIAL_FOLDER = CATALOGUE["climax-5.625deg"].url.rsplit("/", 1)[0]  # hf://tungnd/climax

#: The model dims after the leading (batch-like) ones.
DIMS = ("lead_time", "variable", "lat", "lon")


def check_coords(coords: CoordSystem, target: CoordSystem, dims: Sequence[str], exact: Sequence[str]) -> None:
    """Earth2Studio's handshake: ``dims`` last and in order, ``exact`` equal to ``target``'s."""
    from earth2studio.utils.coords import handshake_coords, handshake_dim

    for i, dim in enumerate(dims):
        handshake_dim(coords, dim, i - len(dims))
    for dim in exact:
        handshake_coords(coords, target, dim)


class ClimaXPrognostic(torch.nn.Module):
    """A ClimaX model stepping Earth2Studio coordinates.

    Parameters
    ----------
    model : ClimaX
        The network (``physicsnemo.core.Module``).
    variables : sequence of str
        ClimaX names of the network inputs, in order (constants included).
    mean, std : array-like
        ``[V]`` normalization statistics of ``variables``.
    lat, lon : np.ndarray
        The model grid (degrees); Earth2Studio maps sources onto it.
    step_hours : float
        Lead time of one model step.
    constants : mapping, optional
        ``name -> [H, W]`` fields (physical units) of the constant inputs.
        ``lattitude`` defaults to the grid latitude.
    names : mapping, optional
        ClimaX name -> Earth2Studio id, for names the lexicon lacks.
    forcings : Forcings, optional
        The computed inputs among ``variables`` (:mod:`physicsnemo_climax.data.forcings`):
        not Earth2Studio variables; each step computes them for its valid time from the
        coordinates' ``time`` and ``lead_time``.
    """

    def __init__(
        self,
        model,
        variables: Sequence[str],
        mean,
        std,
        lat: np.ndarray,
        lon: np.ndarray,
        step_hours: float = 6.0,
        constants: Mapping[str, np.ndarray] | None = None,
        names: Mapping[str, str] | None = None,
        forcings: Forcings | None = None,
    ):
        super().__init__()
        self.model = model.eval()
        self.variables = list(variables)
        self.forcings = forcings
        computed = [n for n in (forcings.names if forcings is not None else ()) if n in self.variables]
        self.computed = computed
        self.dynamic = [v for v in self.variables if v not in CONSTANTS and v not in computed]
        self.lat, self.lon = np.asarray(lat, dtype=np.float64), np.asarray(lon, dtype=np.float64)
        minutes = int(round(step_hours * 60))
        self.step = np.timedelta64(minutes // 60, "h") if minutes % 60 == 0 else np.timedelta64(minutes, "m")
        self.step_hours = float(step_hours)
        self.e2s_variables = np.array(to_e2s_all(self.dynamic, names))
        mean, std = np.asarray(mean, np.float32), np.asarray(std, np.float32)
        index = [self.variables.index(v) for v in self.dynamic]
        self.register_buffer("mean", torch.as_tensor(mean[index])[:, None, None])
        self.register_buffer("std", torch.as_tensor(std[index])[:, None, None])
        fixed = [v for v in self.variables if v in CONSTANTS and v not in computed]
        constants = dict(constants or {})
        if "lattitude" in fixed and "lattitude" not in constants:
            constants["lattitude"] = np.broadcast_to(self.lat[:, None], (self.lat.size, self.lon.size))
        missing = [v for v in fixed if v not in constants]
        if missing:
            raise UnknownName(f"constant inputs {missing} need fields: pass constants={{name: [H, W] array}}")
        c = (
            np.stack(
                [
                    (np.asarray(constants[v], np.float32) - mean[self.variables.index(v)])
                    / std[self.variables.index(v)]
                    for v in fixed
                ]
            )
            if fixed
            else np.zeros((0, *self.grid))
        )
        if c.shape[1:] != self.grid:
            raise InputError(f"constants are {c.shape[1:]}, the model grid is {self.grid}")
        self.register_buffer("constants", torch.as_tensor(c, dtype=torch.float32))
        self.fixed = fixed

    @property
    def grid(self) -> tuple[int, int]:
        return self.lat.size, self.lon.size

    # ---------------------------------------------------------------- building
    @classmethod
    def from_run(
        cls,
        run_dir: str | Path,
        step_hours: float | None = None,
        constants: Mapping[str, np.ndarray] | None = None,
        names: Mapping[str, str] | None = None,
        device: str | torch.device | None = None,
    ):
        """From a ``climax train`` run folder: its latest weights that load (:meth:`Run.load`: a bad
        newest checkpoint is skipped with a warning), statistics and grid, on ``device``
        (:func:`...engine.plan.decide_device`: unset, CUDA when present, else the CPU).

        ``step_hours`` defaults to the run's trained lead (its data step for random-lead runs);
        constant fields are read from the run's store unless given.

        Raises
        ------
        ConfigError
            For a regional run: it predicts its region only, which cannot be
            stepped again (use :func:`physicsnemo_climax.forecasting.forecast`
            for its direct leads); for a sub-seasonal run, whose window means
            are not states.
        """
        run = Run.load(run_dir, device)
        info = run.info
        if not run.region.is_global:
            raise ConfigError(
                f"{run_dir} is a regional run ({run.region.spec}): its forecasts cover the region "
                "only and cannot feed the next step; Earth2Studio prognostics need a global run"
            )
        if info.windows:
            raise ConfigError(
                f"{run_dir} predicts time means over windows (a sub-seasonal run): a mean cannot feed the "
                "next step; use physicsnemo_climax.forecasting.forecast for its windows"
            )
        variables = list(info.variables)
        mean, std = run.stats(variables)
        if constants is None and any(v in CONSTANTS for v in variables):
            store = open_store(info.data_root, info.hours_per_step)
            check_store(store, info, run.run_dir)  # the run's own store, not one that took its place
            constants = store_constants(store.root, variables)
        step = step_hours or info.lead_hours or info.hours_per_step  # a lead-range run steps by its data step
        return cls(
            run.model,
            variables,
            mean,
            std,
            np.asarray(info.lat),
            np.asarray(info.lon),
            step,
            constants,
            names,
            run.forcings,
        ).to(run.device)

    @classmethod
    def from_checkpoint(
        cls,
        checkpoint: str | Path,
        store: str | Path,
        variables: Sequence[str] | None = None,
        step_hours: float = 6.0,
        num_heads: int = 16,
        names: Mapping[str, str] | None = None,
        device: str | torch.device | None = None,
    ):
        """From a ``.mdlus`` (a ClimaX, checked by :mod:`physicsnemo_climax.models.mdlus` before it is
        built) or an official ClimaX ``.ckpt`` (a path, or a name of :mod:`physicsnemo_climax.hub` such as
        ``climax-5.625deg``), plus a ClimaX store (statistics, grid, constants), on
        ``device`` (:func:`...engine.plan.decide_device`: unset, CUDA when present, else the CPU).

        ``variables`` (default: the store's, in the model's order) are the inputs.
        """
        device = decide_device(device, "device")
        checkpoint = local_file(checkpoint, "checkpoint")  # published weights by name: fetched, verified
        model = (
            mdlus.load_module(checkpoint, ClimaX)
            if str(checkpoint).endswith(".mdlus")
            else ClimaX.from_official_checkpoint(checkpoint, num_heads=num_heads)
        )
        st = open_store(store)
        have = st.variables()
        variables = list(variables or [v for v in model.variables if v in have])
        st.check_variables(variables)
        unknown = [v for v in variables if v not in model.variables]
        if unknown:
            raise UnknownName(f"variables {unknown} are not variables of the checkpoint")
        mean, std = st.statistics(variables)
        return cls(
            model, variables, mean, std, st.lat, st.lon, step_hours, store_constants(store, variables), names
        ).to(device)

    @classmethod
    def load_default_package(cls) -> WeightsPackage:
        """The official ClimaX checkpoints' folder (``hf://tungnd/climax``, where the catalogue's
        ``climax-5.625deg`` and ``climax-1.40625deg`` are), as Earth2Studio models name their
        default weights; its files are fetched into this package's cache and verified
        (:class:`...hub.WeightsPackage`, which stands in for Earth2Studio's ``Package``)."""
        return WeightsPackage(OFFICIAL_FOLDER)

    @classmethod
    def load_model(
        cls,
        package,
        store: str | Path | None = None,
        checkpoint: str = "5.625deg.ckpt",
        device: str | torch.device | None = None,
        **kwargs,
    ):
        """The model of ``checkpoint`` in ``package`` (anything with ``resolve(file)``: this
        package's :class:`...hub.WeightsPackage` or Earth2Studio's ``Package``), with the
        statistics, grid and constants of the ClimaX ``store``: as :meth:`from_checkpoint`
        (``kwargs``: its ``variables``, ``step_hours``, ``num_heads``, ``names``).

        Raises
        ------
        ConfigError
            Without ``store``: the official checkpoints carry no normalisation statistics.
        """
        if store is None:
            raise ConfigError(
                "ClimaXPrognostic.load_model(package, store=...): the official ClimaX checkpoints carry no "
                "normalisation statistics or grid; give store=, a ClimaX store (`climax data prepare`) on "
                "the checkpoint's grid with its variables"
            )
        return cls.from_checkpoint(package.resolve(checkpoint), store, device=device, **kwargs)

    # ---------------------------------------------------------------- Earth2Studio protocol
    def input_coords(self) -> CoordSystem:
        """``batch, lead_time=[0 h], variable, lat, lon``."""
        return OrderedDict(
            batch=np.empty(0),
            lead_time=np.array([np.timedelta64(0, "h")]),
            variable=self.e2s_variables.copy(),
            lat=self.lat.copy(),
            lon=self.lon.copy(),
        )

    def output_coords(self, input_coords: CoordSystem) -> CoordSystem:
        """The input coordinates one step later.

        Raises
        ------
        KeyError, ValueError
            Earth2Studio's handshake errors, naming the coordinate (a missing
            ``lead_time``, another grid, other variables, several lead times).
        """
        relative = input_coords.copy()
        if "lead_time" in relative:
            relative["lead_time"] = relative["lead_time"] - relative["lead_time"][-1]
        check_coords(relative, self.input_coords(), DIMS, DIMS)
        out = input_coords.copy()
        out["lead_time"] = input_coords["lead_time"] + self.step
        return out

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, coords: CoordSystem) -> tuple[torch.Tensor, CoordSystem]:
        """One step: ``x [..., 1, V, H, W]`` (physical units) at ``coords`` -> the next."""
        out_coords = self.output_coords(coords)
        seconds = self.start_seconds(coords, x.shape[:-3]) if self.computed else None
        return self._step(x, seconds), out_coords

    def start_seconds(self, coords: CoordSystem, shape: tuple[int, ...]) -> np.ndarray:
        """Time the step from ``x`` of leading ``shape`` at ``coords`` starts from: ``[prod(shape)]``
        seconds since 1970, from the ``time`` and ``lead_time`` coordinates.

        Raises
        ------
        InputError
            When the coordinates have no ``time`` (the forcings need it).
        """
        dims = list(coords)[: len(shape)]
        if "time" not in dims:
            raise InputError(
                f"the model takes forcings {self.computed}: the input coordinates need 'time' "
                f"(they have {list(coords)})"
            )
        out = np.zeros(shape)
        for name, values in (
            ("time", unix_seconds(coords["time"])),
            ("lead_time", np.asarray(coords["lead_time"]) / np.timedelta64(1, "s")),
        ):
            axis = dims.index(name)
            out = out + np.asarray(values, np.float64).reshape([-1 if i == axis else 1 for i in range(len(shape))])
        return out.ravel()

    def _step(self, x: torch.Tensor, seconds: np.ndarray | None = None) -> torch.Tensor:
        """One model step of the physical states ``x`` ``[..., V_dynamic, H, W]`` starting at ``seconds``
        (the forcings' valid time is computed from it), through the forecast core's stepping
        (:func:`...forecasting.rollout.forecast_steps`)."""
        lead = x.shape[:-3]
        flat = x.reshape(-1, *x.shape[-3:]).to(self.mean.dtype)
        state = (flat - self.mean) / self.std
        room = flat.new_zeros(flat.shape[0], len(self.computed), *flat.shape[2:])
        inputs = torch.cat([state, self.constants.expand(flat.shape[0], -1, -1, -1), room], dim=1)
        order = self.dynamic + self.fixed + self.computed
        if order != self.variables:
            inputs = inputs[:, [order.index(v) for v in self.variables]]
        pred = forecast_steps(
            self.model,
            inputs,
            self.variables,
            self.dynamic,
            [self.step_hours],
            forcings=self.forcings if self.computed else None,
            init_time=seconds,
        )[-1].float()
        return (pred * self.std + self.mean).reshape(*lead, *pred.shape[1:]).to(x.dtype)

    def create_iterator(self, x: torch.Tensor, coords: CoordSystem) -> Iterator[tuple[torch.Tensor, CoordSystem]]:
        """The initial condition first, then one step after another (without end)."""
        coords = coords.copy()
        self.output_coords(coords)  # the handshake, before anything is yielded
        yield x, coords
        while True:
            x, coords = self.front_hook(x, coords)
            x, coords = self(x, coords)
            x, coords = self.rear_hook(x, coords)
            yield x, coords.copy()

    # Earth2Studio's PrognosticMixin hooks (perturbations, interpolation attach here);
    # written out because importing earth2studio.models.px loads every model (~30 s).
    def front_hook(self, x: torch.Tensor, coords: CoordSystem) -> tuple[torch.Tensor, CoordSystem]:
        return x, coords

    def rear_hook(self, x: torch.Tensor, coords: CoordSystem) -> tuple[torch.Tensor, CoordSystem]:
        return x, coords


def store_constants(root: str | Path, variables: Sequence[str]) -> dict[str, np.ndarray]:
    """The constant fields among ``variables`` from the first training shard of a ClimaX store."""
    wanted = [v for v in variables if v in CONSTANTS]
    if not wanted:
        return {}
    store = open_store(root)
    present = [v for v in wanted if v in store.variables()]
    shard = store.shards("train")[0]
    return {v: np.asarray(shard.array(v)[0, 0], np.float32) for v in present}
