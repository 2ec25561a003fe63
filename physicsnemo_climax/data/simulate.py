# SPDX-License-Identifier: Apache-2.0
"""A self-made weather dataset: the Held–Suarez idealised climate.

The dynamics are the dry hydrostatic primitive equations of
`dinosaur-torch <https://pypi.org/project/dinosaur-torch/>`_ (a PyTorch
rewrite of Google's Dinosaur spectral core: sigma coordinates, semi-implicit
IMEX Runge–Kutta time stepping). The core has no physics; this module adds
the Held & Suarez (1994) forcing, a resting initial state, the spin-up and the
output on pressure levels, and writes WeatherBench-like NetCDF files.

Held & Suarez (1994), *A proposal for the intercomparison of the dynamical
cores of atmospheric general circulation models*, BAMS 75, 1825–1830:

* temperature relaxes to ``T_eq(lat, p) = max(200 K, [315 K - dT_y sin^2(lat)
  - dtheta_z log(p / p0) cos^2(lat)] (p / p0)^kappa)`` at the rate
  ``k_T = k_a + (k_s - k_a) max(0, (sigma - sigma_b) / (1 - sigma_b)) cos^4(lat)``;
* the winds feel Rayleigh friction ``k_v = k_f max(0, (sigma - sigma_b) / (1 - sigma_b))``.

Shapes: the core keeps fields as ``[level, lon, lat]`` (nodal) or
``[level, m, l]`` (spherical-harmonic modes); the datasets returned here are
``[time, level, lat, lon]`` and ``[time, lat, lon]``. See
``docs/data_simulated.md`` for the setup and the physical checks.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
import xarray as xr

from ..errors import ConfigError
from ..files import write_netcdf
from ..grid import regular_grid
from .preparation import PrepareConfig, prepare

# Held & Suarez (1994) constants, SI units.
P0 = 1.0e5  # reference pressure, Pa
KAPPA = 2.0 / 7.0  # R / cp
DAY = 86400.0  # s
DELTA_T_Y = 60.0  # equator-to-pole temperature difference, K
DELTA_THETA_Z = 10.0  # static stability parameter, K
T_SURFACE_EQUATOR = 315.0  # K
T_STRATOSPHERE = 200.0  # K
K_A = 1.0 / (40.0 * DAY)  # free-atmosphere thermal relaxation rate, 1/s
K_S = 1.0 / (4.0 * DAY)  # boundary-layer thermal relaxation rate, 1/s
K_F = 1.0 / DAY  # boundary-layer Rayleigh friction rate, 1/s
SIGMA_B = 0.7  # top of the "boundary layer"

#: WeatherBench pressure levels recorded, hPa (top to bottom).
LEVELS_HPA = (50, 250, 500, 600, 700, 850, 925)
#: The simulated fields on pressure levels, and at the surface.
PRESSURE_LEVEL_FIELDS = ("u_component_of_wind", "v_component_of_wind", "temperature", "geopotential")
SURFACE_FIELDS = ("surface_pressure",)
#: Hours between recorded states.
RECORD_HOURS = 6

#: Model settings per spectral resolution: time step (minutes) and sigma levels.
RESOLUTIONS = {
    "T21": dict(time_step_minutes=60.0, layers=20),
    "T42": dict(time_step_minutes=30.0, layers=20),
}

#: Default spin-up (days): 60 is the minimum for developed eddies, but from the
#: 250 K start the polar caps keep filling for much longer: their surface
#: pressure and Z500 rise by about 1000 Pa and 1000 m^2 s^-2 until day ~240
#: and then only vary about a steady mean (docs/data_simulated.md). Data
#: recorded earlier drift between a training and a test period.
DEFAULT_SPINUP_DAYS = 240.0
#: Default recorded length (days): the whole (leap) year 2000, 1464 states.
DEFAULT_DAYS = 366.0
#: The "tiny" setting for tests: a short spin-up and one recorded day.
TINY_SPINUP_DAYS = 0.5
TINY_DAYS = 1.0

#: Bump when the output of a given set of parameters changes (cache key): 2 simulates in float32.
FORMAT_VERSION = 2


# ---------------------------------------------------------------------------
# The Held–Suarez forcing (plain functions, SI units)
# ---------------------------------------------------------------------------


def held_suarez_equilibrium_temperature(lat, pressure) -> torch.Tensor:
    """Held–Suarez radiative-equilibrium temperature.

    Parameters
    ----------
    lat : array_like
        Latitude in radians; broadcasts against ``pressure``.
    pressure : array_like
        Pressure in Pa.

    Returns
    -------
    torch.Tensor
        ``T_eq`` in K, of the broadcast shape of the inputs.
    """
    lat = torch.as_tensor(lat, dtype=torch.float64)
    pressure = torch.as_tensor(pressure, dtype=torch.float64)
    p_ratio = pressure / P0
    sin2, cos2 = torch.sin(lat) ** 2, torch.cos(lat) ** 2
    theta = T_SURFACE_EQUATOR - DELTA_T_Y * sin2 - DELTA_THETA_Z * torch.log(p_ratio) * cos2
    return torch.clamp(theta * p_ratio**KAPPA, min=T_STRATOSPHERE)


def held_suarez_relaxation_rates(lat, sigma) -> tuple[torch.Tensor, torch.Tensor]:
    """Held–Suarez thermal relaxation and Rayleigh friction rates.

    Parameters
    ----------
    lat : array_like
        Latitude in radians; broadcasts against ``sigma``.
    sigma : array_like
        Sigma (pressure over surface pressure), in ``(0, 1]``.

    Returns
    -------
    k_t : torch.Tensor
        Temperature relaxation rate in 1/s, broadcast shape of the inputs.
    k_v : torch.Tensor
        Rayleigh friction rate in 1/s, shape of ``sigma``.
    """
    lat = torch.as_tensor(lat, dtype=torch.float64)
    sigma = torch.as_tensor(sigma, dtype=torch.float64)
    weight = torch.clamp((sigma - SIGMA_B) / (1.0 - SIGMA_B), min=0.0)
    k_t = K_A + (K_S - K_A) * weight * torch.cos(lat) ** 4
    k_v = K_F * weight
    return k_t, k_v


class HeldSuarezForcing:
    """The Held–Suarez forcing as explicit tendencies for dinosaur-torch.

    An ``ExplicitODE`` in the sense of ``dinosaur_torch.time_integration``: its
    ``explicit_terms(state)`` returns a ``primitive_equations.State`` of
    tendencies in the core's nondimensional units and modal representation,
    and ``compose_equations`` adds it to the primitive equations.

    * Temperature: ``dT/dt = -k_T (T - T_eq)`` evaluated on the Gaussian grid
      (``T_eq`` needs the local pressure ``sigma * p_s``), then transformed to
      spherical harmonics.
    * Winds: ``dv/dt = -k_v v``. ``k_v`` depends on sigma only, so the curl and
      divergence of the friction are ``-k_v`` times the vorticity and the
      divergence; they are applied directly to the modes.

    Parameters
    ----------
    coords : dinosaur_torch.coordinate_systems.CoordinateSystem
        Horizontal grid and sigma levels.
    physics_specs : dinosaur_torch.units.SimUnits
        Nondimensionalisation of the core.
    reference_temperature : float
        The core's reference temperature ``T_ref`` (K); the state holds
        ``T - T_ref``.
    """

    def __init__(self, coords, physics_specs, reference_temperature: float):
        from dinosaur_torch import scales

        grid = coords.horizontal
        ref = grid.cos_lat
        self.coords = coords
        self.reference_temperature = float(reference_temperature)
        # Pa per nondimensional pressure unit, and nondimensional time per second.
        self.pressure_scale = float(physics_specs.dimensionalize(1.0, scales.units.pascal).m)
        per_second = float(physics_specs.nondimensionalize(1.0 / scales.units.second))
        lat = torch.as_tensor(grid.latitudes, dtype=torch.float64)  # [lat]
        sigma = torch.as_tensor(coords.vertical.coordinates.centers, dtype=torch.float64)
        k_t, k_v = held_suarez_relaxation_rates(lat[None, None, :], sigma[:, None, None])
        self.lat = lat.to(ref)  # [lat]
        self.sigma = sigma.to(ref)[:, None, None]  # [level, 1, 1]
        self.k_t = (k_t * per_second).to(ref)  # [level, 1, lat], nondimensional
        self.k_v = (k_v * per_second).to(ref)  # [level, 1, 1], nondimensional

    def explicit_terms(self, state):
        """Forcing tendencies of a modal ``State`` (nondimensional)."""
        from dinosaur_torch import primitive_equations

        grid = self.coords.horizontal
        temperature = grid.to_nodal(state.temperature_variation) + self.reference_temperature
        surface_pressure = torch.exp(grid.to_nodal(state.log_surface_pressure)) * self.pressure_scale
        pressure = self.sigma * surface_pressure  # [level, lon, lat], Pa
        t_eq = held_suarez_equilibrium_temperature(self.lat, pressure).to(temperature)
        dtemperature = grid.to_modal(-self.k_t * (temperature - t_eq))
        tendency = primitive_equations.State(
            vorticity=-self.k_v * state.vorticity,
            divergence=-self.k_v * state.divergence,
            temperature_variation=dtemperature,
            log_surface_pressure=torch.zeros_like(state.log_surface_pressure),
            tracers={},
            sim_time=None,
        )
        return grid.clip_wavenumbers(tendency)


# ---------------------------------------------------------------------------
# Model, initial state, diagnostics
# ---------------------------------------------------------------------------


@dataclasses.dataclass
class HeldSuarezModel:
    """A dinosaur-torch model with the Held–Suarez forcing.

    Attributes
    ----------
    coords : CoordinateSystem
        T-grid and sigma levels.
    physics_specs : SimUnits
        Nondimensionalisation.
    step : callable
        One filtered time step, ``State -> State``.
    dt_seconds : float
        Time step in seconds.
    reference_temperature : float
        ``T_ref`` of the semi-implicit scheme, K.
    forcing : HeldSuarezForcing
        The forcing (exposes ``pressure_scale``).
    geopotential : torch.nn.Module
        Nodal hydrostatic geopotential from nodal temperature.
    """

    coords: object
    physics_specs: object
    step: object
    dt_seconds: float
    reference_temperature: float
    forcing: HeldSuarezForcing
    geopotential: object


def build_held_suarez(
    resolution: str = "T21",
    *,
    layers: int | None = None,
    time_step_minutes: float | None = None,
    reference_temperature: float = 288.0,
    diffusion_timescale_days: float = 0.1,
    dtype: torch.dtype = torch.float32,
) -> HeldSuarezModel:
    """The primitive equations plus Held–Suarez forcing, ready to step.

    Parameters
    ----------
    resolution : str
        A key of :data:`RESOLUTIONS` (``"T21"``: triangular truncation 21 on
        its 32 x 64 Gaussian grid).
    layers : int, optional
        Number of equally spaced sigma levels (default from ``RESOLUTIONS``).
    time_step_minutes : float, optional
        Time step (default from ``RESOLUTIONS``).
    reference_temperature : float
        Isothermal reference temperature of the semi-implicit scheme, K.
    diffusion_timescale_days : float
        E-folding time of the del^8 hyperdiffusion at the highest total
        wavenumber, days.
    dtype : torch.dtype
        Floating-point type of the simulation: float32 (the default) is
        twice as fast as float64 on a CPU; the climate is the same, the
        weather after a few days is not.

    Returns
    -------
    HeldSuarezModel
    """
    if resolution not in RESOLUTIONS:
        raise ConfigError(f"unknown resolution {resolution!r}; known: {sorted(RESOLUTIONS)}")
    preset = RESOLUTIONS[resolution]
    layers = preset["layers"] if layers is None else layers
    minutes = preset["time_step_minutes"] if time_step_minutes is None else time_step_minutes
    coords, physics_specs, sigma = _coordinates(resolution, layers, dtype)
    forcing = HeldSuarezForcing(coords, physics_specs, reference_temperature)
    step, geopotential = _dynamics(
        coords, physics_specs, forcing, sigma, reference_temperature, minutes, diffusion_timescale_days, dtype
    )
    return HeldSuarezModel(
        coords=coords,
        physics_specs=physics_specs,
        step=step,
        dt_seconds=minutes * 60.0,
        reference_temperature=reference_temperature,
        forcing=forcing,
        geopotential=geopotential,
    )


def _coordinates(resolution: str, layers: int, dtype: torch.dtype):
    """The spectral grid of ``resolution`` with ``layers`` equally spaced sigma levels, in the
    simulator's nondimensional units: ``(coords, physics_specs, sigma)``."""
    from dinosaur_torch import coordinate_systems, sigma_coordinates, spherical_harmonic, units

    physics_specs = units.SimUnits.from_si()
    spec = getattr(spherical_harmonic.GridSpec, resolution)(radius=physics_specs.radius)
    sigma = sigma_coordinates.SigmaCoordinates.equidistant(layers, dtype=np.float64)
    coords = coordinate_systems.CoordinateSystem(
        spherical_harmonic.Grid(spec, dtype=dtype), sigma_coordinates.SigmaLevels(sigma, dtype=dtype)
    )
    return coords, physics_specs, sigma


