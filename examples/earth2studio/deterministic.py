# SPDX-License-Identifier: Apache-2.0
"""ClimaX in Earth2Studio's deterministic workflow, on local files, into Zarr.

    pip install -e ".[sim,earth2studio]" && climax quickstart     # a trained run and the simulated data
    python examples/earth2studio/deterministic.py --run runs/quickstart \
        --data 'data/held_suarez_raw/*/*.nc' --time 2000-08-01T00 --steps 4 --out climax_e2s.zarr

Any ClimaX run folder and any ERA5 / WeatherBench / CMIP6 NetCDF or Zarr files
with its input variables work the same. Add ``--corrdiff-regression RUN``
(and ``--corrdiff-diffusion RUN``) to chain a CorrDiff downscaler with
``earth2studio.run.diagnostic``: the Zarr then holds the km-scale fields.
"""

import argparse

import numpy as np
import xarray as xr


def main(argv=None) -> xr.Dataset:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", default="runs/quickstart", help="ClimaX training run folder")
    p.add_argument("--data", nargs="+", default=["data/held_suarez_raw/*/*.nc"], help="files or globs")
    p.add_argument("--time", nargs="+", default=["2000-08-01T00"], help="initial times")
    p.add_argument("--steps", type=int, default=4, help="model steps")
    p.add_argument("--out", default="climax_e2s.zarr", help="output Zarr store")
    p.add_argument("--corrdiff-regression", help="CorrDiff regression run folder (chains a downscaler)")
    p.add_argument("--corrdiff-diffusion", help="CorrDiff diffusion run folder (omit: regression mean)")
    p.add_argument("--device", default="cpu")
    args = p.parse_args(argv)

    import earth2studio.run as e2s_run  # imported here: it takes a while
    from earth2studio.io import ZarrBackend

    from physicsnemo_climax.earth2studio import ClimaXPrognostic, CorrDiffDiagnostic, FileSource

    prognostic = ClimaXPrognostic.from_run(args.run)
    data = FileSource(args.data)
    io = ZarrBackend(file_name=args.out, backend_kwargs={"overwrite": True})
    if args.corrdiff_regression:
        downscaler = CorrDiffDiagnostic.from_runs(args.corrdiff_regression, args.corrdiff_diffusion, device=args.device)
        e2s_run.diagnostic(args.time, args.steps, prognostic, downscaler, data, io, device=args.device)
    else:
        e2s_run.deterministic(args.time, args.steps, prognostic, data, io, device=args.device)
    out = xr.open_zarr(args.out, consolidated=False)
    print(out)
    name = "z500" if "z500" in out else sorted(out.data_vars)[0]
    print(f"{name}: mean over the grid per lead time", np.round(out[name].mean(("lat", "lon")).values, 3))
    return out


if __name__ == "__main__":
    main()
