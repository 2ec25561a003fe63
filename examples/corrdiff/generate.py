# SPDX-License-Identifier: Apache-2.0
"""Generate CorrDiff ensembles, as ``climax downscale generate``:

    python examples/corrdiff/generate.py generation.io.reg_ckpt_filename=outputs/corrdiff_regression \
        generation.io.res_ckpt_filename=outputs/corrdiff_diffusion generation.num_ensembles=8 \
        generation.seed_batch_size=4 generation.times=null generation.max_times=4

(``torchrun`` spreads the seed batches over ranks; rank 0 writes the file.)"""

import hydra
from omegaconf import DictConfig

from physicsnemo_climax.config import config_dir
from physicsnemo_climax.downscaling.generation import generate
from physicsnemo_climax.downscaling.upstream_keys import apply


@hydra.main(config_path=str(config_dir()), config_name="config_generate_hrrr_mini", version_base=None)
def main(cfg: DictConfig) -> None:
    apply(cfg)  # upstream keys added with ++ (training.hp.*, sampler.*): read as the keys here
    path = generate(cfg)
    if path is not None:
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