def _dynamics(
    coords,
    physics_specs,
    forcing,
    sigma,
    reference_temperature: float,
    minutes: float,
    diffusion_timescale_days: float,
    dtype,
):
    """The filtered IMEX time step of the primitive equations plus ``forcing``, and the geopotential."""
    from dinosaur_torch import primitive_equations, scales, time_integration

    grid, layers = coords.horizontal, coords.vertical.layers
    t_ref = np.full((layers,), reference_temperature)
    flat = torch.zeros(grid.modal_shape, dtype=dtype)  # flat orography
    dynamics = primitive_equations.PrimitiveEquations(t_ref, flat, coords, physics_specs)
    equation = time_integration.compose_equations([dynamics, forcing])
    dt = float(physics_specs.nondimensionalize(minutes * scales.units.minute))
    tau = float(physics_specs.nondimensionalize(diffusion_timescale_days * scales.units.day))
    hyperdiffusion = time_integration.horizontal_diffusion_step_filter(grid, dt, tau, order=4)
    step = time_integration.step_with_filters(time_integration.imex_rk_sil3(equation, dt), [hyperdiffusion])
    geopotential = primitive_equations.Geopotential(sigma, physics_specs.g, physics_specs.R, dtype=dtype)
    return step, geopotential


def initial_state(
    model: HeldSuarezModel,
    seed: int = 0,
    temperature: float = 250.0,
    surface_pressure: float = P0,
    noise_kelvin: float = 0.1,
):
    """A resting isothermal atmosphere with a small random temperature noise.

    Parameters
    ----------
    model : HeldSuarezModel
        The model whose grid and units are used.
    seed : int
        Seed of the noise (numpy ``PCG64``, so the same on every platform).
    temperature : float
        Uniform initial temperature, K.
    surface_pressure : float
        Uniform initial surface pressure, Pa (orography is flat).
    noise_kelvin : float
        Standard deviation of the white temperature noise on the Gaussian
        grid, K; it breaks the zonal symmetry so that eddies can grow.

    Returns
    -------
    dinosaur_torch.primitive_equations.State
        Modal state: vorticity, divergence, temperature variation
        ``[level, m, l]`` and log surface pressure ``[1, m, l]``.
    """
    from dinosaur_torch import primitive_equations

    coords = model.coords
    grid = coords.horizontal
    dtype = grid.cos_lat.dtype
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal(coords.nodal_shape) * noise_kelvin
    nodal_t = torch.as_tensor(temperature - model.reference_temperature + noise, dtype=dtype)
    log_ps = np.log(surface_pressure / model.forcing.pressure_scale)
    nodal_lsp = torch.full(coords.surface_nodal_shape, log_ps, dtype=dtype)
    zeros = torch.zeros(coords.modal_shape, dtype=dtype)
    return primitive_equations.State(
        vorticity=zeros,
        divergence=zeros.clone(),
        temperature_variation=grid.clip_wavenumbers(grid.to_modal(nodal_t)),
        log_surface_pressure=grid.clip_wavenumbers(grid.to_modal(nodal_lsp)),
        tracers={},
        sim_time=None,
    )


