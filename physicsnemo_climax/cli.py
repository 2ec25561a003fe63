# SPDX-License-Identifier: Apache-2.0
"""The ``climax`` command."""

from __future__ import annotations

import argparse
import errno
import os
import signal
import sys
import time
from contextlib import contextmanager

from hydra.errors import HydraException
from omegaconf.errors import OmegaConfBaseException

from . import dependency_warnings
from .errors import ClimaxError, ConfigError

# ValueError and KeyError stay: xarray, pandas, numpy and torch raise them from a user's input
# (a time or variable a file lacks, a date that does not parse, a tensor of another shape).
#: Errors a user can act on: printed as a message (see :func:`main`).
EXPECTED = (ClimaxError, ValueError, KeyError, OSError, FloatingPointError, HydraException, OmegaConfBaseException)


def demo(args: argparse.Namespace) -> None:
    """Build ClimaX, run one forecast step on random normalized input, report."""
    import torch

    from .models import ClimaX

    torch.manual_seed(args.seed)
    model = ClimaX(embed_dim=args.embed_dim, depth=args.depth, num_heads=args.num_heads).eval()
    params = sum(p.numel() for p in model.parameters())
    print(
        f"ClimaX: {len(model.variables)} variables, grid {model.img_size}, "
        f"patch {model.patch_size}, {params:,} parameters"
    )

    x = torch.randn(args.batch, len(model.variables), *model.img_size)
    lead = torch.full((args.batch,), float(args.lead_hours))
    out_vars = ["geopotential_500", "temperature_850", "2m_temperature"]
    start = time.perf_counter()
    with torch.inference_mode():
        y = model(x, lead, model.variables, out_vars)
    seconds = time.perf_counter() - start
    print(f"input  {tuple(x.shape)}  lead {args.lead_hours} h")
    print(f"output {tuple(y.shape)}  {out_vars}  ({seconds:.2f} s)")
    regional = model(x[:1], lead[:1], model.variables, out_vars, region="NorthAmerica")
    print(f"NorthAmerica region output {tuple(regional.shape)}")


def convert(args: argparse.Namespace) -> None:
    """Official ClimaX Lightning checkpoint -> PhysicsNeMo ``.mdlus``."""
    from .files import atomic_path, check_file_output
    from .models import ClimaX

    check_file_output(args.output, overwrite=args.overwrite, inputs=[args.checkpoint], option="output")
    overrides = {"num_heads": args.num_heads}
    if args.img_size and min(args.img_size) < 1:
        raise ConfigError(
            f"--img-size {' '.join(map(str, args.img_size))}: give the grid's rows and columns, "
            "positive multiples of the checkpoint's patch size"
        )
    if args.img_size:
        overrides["img_size"] = tuple(args.img_size)
    if args.variables:
        overrides["variables"] = args.variables.split(",")
    model = ClimaX.from_official_checkpoint(args.checkpoint, **overrides)
    with atomic_path(args.output) as tmp:  # an existing file stays intact if saving fails
        model.save(str(tmp))
    params = sum(p.numel() for p in model.parameters())
    print(
        f"wrote {args.output}: grid {model.img_size}, patch {model.patch_size}, "
        f"{len(model.variables)} variables, {params:,} parameters"
    )


def data_prepare(args: argparse.Namespace) -> None:
    """Raw NetCDF/Zarr files -> shard store with statistics and climatology."""
    from .data import PrepareConfig, ShardStore, prepare

    splits = {name: years for name, years in (("train", args.train), ("val", args.val), ("test", args.test)) if years}
    config = PrepareConfig(
        inputs=args.inputs,
        variables=args.variables.split(","),
        splits=splits,
        grid=_prepare_grid(args.grid),
        region=args.region,
        calendar_dates=args.calendar_dates,
        storage_options=dict(_key_value(item, "--storage-option") for item in args.storage_option or []),
        grib_step=args.grib_step,
        method=args.method,
        hours_per_step=args.hours_per_step,
        shards_per_year=args.shards_per_year,
        name_map=dict(item.split("=", 1) for item in args.name_map or []),
        scales={k: float(v) for k, v in (item.split("=", 1) for item in args.scale or [])},
        nan_policy=args.nan_policy,
        day_of_year_climatology=args.day_of_year,
        stream=args.stream,
    )
    out = args.out or _stream_out(args)
    out = prepare(config, out)
    manifest = ShardStore(out).manifest
    dropped = manifest.get("calendar_dates_dropped")
    print(f"wrote {out} ({manifest['calendar']} calendar" + (f", {dropped} dates dropped)" if dropped else ")"))


