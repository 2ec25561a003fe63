# SPDX-License-Identifier: Apache-2.0
"""CorrDiff end to end on a synthetic file in the CorrDiff-Mini layout (CPU, minutes):
regression, residual diffusion, an 8-member ensemble, scores against the
bilinear and regression-only baselines, maps and spectra.

    python examples/corrdiff/mini_demo.py [--out outputs/corrdiff_demo] [--steps 300]

With the published CorrDiff-Mini files, use ``climax downscale train`` with
``dataset.data_path=... dataset.stats_path=...`` instead (see docs/corrdiff.md).
"""

import argparse
from pathlib import Path

from physicsnemo_climax.config import load_config
from physicsnemo_climax.downscaling import plots, write_mini_file
from physicsnemo_climax.downscaling.generation import generate
from physicsnemo_climax.downscaling.scores import write_scores
from physicsnemo_climax.downscaling.training import train


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="outputs/corrdiff_demo")
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps per stage")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data, stats = out / "mini_train.nc", out / "stats.json"
    write_mini_file(data, stats, samples=64, shape=(32, 32), factor=4, invariant_shape=(64, 64))
    common = [
        f"dataset.data_path={data}",
        f"dataset.stats_path={stats}",
        "model_size=tiny",
        f"train.steps={args.steps}",
        "train.batch_size=8",
        "train.grad_accum=1",
        "train.lr=2e-3",
        "train.num_workers=0",
        f"train.ckpt_every={args.steps}",
        "train.log_every=25",
    ]
    reg = train(load_config(common + [f"run_dir={out / 'regression'}"], "config_training_hrrr_mini_regression"))
    res = train(
        load_config(
            common + [f"run_dir={out / 'diffusion'}", f"model.regression_checkpoint_path={reg}"],
            "config_training_hrrr_mini_diffusion",
        )
    )
    path = generate(
        load_config(
            [
                f"dataset.data_path={data}",
                f"dataset.stats_path={stats}",
                f"generation.io.reg_ckpt_filename={reg}",
                f"generation.io.res_ckpt_filename={res}",
                f"generation.io.output_filename={out / 'ensemble.nc'}",
                "generation.num_ensembles=8",
                "generation.seed_batch_size=4",
                "generation.times=null",
                "generation.max_times=8",
                "generation.sampler.num_steps=18",
                "generation.io.overwrite=true",
            ],
            "config_generate_hrrr_mini",
        )
    )  # the demo's own file, remade each run
    print(write_scores(path, out).to_string(index=False, float_format="%.4g"))
    plots.plot_maps(path, out / "maps.png")
    plots.plot_spectra(path, out / "spectra.png")
    print(f"ensemble {path}; scores, maps.png and spectra.png in {out}")


if __name__ == "__main__":
    main()