def pressure_level_fields(model: HeldSuarezModel, state) -> dict[str, np.ndarray]:
    """Diagnose the recorded variables from a modal state.

    Winds from vorticity and divergence, temperature, hydrostatic geopotential
    (``Phi = Phi_s + R sum T dlog(sigma)``, flat ``Phi_s = 0``) on the sigma
    levels, then linear interpolation in ``log(sigma)`` to ``sigma = p / p_s``
    of each pressure level (linear extrapolation beyond the outermost sigma
    levels, which the WeatherBench levels reach only where ``p_s`` is far
    from 1000 hPa).

    Parameters
    ----------
    model : HeldSuarezModel
    state : dinosaur_torch.primitive_equations.State

    Returns
    -------
    dict of str to numpy.ndarray
        The :data:`PRESSURE_LEVEL_FIELDS` variables ``[level, lat, lon]`` (levels as in
        :data:`LEVELS_HPA`; m/s, K, m^2/s^2) and ``surface_pressure``
        ``[lat, lon]`` (Pa), float64.
    """
    from dinosaur_torch import scales, vertical_interpolation

    coords, specs = model.coords, model.physics_specs
    grid = coords.horizontal
    u, v = grid.vor_div_to_uv_nodal(state.vorticity, state.divergence)
    temperature = grid.to_nodal(state.temperature_variation) + model.reference_temperature
    zero_orography = torch.zeros(coords.surface_nodal_shape, dtype=temperature.dtype)
    phi = model.geopotential(temperature, zero_orography)
    log_ps = grid.to_nodal(state.log_surface_pressure)
    ps = torch.exp(log_ps) * model.forcing.pressure_scale  # [1, lon, lat], Pa

    velocity_scale = float(specs.dimensionalize(1.0, scales.units.meter / scales.units.second).m)
    phi_scale = float(specs.dimensionalize(1.0, scales.units.meter**2 / scales.units.second**2).m)
    sigma = torch.as_tensor(coords.vertical.coordinates.centers, dtype=temperature.dtype)
    levels = torch.as_tensor(LEVELS_HPA, dtype=temperature.dtype) * 100.0
    target = torch.log(levels[:, None, None] / ps)  # [level, lon, lat]

    def to_pressure(x):
        out = vertical_interpolation.interp_linear_extrap(target, torch.log(sigma), x)
        return out.transpose(-1, -2).cpu().numpy().astype(np.float64)  # [level, lat, lon]

    return {
        "u_component_of_wind": to_pressure(u * velocity_scale),
        "v_component_of_wind": to_pressure(v * velocity_scale),
        "temperature": to_pressure(temperature),
        "geopotential": to_pressure(phi * phi_scale),
        "surface_pressure": ps[0].transpose(0, 1).cpu().numpy().astype(np.float64),
    }