def _stream_out(args: argparse.Namespace):
    """Where ``--stream`` writes without ``--out``: the cache folder of its one source, where
    ``data.root=SOURCE`` finds it."""
    from .data.streamed import stream_folder

    if not args.stream:
        raise ConfigError("--out: the new store folder is required (only --stream has a default place)")
    return stream_folder(args.inputs[0])


def _prepare_grid(words: list[str]) -> tuple[int, int] | float | str:
    """``--grid``: ``H W`` (a global grid), ``DEG`` (a spacing in degrees) or ``native``."""
    if words == ["native"]:
        return "native"
    if len(words) == 2 and all(g.isdigit() for g in words):
        return int(words[0]), int(words[1])
    try:
        if len(words) == 1:
            return float(words[0])
    except ValueError:
        pass
    raise ConfigError(
        f"--grid {' '.join(words)}: give H W (--grid 32 64), a spacing in degrees (--grid 5.625) or --grid native"
    )


def _key_value(item: str, option: str) -> tuple[str, object]:
    """``KEY=VALUE`` with VALUE read as JSON when it is (``anon=true``, ``timeout=30``), else as text."""
    import json

    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"{option} {item!r}: write KEY=VALUE")
    try:
        return key, json.loads(value)
    except json.JSONDecodeError:
        return key, value


def data_stats(args: argparse.Namespace) -> None:
    """(Re)compute a store's normalization statistics and climatologies."""
    from .data.preparation import compute_statistics

    compute_statistics(args.store, day_of_year=args.day_of_year)
    print(f"wrote statistics of {args.store}")


def data_simulate(args: argparse.Namespace) -> None:
    """Run the Held-Suarez simulation (cached) and optionally prepare a store from it."""
    from .data.simulate import prepare_simulation, write_simulation

    raw = write_simulation(args.out, args.days, args.spinup_days, args.seed, tiny=args.tiny)
    print(f"simulation in {raw}")
    if args.prepare:
        print(f"wrote {prepare_simulation(raw, args.prepare, args.splits)}")


def quickstart(args: argparse.Namespace) -> None:
    """Simulate (cached), prepare, train a small ClimaX, evaluate, print the scorecard."""
    from .config import load_config
    from .forecasting.quickstart import quickstart as run_quickstart

    run_quickstart(load_config(args.overrides, name="quickstart"))


def _add_data_commands(commands) -> None:
    data = commands.add_parser("data", help="prepare and inspect weather data").add_subparsers(
        dest="data_command", required=True
    )
    _add_prepare_command(data)

    p = data.add_parser("simulate", help="the embedded Held-Suarez dataset (cached)")
    p.add_argument("--out", default="data/held_suarez_raw", help="simulation folder")
    p.add_argument("--days", type=float, help="recorded days (default of the simulator)")
    p.add_argument("--spinup-days", type=float, help="spin-up days (default >= 60)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--tiny", action="store_true", help="seconds-long setting for tests")
    p.add_argument("--prepare", metavar="STORE", help="also prepare a shard store from it")
    p.set_defaults(func=data_simulate, splits=None)

    p = data.add_parser("stats", help="(re)compute normalization statistics and climatology")
    p.add_argument("store")
    p.add_argument("--day-of-year", action="store_true")
    p.set_defaults(func=data_stats)


def _add_prepare_command(data) -> None:
    p = data.add_parser("prepare", help="ERA5 (CDS GRIB/NetCDF, ARCO, WeatherBench 2), CMIP6 -> shard store")
    p.add_argument(
        "inputs",
        nargs="+",
        help="NetCDF or GRIB files, Zarr folders, glob patterns, or URLs (gs://, s3://, https://, ...)",
    )
    p.add_argument("--out", help="new store folder (with --stream: default the cache's folder of the source)")
    p.add_argument(
        "--stream",
        action="store_true",
        help="copy nothing: write the statistics and where each field is, and train from the Zarr source "
        "where it is (data.root=SOURCE); the source must be on the store's grid",
    )
    p.add_argument(
        "--variables", required=True, help="comma-separated ClimaX names, e.g. 2m_temperature,geopotential_500"
    )
    p.add_argument(
        "--train",
        required=True,
        help="training period: years (1979-2015, 2016) or days (2019-03-01:2019-03-24, or with /)",
    )
    p.add_argument("--val", help="validation period (same forms)")
    p.add_argument("--test", help="test period (same forms)")
    _add_prepare_grid_options(p)
    p.add_argument(
        "--storage-option",
        nargs="*",
        metavar="KEY=VALUE",
        help="fsspec options for URLs (public buckets are read anonymously), e.g. token=/path/key.json",
    )
    p.add_argument(
        "--grib-step", type=float, metavar="HOURS", help="the forecast step to take from GRIB files with several steps"
    )
    p.add_argument("--method", choices=["conservative", "bilinear"], default="conservative")
    p.add_argument("--hours-per-step", type=int, default=6)
    p.add_argument("--shards-per-year", type=int, default=4)
    p.add_argument(
        "--name-map", nargs="*", metavar="CLIMAX=FILE", help="variable names in the files, e.g. geopotential=zg"
    )
    p.add_argument(
        "--scale",
        nargs="*",
        metavar="NAME=FACTOR",
        help="factors applied on reading a field that is not a CMIP6 variable (those are converted)",
    )
    p.add_argument("--nan-policy", choices=["raise", "fill"], default="raise")
    p.add_argument("--day-of-year", action="store_true", help="also day-of-year climatology")
    p.set_defaults(func=data_prepare)


