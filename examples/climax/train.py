# SPDX-License-Identifier: Apache-2.0
"""Train ClimaX: ``python examples/climax/train.py task=pretrain data.root=...``
(the same as ``climax train``; ``torchrun --nproc_per_node=N`` for DDP)."""

import hydra
from omegaconf import DictConfig

from physicsnemo_climax.config import config_dir
from physicsnemo_climax.tasks import train


@hydra.main(config_path=str(config_dir()), config_name="config", version_base=None)
def main(cfg: DictConfig) -> None:
    print(f"run folder: {train(cfg)}")


if __name__ == "__main__":
    main()
