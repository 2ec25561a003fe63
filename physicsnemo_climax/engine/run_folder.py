# SPDX-License-Identifier: Apache-2.0
"""A training run's folder: its lock, its record, and what a relaunch may change.

The record is ``config.yaml`` (the composed config with the run plan's
fallbacks taken), ``run.json`` (the task's facts, the run plan and the
history of relaunches) and any task files (``domain.json``, ...). The loop
writes it only once a launch has passed its checks and loaded its
checkpoint, so a launch that fails leaves an existing run as it was.

A relaunch into a folder with checkpoints resumes it. It may change only
the keys of :data:`FREE`, which change how the run is computed or logged,
not what it learns; any other change (variables, learning rate, steps,
data, model, ...) is refused with the list of differences.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from collections.abc import Callable, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from ..errors import ConfigError, DataError, OutputError, RunInUse
from ..files import write_atomic
from .checkpointing import checkpoint_steps
from .plan import RunPlan
from .run_info import RunInfo

logger = logging.getLogger(__name__)

RUN_JSON = "run.json"
LOCK = ".lock"
#: What a launch writes in its run folder (the task's own record files come with ``run.json``).
LAUNCH_FILES = (LOCK, "config.yaml", RUN_JSON, "checkpoints", "metrics.csv", "tensorboard")
#: The best checkpoint's folder in ``checkpoints`` (:class:`.loop.BestCheckpoint`).
BEST = "best"
#: What a launch writes in its run folder, nested ones included: none may be a link to elsewhere.
LAUNCH_PATHS = (*LAUNCH_FILES, f"checkpoints/{BEST}")
#: Config keys (and sections) a relaunch may change. ``data.root`` may move: the
#: store's content is compared through ``run.json`` (statistics, grid, variables).
FREE = (
    "run_dir",
    "data.root",
    "eval",
    "generation",
    "train.progress",
    "train.log_every",
    "train.val_every",
    "train.val_batches",
    "train.ckpt_every",
    "train.keep_checkpoints",
    "train.best_metric",
    "train.num_workers",
    "train.loader",
    "train.tensorboard",
    "train.mlflow",
    "train.fallback",
    "train.resume",
    "train.precision",
    "train.fused",
    "train.compile",
    "train.fsdp",
    "train.grad_checkpointing",
    "train.deterministic",
)


@dataclass
class RunRecord:
    """What a task records about its run besides the checkpoints.

    Attributes
    ----------
    cfg : DictConfig
        The composed config (``config.yaml``, fallbacks applied on writing).
    info : RunInfo
        The task's facts (``run.json``): variables, statistics, grid, ...
    writers : sequence of callable
        ``writer(run_dir)``: each writes a file of the task's own (``domain.json``, ...).
    """

    cfg: DictConfig
    info: RunInfo
    writers: Sequence[Callable[[Path], None]] = ()


# ------------------------------------------------------------------ the lock
@contextmanager
def run_lock(run_dir: str | Path):
    """Hold ``run_dir/.lock`` for a launch: a second launch into the folder fails
    with :class:`RunInUse`; a lock left by a dead process on this host is taken
    over with a warning. A folder created here and left empty is removed. The
    folder must be new, empty or a run's (:func:`check_run_folder`)."""
    run_dir = Path(run_dir)
    check_run_folder(run_dir)
    created = not run_dir.exists()
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK
    _acquire(path)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)
        if created and not any(run_dir.iterdir()):
            run_dir.rmdir()


def check_run_folder(run_dir: Path) -> None:
    """A launch writes only into a new or empty folder, or a run's: one with ``run.json``, or
    holding only what a launch writes (:data:`LAUNCH_FILES`: a first launch that stopped early). A run
    is a boundary: nothing in it that a launch writes may be a link to elsewhere.

    Raises
    ------
    ConfigError
        A non-empty folder that is not a run, naming what it holds.
    OutputError
        A link among :data:`LAUNCH_PATHS`, naming it.
    """
    if not run_dir.exists():
        return
    if not run_dir.is_dir():
        raise ConfigError(f"run_dir={run_dir} is a file; give a folder")
    held = sorted(p.name for p in run_dir.iterdir())
    if held and RUN_JSON not in held and not set(held) <= set(LAUNCH_FILES):
        listed = ", ".join(held[:4]) + (", ..." if len(held) > 4 else "")
        raise ConfigError(
            f"run_dir={run_dir} is not a run folder (it holds {listed}); train into a new or empty folder"
        )
    for name in LAUNCH_PATHS:
        if (run_dir / name).is_symlink():
            raise OutputError(
                f"{run_dir / name} is a symbolic link; climax does not write through links in a "
                "run folder: replace it with a plain file or folder"
            )