def _add_prepare_grid_options(p) -> None:
    """``climax data prepare``'s grid, region and calendar options."""
    p.add_argument(
        "--grid",
        nargs="+",
        default=["32", "64"],
        metavar="H W | DEG | native",
        help="global regular H x W, or a spacing in degrees (5.625 is 32 x 64), regridded; "
        "or native: the source's own grid",
    )
    p.add_argument(
        "--region",
        type=float,
        nargs=4,
        metavar=("LAT0", "LAT1", "LON0", "LON1"),
        help="keep this box (east from LON0 to LON1) of the native grid, or of the global grid of --grid DEG "
        "(the cells whose centres fall in it)",
    )
    p.add_argument(
        "--calendar-dates",
        choices=["refuse", "drop"],
        default="refuse",
        help="dates of the sources' calendar the standard one lacks (360_day's 30 February): "
        "an error (default) or dropped, and counted in store.json",
    )


def train(args: argparse.Namespace) -> None:
    """Train as the composed config says (resuming its run folder); with ``-m``, each job of the
    sweep in turn, each into its own run folder (:func:`.config.load_sweep`)."""
    from .config import load_config, load_sweep
    from .tasks import train as run_training

    if not args.multirun:
        print(f"run folder: {run_training(load_config(args.overrides, name=args.config_name))}")
        return
    jobs = load_sweep(args.overrides, name=args.config_name)  # every job composed and checked first
    for number, (label, cfg) in enumerate(jobs, 1):
        print(f"[{number}/{len(jobs)}] {label}: run folder {cfg.run_dir}", flush=True)
        print(f"run folder: {run_training(cfg)}")


def evaluate(args: argparse.Namespace) -> None:
    """Scorecard of a run against its task's baselines."""
    from .config import load_run_config
    from .tasks import evaluate as run_evaluation
    from .tasks import summarize

    overrides = [o for o in args.overrides if not o.startswith("run_dir=")]
    run_dir = next((o.split("=", 1)[1] for o in args.overrides if o.startswith("run_dir=")), None)
    if run_dir is None:
        raise SystemExit("climax evaluate: give run_dir=<training run folder>")
    cfg = load_run_config(run_dir, overrides)
    print(summarize(cfg, run_evaluation(cfg)))


def report_scaling(args: argparse.Namespace) -> None:
    """RMSE of evaluated runs against size, samples seen, data and resolution, with power-law fits."""
    from .forecasting.scaling import write_scaling_report

    table, fits = write_scaling_report(args.runs, args.out, args.lead, args.variables, args.overwrite)
    print(table.drop(columns="run").to_string(index=False))
    print(fits.to_string(index=False) if len(fits) else "no fit: no axis has two distinct values within a group")
    print(f"wrote {args.out}: scaling.csv, fits.csv, scaling.json" + (", scaling.png" if len(fits) else ""))


def _add_report_commands(commands) -> None:
    reports = commands.add_parser("report", help="reports over several runs").add_subparsers(
        dest="report", required=True
    )
    p = reports.add_parser(
        "scaling",
        help="test RMSE of evaluated runs vs parameters, samples seen, training data and resolution (power-law fits)",
    )
    p.add_argument("runs", nargs="+", metavar="RUN", help="two or more run folders, each evaluated (RUN/eval)")
    p.add_argument("--lead", type=float, default=72.0, help="lead in hours every run was evaluated at (default 72)")
    p.add_argument("--variables", nargs="+", help="scored variables (default: those of the first run)")
    p.add_argument("--out", required=True, help="new folder for scaling.csv, fits.csv, scaling.json, scaling.png")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier scaling report in --out")
    p.set_defaults(func=report_scaling)