# ---------------------------------------------------------------------------
# Simulation and output
# ---------------------------------------------------------------------------

_ATTRS = {
    "u_component_of_wind": dict(units="m s**-1", long_name="U component of wind"),
    "v_component_of_wind": dict(units="m s**-1", long_name="V component of wind"),
    "temperature": dict(units="K", long_name="Temperature"),
    "geopotential": dict(units="m**2 s**-2", long_name="Geopotential"),
    "surface_pressure": dict(units="Pa", long_name="Surface pressure"),
}


def _steps(days: float, dt_seconds: float, what: str) -> int:
    steps = days * DAY / dt_seconds
    if steps < 0 or abs(steps - round(steps)) > 1e-9:
        raise ConfigError(f"{what} = {days} days is not a whole number of {dt_seconds:g} s time steps")
    return int(round(steps))


def simulate_held_suarez(
    days: float,
    spinup_days: float = DEFAULT_SPINUP_DAYS,
    seed: int = 0,
    resolution: str = "T21",
    *,
    grid: str = "5.625deg",
    start: str = "2000-01-01",
    initial_temperature: float = 250.0,
    **model_kwargs,
) -> xr.Dataset:
    """Run the Held–Suarez climate and return 6-hourly WeatherBench-like fields.

    The model starts from rest (isothermal ``initial_temperature``, uniform
    1000 hPa surface pressure, flat ground, 0.1 K seeded noise), runs
    ``spinup_days`` unrecorded, then records the state every 6 hours, the first
    record being the end of the spin-up, stamped ``start`` (a label only).

    Parameters
    ----------
    days : float
        Recorded length in days; ``4 * days`` states are returned.
    spinup_days : float
        Unrecorded spin-up in days (baroclinic eddies fill the mid-latitudes
        after 50-60 days; use at least 60 for data).
    seed : int
        Seed of the initial noise; the same seed gives bit-identical fields
        on the same machine (the model runs on one thread).
    resolution : str
        Spectral resolution, a key of :data:`RESOLUTIONS`.
    grid : {"5.625deg", "native"}
        The ClimaX 32 x 64 grid (conservative regridding), or the model's Gaussian grid.
    **model_kwargs
        Passed to :func:`build_held_suarez` (``layers``, ``time_step_minutes``, ...).

    Returns
    -------
    xarray.Dataset
        :data:`PRESSURE_LEVEL_FIELDS` ``[time, level, lat, lon]`` on
        :data:`LEVELS_HPA` (hPa) and ``surface_pressure`` ``[time, lat, lon]``,
        float32; ``lat`` ascending, ``lon`` in ``[0, 360)``, degrees.
    """
    if grid not in ("5.625deg", "native"):
        raise ConfigError(f"grid must be '5.625deg' or 'native', got {grid!r}")
    model = build_held_suarez(resolution, **model_kwargs)
    dt = model.dt_seconds
    n_records = _steps(days, RECORD_HOURS * 3600.0, "days")
    if n_records < 1:
        raise ConfigError(f"days must cover at least one {RECORD_HOURS}-hour record, got {days}")
    spinup, every = _steps(spinup_days, dt, "spinup_days"), _steps(RECORD_HOURS / 24.0, dt, "the record interval")
    data = _run(model, spinup, every, n_records, seed, initial_temperature)
    attrs = _attributes(model, resolution, spinup_days, seed, initial_temperature, grid)
    ds = _as_dataset(model, data, start, attrs)
    return ds if grid == "native" else _on_climax_grid(ds)