def _acquire(path: Path) -> None:
    me = json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "started": time.strftime("%Y-%m-%dT%H:%M:%S")})
    for attempt in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            holder = _holder(path)
            if attempt or not _is_stale(holder):
                raise RunInUse(
                    f"{path.parent} is in use by process {holder.get('pid')} on {holder.get('host')} "
                    f"(since {holder.get('started')}); wait for it, or delete {path} if that process is gone"
                ) from None
            logger.warning("taking over %s, left by process %s, which has ended", path, holder.get("pid"))
            path.unlink(missing_ok=True)
            continue
        with os.fdopen(fd, "w") as f:
            f.write(me)
        return


def _holder(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _is_stale(holder: dict) -> bool:
    """A lock of a process of this host that no longer runs (or an unreadable one)."""
    if holder.get("host") != socket.gethostname() or not isinstance(holder.get("pid"), int):
        return not holder  # an empty or unreadable lock: a launch died while writing it
    try:
        os.kill(holder["pid"], 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, another user's
        return False
    return False


# ------------------------------------------------------------------ relaunches
def flat(cfg: DictConfig) -> dict[str, object]:
    """``{"train.lr": 0.001, ...}``: every leaf value, interpolations resolved."""
    out = {}

    def walk(node, prefix):
        for key, value in node.items():
            if isinstance(value, dict):
                walk(value, f"{prefix}{key}.")
            else:
                out[f"{prefix}{key}"] = value

    walk(OmegaConf.to_container(cfg, resolve=True), "")
    return out


def relaunch_changes(run_dir: str | Path, record: RunRecord, plan: RunPlan) -> dict[str, list]:
    """The changes of a relaunch into a folder holding checkpoints, ``{key: [old, new]}``.

    Raises
    ------
    ConfigError
        When a key outside :data:`FREE`, or a fact of ``run.json`` (variables,
        statistics, grid, region, ...), differs from the run's.
    """
    run_dir = Path(run_dir)
    saved_path = run_dir / "config.yaml"
    if not checkpoint_steps(run_dir / "checkpoints") or not saved_path.exists() or not (run_dir / RUN_JSON).exists():
        return {}  # nothing trained yet: the new launch starts the run
    old, new = flat(OmegaConf.load(saved_path)), flat(plan.applied(record.cfg))
    # keys the saved config lacks came with a newer version of this package: not a change
    changes = {k: [old[k], new.get(k)] for k in sorted(old) if old[k] != new.get(k)}
    saved, facts = read_run_record(run_dir).facts(), record.info.facts()
    # a fact an older run.json lacks (None) is not a change
    changes.update(
        {
            f"run.json {k}": ["(differs)", "(differs)"]
            for k in facts
            if saved.get(k) is not None and saved[k] != facts[k]
        }
    )
    fixed = {k: v for k, v in changes.items() if not (k == "run_dir" or k.startswith(FREE))}
    if fixed:
        listed = "; ".join(f"{k}: {a!r} -> {b!r}" for k, (a, b) in list(fixed.items())[:8])
        raise ConfigError(
            f"{run_dir} holds a run trained with other settings ({listed}). Resume it with "
            "its own settings, or train into a new run_dir (init=<a checkpoint of it> starts "
            "from its weights)"
        )
    return changes


# ------------------------------------------------------------------ the record
def write_run_record(
    run_dir: str | Path, record: RunRecord, plan: RunPlan, resumed_at: int = 0, changes: dict | None = None
) -> None:
    """Write ``config.yaml``, ``run.json`` (info, plan, history of relaunches) and the task's files."""
    run_dir = Path(run_dir)
    history = list(read_run_record(run_dir).history) if resumed_at else []
    if resumed_at:
        history.append({"resumed_at_step": resumed_at, "changed": changes or {}})
    for writer in record.writers:
        writer(run_dir)
    write_atomic(run_dir / "config.yaml", OmegaConf.to_yaml(plan.applied(record.cfg)))
    info = record.info.with_launch(plan.as_dict(), history)
    write_atomic(run_dir / RUN_JSON, json.dumps(info.to_json(), indent=1))


def read_run_record(run_dir: str | Path) -> RunInfo:
    """The :class:`.RunInfo` of a run folder's ``run.json``.

    Raises
    ------
    FileNotFoundError
        When the folder is not a training run.
    DataError
        When ``run.json`` is not a JSON object, naming it.
    """
    path = Path(run_dir) / RUN_JSON
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: not a training run folder")
    try:
        data = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise DataError(f"{path} is not valid JSON ({err}); the run's record is damaged") from None
    return RunInfo.from_json(data, path)


def data_root(cfg: DictConfig, run_dir: str | Path) -> str:
    """Where the data of the run in ``run_dir`` are now: ``data.root`` when the command line moves
    them there (it differs from the saved config's), else where ``run.json`` records them (an
    absolute path for runs of this version; an older run's relative one is taken from the current
    folder), else the saved config's."""
    saved = OmegaConf.load(Path(run_dir) / "config.yaml").data.get("root")
    given = cfg.data.get("root")
    if given is not None and str(given) != str(saved):
        return str(given)
    return str(read_run_record(run_dir).data_root or given)