def weights(args: argparse.Namespace) -> None:
    """List, fetch or verify published weights (the catalogue and the cache of :mod:`.hub`)."""
    from . import hub

    if args.weights == "list":
        for row in hub.catalogue_rows():
            state = "cached" if row["cached"] else "not cached"
            where = f"{row['url']} : {row['member']}" if row["member"] else row["url"]  # a file in a zip
            print(f"{row['name']:28s} {where}  ({row['license']}; {row['grid']}; {state})")
            print(f"{'':28s} {row['source']}; inputs: {row['variables']}")
        print(f"cache: {hub.cache_dir()} (CLIMAX_CACHE moves it)")
        return
    names = args.names or (
        [n for n, e in hub.CATALOGUE.items() if hub.cached_path(e.url).exists()] if args.weights == "verify" else []
    )
    if not names:
        raise SystemExit(f"climax weights {args.weights}: name catalogue entries or URLs")
    for name in names:
        url = hub.CATALOGUE[name].url if name in hub.CATALOGUE else name
        if args.weights == "verify" and not hub.cached_path(url).exists():
            print(f"{name}: not cached (climax weights fetch {name})")
            continue
        print(f"{name}: {hub.local_file(name, 'climax weights')} (SHA-256 checked)")


def _add_weights_commands(commands) -> None:
    ws = commands.add_parser("weights", help="published weights by name: list, fetch into the cache, verify")
    ws = ws.add_subparsers(dest="weights", required=True)
    ws.add_parser("list", help="the catalogue and what is cached").set_defaults(func=weights)
    for name, what in (("fetch", "download into the cache (resumes)"), ("verify", "check cached files' SHA-256")):
        p = ws.add_parser(name, help=what)
        p.add_argument("names", nargs="*", help="catalogue names, hf://OWNER/REPO/FILE, https://, s3://, gs:// ...")
        p.set_defaults(func=weights)


def forecast(args: argparse.Namespace) -> None:
    """Forecast from a NetCDF initial condition to a NetCDF file (or a WB2 Zarr folder); a climate
    downscaling run downscales a coarse file instead (no ``--lead``)."""
    from .climate_downscaling.inference import is_downscaling_run

    _local_run(args.run or args.checkpoint, "--run" if args.run else "--checkpoint")
    if args.run and is_downscaling_run(args.run):
        return downscale_coarse_file(args)
    from .engine.checks import check_seed
    from .engine.plan import decide_device
    from .forecasting.ensembles import EnsembleSpec
    from .forecasting.forecast_file import write_forecast

    # the options named as the user wrote them, before any work
    device, seed = decide_device(args.device, "--device"), check_seed(args.seed, "--seed")
    ensemble = EnsembleSpec(
        members=args.members, perturbation=args.perturbation, scale=args.perturbation_scale, seed=seed
    )
    out = write_forecast(
        args.run or args.checkpoint,
        args.input,
        args.lead,
        args.output,
        wb2=args.format == "wb2",
        overwrite=args.overwrite,
        device=device,
        ensemble=ensemble,
        option="--run" if args.run else "--checkpoint",
        regrid_method=args.regrid,
        nan_policy=args.nan_policy,
        assume_units=args.assume_units,
    )
    when = f"windows {list(out.window.values)}" if "window" in out.dims else f"leads {list(args.lead)}"
    print(f"wrote {args.output}: {list(out.data_vars)} at {when}")


def _local_run(value: str, option: str) -> None:
    """Refuse a published name or URL where a training run folder (or a model file in it) is needed:
    a run's statistics, grid and variables live in its folder, which no single weights file carries."""
    from .hub import is_remote

    if is_remote(value):
        raise ConfigError(
            f"{option} {value}: a published name or URL is one weights file, and a forecast needs a "
            "training run folder (its statistics, grid and variables). Give a local run folder or a model "
            "file in its checkpoints/ folder; to step published weights, use "
            "ClimaXPrognostic.from_checkpoint(NAME, store) (docs/earth2studio.md), or fine-tune from them "
            "with `climax train init=NAME`"
        )


def downscale_coarse_file(args: argparse.Namespace) -> None:
    """``climax forecast --run RUN --input coarse.nc --output fine.nc`` for a climate downscaling run."""
    from .climate_downscaling import write_downscaled
    from .engine.plan import decide_device

    if args.lead or args.format != "netcdf" or args.members != 1:
        raise ConfigError(
            f"--run {args.run} is a climate downscaling run: it maps a coarse file to the fine grid at the "
            "same times; leave out --lead, --format and --members"
        )
    out = write_downscaled(
        args.run, args.input, args.output, overwrite=args.overwrite, device=decide_device(args.device, "--device")
    )
    print(f"wrote {args.output}: {list(out.data_vars)} on {out.lat.size} x {out.lon.size} at {out.time.size} times")


def downscale_train(args: argparse.Namespace) -> None:
    """Train a CorrDiff stage (regression or residual diffusion)."""
    from .config import load_config
    from .downscaling.training import train as run_training
    from .downscaling.upstream_keys import translate

    cfg = load_config(translate(args.overrides), name=args.config_name)
    print(f"run folder: {run_training(cfg)}")