def _attributes(
    model: HeldSuarezModel, resolution: str, spinup_days: float, seed: int, initial_temperature: float, grid: str
) -> dict:
    """What made a simulation, recorded in its files' attributes."""
    return dict(
        title="Held-Suarez (1994) idealised climate, dinosaur-torch primitive equations",
        resolution=resolution,
        sigma_levels=model.coords.vertical.layers,
        time_step_seconds=model.dt_seconds,
        spinup_days=float(spinup_days),
        seed=int(seed),
        initial_temperature_K=float(initial_temperature),
        grid="native Gaussian" if grid == "native" else "5.625deg (conservative regrid)",
    )


def _run(
    model: HeldSuarezModel, spinup_steps: int, record_every: int, n_records: int, seed: int, initial_temperature: float
) -> dict[str, np.ndarray]:
    """Spin up, then record the pressure-level fields every ``record_every`` steps (float32)."""
    grid = model.coords.horizontal
    shape = (n_records, len(LEVELS_HPA), grid.latitudes.size, grid.longitudes.size)
    data = {name: np.empty(shape, np.float32) for name in PRESSURE_LEVEL_FIELDS}
    data["surface_pressure"] = np.empty((n_records,) + shape[2:], np.float32)
    threads = torch.get_num_threads()
    # One thread: the tensors are small (two threads save ~15 % on an idle
    # machine but cost 3-15x while other processes use the cores), and the
    # result does not depend on the caller's thread count.
    torch.set_num_threads(1)
    try:
        with torch.inference_mode():
            state = initial_state(model, seed, temperature=initial_temperature)
            for _ in range(spinup_steps):
                state = model.step(state)
            for i in range(n_records):
                if i:
                    for _ in range(record_every):
                        state = model.step(state)
                if not torch.isfinite(state.temperature_variation).all():
                    raise FloatingPointError(f"the simulation blew up before record {i}")
                for name, value in pressure_level_fields(model, state).items():
                    data[name][i] = value
    finally:
        torch.set_num_threads(threads)
    return data


