# SPDX-License-Identifier: Apache-2.0
"""Batch scripts that run the recipes on clusters (``climax launch``).

Two templates live in ``physicsnemo_climax/templates``:

* ``slurm.sbatch``: N nodes x G GPUs, one ``srun`` step per command, each rank
  started by ``srun`` (optionally inside ``singularity exec --nv``) and joined
  by PhysicsNeMo's ``DistributedManager`` through its SLURM method;
* ``torchrun.sh``: the one-node equivalent with ``torchrun --standalone``.

Placeholders are written ``{{name}}``; rendering refuses unknown or missing ones.
"""

from __future__ import annotations

import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from .errors import ConfigError

TEMPLATES = Path(__file__).parent / "templates"
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


def render(template: str, **values) -> str:
    """Fill ``{{name}}`` placeholders of a template file in :data:`TEMPLATES`."""
    text = (TEMPLATES / template).read_text()
    missing = sorted(set(_PLACEHOLDER.findall(text)) - set(values))
    if missing:
        raise KeyError(f"{template}: no value for {missing}")
    return _PLACEHOLDER.sub(lambda m: str(values[m.group(1)]), text)


@dataclass
class Container:
    """How each rank enters the image: ``singularity exec --nv --bind ... image``.

    An empty ``image`` runs on the host environment instead.
    """

    image: str | None = None
    binds: tuple[str, ...] = ()
    runtime: str = "singularity"

    def prefix(self, gpus: bool = True) -> str:
        if not self.image:
            return ""
        words = [self.runtime, "exec"] + (["--nv"] if gpus else [])
        if self.binds:
            words += ["--bind", ",".join(self.binds)]
        return shlex.join(words + [self.image]) + " "


def command_words(command: str) -> list[str]:
    """The arguments of a ``climax`` command line, without a leading ``climax``
    (raises on unbalanced quotes and on an empty command)."""
    words = shlex.split(command)
    if words and words[0] == "climax":
        words = words[1:]
    if not words:
        raise ConfigError("empty command: give e.g. 'train task=pretrain'")
    return words


def _command(command: str) -> str:
    return shlex.join(command_words(command))


def _check(nodes: int, gpus_per_node: int, commands) -> None:
    if nodes < 1:
        raise ConfigError(f"nodes={nodes}: must be >= 1")
    if gpus_per_node < 1:
        raise ConfigError(f"gpus_per_node={gpus_per_node}: must be >= 1 (one rank per GPU)")
    if not commands:
        raise ConfigError("no command to run: give at least one, e.g. 'train task=pretrain'")


def slurm_script(
    commands: list[str],
    nodes: int,
    gpus_per_node: int,
    container: Container | None = None,
    job_name: str = "climax",
    time: str = "04:00:00",
    partition: str | None = None,
    account: str | None = None,
    cpus_per_task: int = 8,
    port: int = 29500,
) -> str:
    """An ``sbatch`` script running ``climax <command>`` on ``nodes`` x ``gpus_per_node`` ranks.

    Commands run one after the other (for example both CorrDiff stages), each
    as its own ``srun`` step over the whole allocation.
    """
    _check(nodes, gpus_per_node, commands)
    container = container or Container()  # none: the host's Python
    extra = []
    if partition:
        extra.append(f"#SBATCH --partition={partition}")
    if account:
        extra.append(f"#SBATCH --account={account}")
    srun = (
        f"srun --nodes={nodes} --ntasks-per-node={gpus_per_node} --gpus-per-node={gpus_per_node} "
        f"--cpus-per-task={cpus_per_task} --kill-on-bad-exit=1"
    )
    steps = "\n".join(f"{srun} \\\n    {container.prefix()}climax {_command(c)}" for c in commands)
    return render(
        "slurm.sbatch",
        title=f"climax on SLURM: {'; '.join(_command(c) for c in commands)}",
        job_name=job_name,
        nodes=nodes,
        gpus_per_node=gpus_per_node,
        cpus_per_task=cpus_per_task,
        time=time,
        sbatch_extra="\n".join(extra),
        port=port,
        omp_threads=cpus_per_task,
        steps=steps,
    )


def torchrun_script(
    commands: list[str], gpus_per_node: int, container: Container | None = None, cpus_per_task: int = 8
) -> str:
    """The one-node script: ``torchrun --standalone`` with one rank per GPU."""
    _check(1, gpus_per_node, commands)
    container = container or Container()
    run = f"torchrun --standalone --nnodes=1 --nproc-per-node={gpus_per_node} --no-python"
    steps = "\n".join(f"{container.prefix()}{run} \\\n    climax {_command(c)}" for c in commands)
    return render(
        "torchrun.sh",
        title=f"climax with torchrun: {'; '.join(_command(c) for c in commands)}",
        gpus_per_node=gpus_per_node,
        omp_threads=cpus_per_task,
        steps=steps,
    )