def downscale_generate(args: argparse.Namespace) -> None:
    """Generate CorrDiff ensembles for dataset times, then score and plot them."""
    from .config import load_config
    from .downscaling.generation import generate
    from .downscaling.upstream_keys import translate

    cfg = load_config(translate(args.overrides), name=args.config_name)
    path = generate(cfg)
    if path is not None:
        print(f"wrote {path}")
        if not args.no_score:  # a generation allowed to replace its file may replace its scores too
            _score(path, args.out_dir, args.spread_ddof, cfg.generation.io.overwrite)


def downscale_score(args: argparse.Namespace) -> None:
    """Scores and pictures of a generation file."""
    _score(args.file, args.out_dir, args.spread_ddof, args.overwrite)


def _score(path, out_dir, spread_ddof: int, overwrite: bool) -> None:
    from .downscaling.scorecard import write_scorecard

    table, out_dir = write_scorecard(path, out_dir, spread_ddof, overwrite)
    if table is not None:
        print(table.to_string(index=False, float_format="%.4g"))
    print(f"scores and plots in {out_dir}")


def downscale_forecast(args: argparse.Namespace) -> None:
    """ClimaX forecast -> CorrDiff ensemble on the km-scale domain."""
    import xarray as xr

    from .config import load_config
    from .downscaling.pipeline import forecast_and_downscale
    from .downscaling.upstream_keys import translate
    from .engine.plan import decide_device

    _local_run(args.climax_run, "--climax-run")
    overrides = [
        f"generation.num_ensembles={args.members}",
        f"generation.seed_batch_size={args.seed_batch_size}",
        f"generation.sampler.num_steps={args.steps}",
        f"seed={args.seed}",
        f"generation.io.overwrite={str(args.overwrite).lower()}",
    ]
    if args.diffusion is None:
        overrides.append("generation.inference_mode=regression")
    cfg = load_config(overrides + translate(args.overrides), name="config_generate_hrrr_mini")
    # set after the overrides, as given: a path needs no Hydra quoting; several make pairs by lead
    io = cfg.generation.io
    io.reg_ckpt_filename = _one_or_list(args.regression)
    io.res_ckpt_filename = _one_or_list(args.diffusion or args.regression)
    device = decide_device(args.device, "--device") if args.device else None
    truth = xr.open_dataset(args.truth).load() if args.truth else None
    with xr.open_dataset(args.input) as ic:
        path = forecast_and_downscale(
            args.climax_run,
            ic.load(),
            args.lead,
            cfg.generation,
            args.output,
            dict(item.split("=", 1) for item in args.map or []),
            truth,
            cfg.seed,
            device,
            assume_units=args.assume_units,
        )
    print(f"wrote {path}")


def _one_or_list(paths: list[str]):
    """One path as itself (one pair of nets), several as a list (a pair per lead range)."""
    return paths[0] if len(paths) == 1 else list(paths)


def _add_downscale_commands(commands) -> None:
    ds = commands.add_parser("downscale", help="CorrDiff: train, generate, score, forecast -> km scale").add_subparsers(
        dest="downscale_command", required=True
    )
    for name, func, default in (
        ("train", downscale_train, "config_training_hrrr_mini_regression"),
        ("generate", downscale_generate, "config_generate_hrrr_mini"),
    ):
        p = ds.add_parser(name, help=func.__doc__.splitlines()[0].rstrip(".").lower())
        p.add_argument("--config-name", default=default, help=f"a config of conf/ (default {default})")
        p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. dataset.data_path=... train.steps=10")
        p.set_defaults(func=func)
    gen = ds.choices["generate"]
    gen.add_argument("--out-dir", help="scores and plots (default: beside the output file)")
    gen.add_argument("--no-score", action="store_true")

    p = ds.add_parser("score", help="scores (vs bilinear and regression-only) and plots of a generation file")
    p.add_argument("file")
    p.add_argument("--out-dir", help="scores and plots (default: beside the file, named after it)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier scorecard folder")
    for parser in (gen, p):
        parser.add_argument(
            "--spread-ddof",
            type=int,
            choices=[1, 0],
            default=1,
            help="spread from the member variance over N - 1 (1, default) or N (0, upstream's std)",
        )
    p.set_defaults(func=downscale_score)
    _add_downscale_forecast(ds)