def _as_dataset(model: HeldSuarezModel, data: dict[str, np.ndarray], start: str, attrs: dict) -> xr.Dataset:
    """The recorded fields on the model's Gaussian grid, 6-hourly from ``start``."""
    n_records = data["surface_pressure"].shape[0]
    time = np.datetime64(start, "ns") + np.arange(n_records) * np.timedelta64(RECORD_HOURS, "h")
    coords = {
        "time": ("time", time),
        "level": ("level", np.asarray(LEVELS_HPA, np.int64), dict(units="hPa", long_name="pressure")),
        "lat": (
            "lat",
            np.rad2deg(model.coords.horizontal.latitudes),
            dict(units="degrees_north", long_name="latitude"),
        ),
        "lon": (
            "lon",
            np.rad2deg(model.coords.horizontal.longitudes),
            dict(units="degrees_east", long_name="longitude"),
        ),
    }
    dims = {name: ("time", "level", "lat", "lon") for name in PRESSURE_LEVEL_FIELDS}
    dims.update({name: ("time", "lat", "lon") for name in SURFACE_FIELDS})
    return xr.Dataset({name: (dims[name], data[name], _ATTRS[name]) for name in dims}, coords=coords, attrs=attrs)


def _on_climax_grid(ds: xr.Dataset) -> xr.Dataset:
    """``ds`` conservatively regridded to the ClimaX 32 x 64 grid, one variable at a time (less memory)."""
    from physicsnemo_climax.data.regrid import regrid

    lat_out, lon_out = regular_grid((32, 64))
    out = xr.Dataset(attrs=ds.attrs)
    for name in PRESSURE_LEVEL_FIELDS + SURFACE_FIELDS:
        out[name] = regrid(ds[name], lat_out, lon_out, method="conservative").astype(np.float32)
        out[name].attrs = _ATTRS[name]
    out["lat"].attrs, out["lon"].attrs = ds["lat"].attrs, ds["lon"].attrs
    return out


