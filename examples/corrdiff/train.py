# SPDX-License-Identifier: Apache-2.0
"""Train a CorrDiff stage, as ``climax downscale train``:

    python examples/corrdiff/train.py dataset.data_path=hrrr_mini_train.nc dataset.stats_path=stats.json
    python examples/corrdiff/train.py --config-name config_training_hrrr_mini_diffusion \
        model.regression_checkpoint_path=outputs/corrdiff_regression

(``torchrun --nproc_per_node=N`` for several GPUs.)"""

import hydra
from omegaconf import DictConfig

from physicsnemo_climax.config import config_dir
from physicsnemo_climax.downscaling.training import train
from physicsnemo_climax.downscaling.upstream_keys import apply


@hydra.main(config_path=str(config_dir()), config_name="config_training_hrrr_mini_regression", version_base=None)
def main(cfg: DictConfig) -> None:
    apply(cfg)  # upstream keys added with ++ (training.hp.*, sampler.*): read as the keys here
    print(f"run folder: {train(cfg)}")


if __name__ == "__main__":
    main()