def _add_downscale_forecast(ds) -> None:
    """``climax downscale forecast``: its arguments."""
    p = ds.add_parser("forecast", help="ClimaX forecast downscaled by CorrDiff into an ensemble file")
    p.add_argument(
        "--climax-run", required=True, help="ClimaX training run folder, or a model file in its checkpoints/ folder"
    )
    p.add_argument(
        "--regression",
        required=True,
        nargs="+",
        help="CorrDiff regression run folder, or a .mdlus in it (its domain.json); several: a pair of nets "
        "per lead range, each lead downscaled by the pair trained on it",
    )
    p.add_argument(
        "--diffusion",
        nargs="+",
        help="CorrDiff diffusion run folder or .mdlus: a path, or published weights by name or URL "
        "(omit: regression only); several: one per --regression, in the same order",
    )
    p.add_argument("--input", required=True, help="initial condition (NetCDF)")
    p.add_argument("--lead", required=True, nargs="+", help="lead times: hours (24) or durations (24h 48h)")
    p.add_argument("--output", required=True, help="output NetCDF")
    p.add_argument("--members", type=int, default=8)
    p.add_argument("--seed-batch-size", type=int, default=4)
    p.add_argument("--steps", type=int, default=18, help="sampler steps")
    p.add_argument("--seed", type=int, default=0, help="member k uses seed + k; a whole number >= 0")
    p.add_argument("--truth", help="fine-grid NetCDF with the outputs at the valid times")
    _add_assume_units(p)
    p.add_argument("--map", nargs="*", metavar="CORRDIFF=CLIMAX", help="input names that differ")
    _add_device(p)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.add_argument("overrides", nargs="*", help="generation.* overrides, e.g. generation.sampler.type=deterministic")
    p.set_defaults(func=downscale_forecast)


def doctor(args: argparse.Namespace) -> None:
    """Report the environment and the fast paths a config will use; exit 1 if it cannot run here."""
    import json

    from . import doctor as dr
    from .config import load_config
    from .engine.environment import probe
    from .engine.plan import choices as asks

    env = probe()
    choices = asks(load_config(args.overrides, name=args.config_name), env)
    print(json.dumps(dr.as_dict(env, choices), indent=2) if args.json else dr.report(env, choices, args.config_name))
    if args.distributed:
        print(dr.check_distributed())
    if any(c.fails for c in choices):
        raise SystemExit(1)


def launch(args: argparse.Namespace) -> None:
    """Write a SLURM or torchrun script running climax commands with one rank per GPU."""
    from .launch import Container, command_words, slurm_script, torchrun_script

    for command in args.run:  # a typo fails here, not hours later in the queue
        try:
            build_parser().parse_args(command_words(command))
        except SystemExit as err:
            raise SystemExit(f"climax launch: --run {command!r} is not a valid climax command") from err
    container = Container(args.image, tuple(args.bind or ()), args.runtime)
    if args.launcher == "slurm":
        text = slurm_script(
            args.run,
            args.nodes,
            args.gpus_per_node,
            container,
            args.job_name,
            args.time,
            args.partition,
            args.account,
            args.cpus_per_task,
            args.port,
        )
    else:
        text = torchrun_script(args.run, args.gpus_per_node, container, args.cpus_per_task)
    if args.output is None:
        print(text, end="")
        return
    from .files import check_file_output, write_atomic

    check_file_output(args.output, overwrite=args.overwrite, option="-o")
    write_atomic(args.output, text).chmod(0o755)
    submit = "sbatch" if args.launcher == "slurm" else "bash"
    print(f"wrote {args.output}; run it with: {submit} {args.output}")


def _add_cluster_commands(commands) -> None:
    p = commands.add_parser("doctor", help="environment report: GPU, PhysicsNeMo, DALI, apex, compile, distributed")
    p.add_argument("--config-name", default="config", help="the config whose fast paths are checked")
    p.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. train.fused=apex train.precision=bf16")
    p.add_argument("--json", action="store_true", help="machine-readable report")
    p.add_argument(
        "--distributed",
        action="store_true",
        help="also join the process group as training does and all-reduce (run under srun/torchrun)",
    )
    p.set_defaults(func=doctor)

    launchers = commands.add_parser(
        "launch", help="write a SLURM or torchrun script for climax commands"
    ).add_subparsers(dest="launcher", required=True)
    for name in ("slurm", "torchrun"):
        p = launchers.add_parser(
            name, help="N nodes x G GPUs with srun" if name == "slurm" else "one node with torchrun --standalone"
        )
        if name == "slurm":
            p.add_argument("--nodes", type=int, required=True)
            p.add_argument("--job-name", default="climax")
            p.add_argument("--time", default="04:00:00")
            p.add_argument("--partition")
            p.add_argument("--account")
            p.add_argument("--port", type=int, default=29500, help="rendezvous port (MASTER_PORT)")
        p.add_argument("--gpus-per-node", type=int, required=True)
        p.add_argument(
            "--run",
            action="append",
            required=True,
            metavar="COMMAND",
            help="a climax command, e.g. 'train task=pretrain' (repeat to run several in turn)",
        )
        p.add_argument("--image", help="a .sif image: each rank runs inside `<runtime> exec --nv`")
        p.add_argument("--bind", action="append", metavar="SRC[:DST]", help="paths to bind into the image")
        p.add_argument("--runtime", default="singularity", choices=["singularity", "apptainer"])
        p.add_argument("--cpus-per-task", type=int, default=8, help="CPU cores (and OMP threads) per rank")
        p.add_argument("-o", "--output", help="write the script here (default: print it)")
        p.add_argument("--overwrite", action="store_true", help="replace an existing script")
        p.set_defaults(func=launch)