STAMP = "simulation.json"


def _params(days: float, spinup_days: float, seed: int, resolution: str) -> dict:
    """The parameters that identify a written simulation (the cache key)."""
    from importlib.metadata import version

    return dict(
        format_version=FORMAT_VERSION,
        model="held_suarez",
        days=float(days),
        spinup_days=float(spinup_days),
        seed=int(seed),
        resolution=resolution,
        grid="5.625deg",
        dinosaur_torch=version("dinosaur-torch"),
    )


def _read_stamp(directory: Path) -> dict | None:
    try:
        return json.loads((directory / STAMP).read_text())
    except (OSError, ValueError):
        return None


def _complete(directory: Path, params: dict) -> bool:
    stamp = _read_stamp(directory)
    return (
        stamp is not None
        and stamp.get("params") == params
        and all((directory / f).is_file() for f in stamp.get("files", []))
    )


def write_simulation(
    out_dir,
    days: float | None = None,
    spinup_days: float | None = None,
    seed: int = 0,
    tiny: bool = False,
    resolution: str = "T21",
) -> Path:
    """Simulate the Held–Suarez climate and write WeatherBench-like NetCDF, cached.

    Layout (WeatherBench's, one directory and one file per variable and year)::

        out_dir/simulation.json                                  parameters + file list
        out_dir/{variable}/{variable}_{year}_5.625deg.nc         one variable, one year

    Each file holds one variable under its long name (``temperature``
    ``[time, level, lat, lon]``, ``surface_pressure`` ``[time, lat, lon]``) on
    the ClimaX 5.625 deg grid, 6-hourly from 2000-01-01. A complete simulation
    with the same parameters in ``out_dir`` is reused. Otherwise the files are
    written to a temporary sibling directory renamed to ``out_dir`` at the end,
    so an interrupted run never looks complete; an older simulation (one with
    a stamp) is replaced, any other non-empty ``out_dir`` is an error.

    Parameters
    ----------
    out_dir : str or os.PathLike
        Target directory.
    days, spinup_days : float, optional
        Recorded and spin-up days; default :data:`DEFAULT_DAYS` and
        :data:`DEFAULT_SPINUP_DAYS`, or with ``tiny`` :data:`TINY_DAYS` and
        :data:`TINY_SPINUP_DAYS` (seconds; for tests, not for data: no eddies yet).
    seed : int
        Seed of the initial noise.
    resolution : str
        Spectral resolution, a key of :data:`RESOLUTIONS`.

    Returns
    -------
    pathlib.Path
        ``out_dir``.
    """
    out_dir = Path(out_dir)
    if days is None:
        days = TINY_DAYS if tiny else DEFAULT_DAYS
    if spinup_days is None:
        spinup_days = TINY_SPINUP_DAYS if tiny else DEFAULT_SPINUP_DAYS
    params = _params(days, spinup_days, seed, resolution)
    if _complete(out_dir, params):
        return out_dir
    if out_dir.exists() and _read_stamp(out_dir) is None and any(out_dir.iterdir()):
        raise FileExistsError(f"{out_dir} is not empty and holds no {STAMP}; not overwriting it")

    return _write_atomically(simulate_held_suarez(days, spinup_days, seed, resolution), out_dir, params)