def _add_forecast_command(commands) -> None:
    p = commands.add_parser(
        "forecast",
        help="forecast from a NetCDF initial condition (or downscale a coarse file: climate downscaling runs)",
    )
    run = p.add_mutually_exclusive_group(required=True)
    run.add_argument("--run", help="training run folder (its latest weights that load, and its statistics)")
    run.add_argument(
        "--checkpoint",
        metavar="RUN_OR_FILE",
        help="a run folder as --run, or a model file in its checkpoints/ folder: that file's weights "
        "with the run's statistics",
    )
    p.add_argument(
        "--input", required=True, help="initial condition (NetCDF); for a downscaling run, the coarse fields"
    )
    p.add_argument(
        "--lead",
        nargs="+",
        help="lead times: hours (24) or durations (24h 72h 5D); for a sub-seasonal run the starts of its "
        "windows (14D), all of them by default; none for a downscaling run",
    )
    p.add_argument("--output", required=True, help="output NetCDF file, or Zarr folder with --format wb2")
    p.add_argument(
        "--format",
        choices=["netcdf", "wb2"],
        default="netcdf",
        help="netcdf (time, lead_time, lat, lon per variable) or wb2: a Zarr in WeatherBench 2's "
        "layout (time, prediction_timedelta, level, latitude, longitude) that WB2 tools read",
    )
    p.add_argument("--regrid", choices=["conservative", "bilinear"], help="regrid an initial condition on another grid")
    p.add_argument(
        "--nan-policy",
        choices=["raise", "mean"],
        default="raise",
        help="non-finite input values: an error (default), or the training mean",
    )
    _add_ensemble_options(p)
    _add_assume_units(p)
    _add_device(p)
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing output (a file, or a WB2 forecast folder written by climax)",
    )
    p.set_defaults(func=forecast)


def _add_ensemble_options(p) -> None:
    """``climax forecast``'s members: how many, how they differ, and the seed of their noise."""
    p.add_argument("--members", type=int, default=1, help="ensemble members, the control included (default 1)")
    p.add_argument(
        "--perturbation",
        choices=["gaussian", "spherical", "bred", "lagged", "model"],
        default="spherical",
        help="how members differ: point noise, smooth isotropic noise on the sphere, bred vectors, "
        "earlier initial times of the input (lagged), or only the noise of a stochastic model (model; "
        "a stochastic model's members also take their own noise with the others)",
    )
    p.add_argument(
        "--perturbation-scale",
        type=float,
        default=0.05,
        help="noise size in units of each variable's training std (default 0.05)",
    )
    p.add_argument(
        "--seed", type=int, default=0, help="seed of the members' noise, a whole number >= 0 (recorded in the output)"
    )


def _add_assume_units(p) -> None:
    p.add_argument(
        "--assume-units",
        nargs="+",
        metavar="NAME=UNIT|run",
        help="units of initial-condition fields that have no units attribute (refused otherwise), "
        "e.g. 2m_temperature=degC, or run: the run's units. Fields are brought to the run's "
        "units: degC->K, hPa->Pa, geopotential height m->m**2 s**-2 (x 9.80665), ...",
    )


def _add_device(p) -> None:
    p.add_argument(
        "--device",
        help="cpu, cuda or cuda:N (default: CUDA when a GPU is visible, else the CPU; recorded in the output)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="climax", description=__doc__)
    parser.add_argument(
        "--debug",
        action="store_true",
        help="show the traceback of an error and the dependency warnings held back (also CLIMAX_DEBUG=1)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    p = commands.add_parser("demo", help="build the model and run one forecast step")
    p.add_argument("--embed-dim", type=int, default=1024)
    p.add_argument("--depth", type=int, default=8)
    p.add_argument("--num-heads", type=int, default=16)
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--lead-hours", type=float, default=72.0)
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=demo)

    p = commands.add_parser("convert", help="convert an official ClimaX .ckpt to .mdlus")
    p.add_argument("checkpoint", help="official Lightning checkpoint, e.g. 5.625deg.ckpt")
    p.add_argument("output", help="output .mdlus file")
    p.add_argument("--num-heads", type=int, default=16, help="not stored in the weights")
    p.add_argument(
        "--img-size", type=int, nargs=2, metavar=("H", "W"), help="target grid; pos_embed is resampled bicubically"
    )
    p.add_argument("--variables", help="comma-separated subset of the checkpoint's variables")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file")
    p.set_defaults(func=convert)

    _add_data_commands(commands)

    p = commands.add_parser("quickstart", help="the main job: simulate, train, evaluate (CPU, minutes)")
    p.add_argument("overrides", nargs="*", help="Hydra overrides of conf/quickstart.yaml")
    p.set_defaults(func=quickstart)

    p = commands.add_parser("train", help="train ClimaX (Hydra overrides, e.g. task=pretrain)")
    p.add_argument("overrides", nargs="*", help="Hydra overrides of conf/config.yaml")
    p.add_argument(
        "-m",
        "--multirun",
        action="store_true",
        help="a sweep: one job per combination of values (model.embed_dim=128,256), run in turn, each "
        "into its own run folder (default: run_dir/<swept key=value,...>)",
    )
    p.add_argument("--config-name", default="config", help="the config in conf/ (e.g. quickstart)")
    p.set_defaults(func=train)

    p = commands.add_parser("evaluate", help="scorecard of a run vs persistence and climatology")
    p.add_argument("overrides", nargs="*", help="run_dir=<run> and overrides such as eval.leads=[24,72]")
    p.set_defaults(func=evaluate)

    _add_forecast_command(commands)
    _add_report_commands(commands)
    _add_weights_commands(commands)

    _add_downscale_commands(commands)
    _add_cluster_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> None:
    """Run a ``climax`` command; expected errors end in one or two lines and exit code 1.

    Expected: this package's errors (:mod:`.errors`), bad values and keys
    (``ValueError``, ``KeyError``, Hydra's override errors), files and disks
    (``OSError``), and a diverged loss. Anything else is a bug and keeps its
    traceback. ``--debug`` or ``CLIMAX_DEBUG=1`` shows every traceback.
    """
    args = build_parser().parse_args(argv)
    with debug_mode(args.debug) as debug:
        try:
            with stopped_by_signals():
                args.func(args)
        except Terminated as stop:
            print(f"climax: terminated by {signal.Signals(stop.signum).name}", file=sys.stderr)
            raise SystemExit(128 + stop.signum) from None
        except KeyboardInterrupt:
            print("climax: interrupted", file=sys.stderr)
            raise SystemExit(130) from None
        except EXPECTED as err:
            if debug:
                raise
            print(f"climax {args.command}: error: {error_message(err)}", file=sys.stderr)
            print("(add --debug after `climax` for the traceback)", file=sys.stderr)
            raise SystemExit(1) from None


@contextmanager
def debug_mode(asked: bool):
    """Whether this command debugs (``--debug``, or ``CLIMAX_DEBUG=1`` already set). ``--debug``
    sets ``CLIMAX_DEBUG`` while the command runs, for the library code and the ranks and workers
    it starts, and prints the dependency warnings the package's import held back."""
    before = os.environ.get("CLIMAX_DEBUG")
    if asked:
        os.environ["CLIMAX_DEBUG"] = "1"
        dependency_warnings.replay()
    try:
        yield dependency_warnings.debugging()
    finally:
        if before is None:
            os.environ.pop("CLIMAX_DEBUG", None)
        else:
            os.environ["CLIMAX_DEBUG"] = before


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP (a scheduler ending the job, a closed terminal), raised where the command is
    so that every output being written removes its temporary files, as on Ctrl-C."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


@contextmanager
def stopped_by_signals():
    """SIGTERM and SIGHUP raise :class:`Terminated` while the command runs (main thread only)."""
    import threading

    def stop(signum, frame):
        raise Terminated(signum)

    if threading.current_thread() is not threading.main_thread():  # handlers belong to the main thread
        yield
        return
    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def error_message(err: BaseException) -> str:
    """The message of an expected error, without the quotes ``KeyError`` adds and
    with the file and a hint for OS errors (disk full, permissions)."""
    if isinstance(err, KeyError) and err.args:
        return str(err.args[0])
    if isinstance(err, OSError) and not isinstance(err, ClimaxError) and err.errno is not None:
        hint = {
            errno.ENOSPC: "the disk is full: free space or write elsewhere",
            errno.EACCES: "no permission: choose a folder you can write to",
            errno.EROFS: "the file system is read-only: choose another folder",
        }.get(err.errno)
        where = f" ({err.filename})" if err.filename else ""
        return f"{err.strerror}{where}" + (f"; {hint}" if hint else "")
    return str(err).strip() or type(err).__name__


if __name__ == "__main__":
    main()