def _write_atomically(ds: xr.Dataset, out_dir: Path, params: dict) -> Path:
    """Write the files and the stamp into a temporary sibling, then swap it in for ``out_dir``."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        files = _write_files(ds, tmp)
        (tmp / STAMP).write_text(json.dumps(dict(params=params, files=files), indent=2) + "\n")
        if out_dir.exists():  # an older or empty simulation directory: replace it
            old = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.old-", dir=out_dir.parent))
            os.replace(out_dir, old / "data")
            shutil.rmtree(old, ignore_errors=True)
        os.replace(tmp, out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out_dir


def _write_files(ds: xr.Dataset, folder: Path) -> list[str]:
    """One NetCDF file per variable and year (WeatherBench layout); returns their relative paths."""
    files = []
    for name in PRESSURE_LEVEL_FIELDS + SURFACE_FIELDS:
        (folder / name).mkdir()
        for year, part in ds[name].groupby("time.year"):
            rel = f"{name}/{name}_{year}_5.625deg.nc"
            encoding = {name: dict(zlib=True, complevel=1)}
            write_netcdf(folder / rel, part.to_dataset().assign_attrs(ds.attrs), encoding=encoding)
            files.append(rel)
    return files


def prepare_simulation(raw_dir, store, splits: dict | None = None) -> Path:
    """A shard store in ``store`` from the simulation folder ``raw_dir``: all its variables on
    ClimaX's 5.625 deg grid, 6-hourly, split by ``splits`` (default: :func:`default_splits` of the
    simulation's recorded days)."""
    variables = [f"{n}_{level}" for n in PRESSURE_LEVEL_FIELDS for level in LEVELS_HPA] + list(SURFACE_FIELDS)
    recorded = json.loads((Path(raw_dir) / "simulation.json").read_text())["params"]["days"]
    splits = splits or default_splits(recorded)
    config = PrepareConfig(
        inputs=[f"{raw_dir}/*/*.nc"],
        variables=variables,
        splits=dict(splits),
        grid=(32, 64),
        hours_per_step=6,
        shards_per_year=1,
    )
    return prepare(config, store)


def default_splits(days: float) -> dict[str, str]:
    """Splits of a simulation of ``days`` recorded days from 1 January 2000: a whole year (or more)
    is months 1-9 for training, 10 for validation, 11-12 for testing; a shorter one its first 70% of
    whole days, the next 10% and the rest (the quickstart's 200 days give 140, 20 and 40)."""
    if days >= 365:
        return {"train": "2000-01-01:2000-09-30", "val": "2000-10-01:2000-10-31", "test": "2000-11-01:2000-12-31"}
    start, total = np.datetime64("2000-01-01"), int(days)
    train, val = int(0.7 * total), int(0.1 * total)
    bounds = [start, start + train, start + train + val, start + total]
    ends = [b - np.timedelta64(1, "D") for b in bounds[1:]]  # periods name their last day
    return {name: f"{bounds[k]}:{ends[k]}" for k, name in enumerate(("train", "val", "test"))}
