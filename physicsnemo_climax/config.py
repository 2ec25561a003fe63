# SPDX-License-Identifier: Apache-2.0
"""The Hydra config tree (``conf/``), composed with command-line overrides.

Every override must name a key the config has (or a config group), so a typo
is an error with the closest key suggested, never an ignored setting; the
keys of :data:`ADDABLE` are the only ones that may be added with ``+``.

A multirun (``climax train -m model.embed_dim=128,256``) is every combination
of the swept values, each job composed on its own (:func:`load_sweep`) and
trained into its own run folder.
"""

from __future__ import annotations

import difflib
import itertools
import re
from collections.abc import Sequence
from pathlib import Path

from hydra import compose, initialize_config_dir
from hydra.core.override_parser.overrides_parser import OverridesParser
from omegaconf import DictConfig, ListConfig, OmegaConf

from .errors import ConfigError

#: Keys absent from the configs that an override may add (``+key=...``).
ADDABLE = ("data.extra_sources",)
#: Sections whose keys are names the user chooses (``external.ifs=gs://...``), with or without ``+``.
NAMED = ("external.", "eval.boxes.", "eval.assume_units.", "dataset.args.")
#: Keys of a run's saved config that name where outputs go (:func:`load_run_config`).
SAVED_OUTPUTS = ("eval.out_dir",)
#: A resolver call in a config value: ``${oc.env:HOME}``, ``${now:%Y}`` (not a reference ``${run_dir}``).
RESOLVER = re.compile(r"\$\{[\w.]+:")
#: Characters of a job's swept values not kept in its run folder's name (``/`` would nest folders).
FOLDER_UNSAFE = re.compile(r"[^\w.,=+-]")
#: Sections that hold overrides of another section's keys, checked against it
#: (CorrDiff's ``validation`` overrides ``dataset``: ``+validation.data_path=...``).
OVERRIDES_OF = {"validation": "dataset"}


def config_dir() -> Path:
    """``conf/``: inside the installed package, or beside it in a source checkout."""
    package = Path(__file__).resolve().parent
    for candidate in (package / "conf", package.parent / "conf"):
        if (candidate / "config.yaml").exists():
            return candidate
    raise FileNotFoundError(f"no conf/config.yaml in or beside {package}")


def load_config(overrides: Sequence[str] = (), name: str = "config") -> DictConfig:
    """Compose ``conf/{name}.yaml`` with Hydra overrides (``task=pretrain train.steps=10``).

    Raises
    ------
    ConfigError
        For an override of a key the composed config does not have.
    """
    overrides = list(overrides)
    parsed = OverridesParser.create().parse_overrides(overrides)
    swept = [o.input_line for o in parsed if o.is_sweep_override()]
    if swept:
        raise ConfigError(f"{swept[0]} gives several values: only `climax train -m` runs a sweep, one job per value")
    groups = [o.input_line for o in parsed if (config_dir() / o.key_or_group.replace(".", "/")).is_dir()]
    with initialize_config_dir(config_dir=str(config_dir()), version_base=None):
        base = compose(config_name=name, overrides=groups)
        for o in parsed:
            section, _, rest = o.key_or_group.partition(".")
            if section in OVERRIDES_OF and rest:
                check_key(base, f"{OVERRIDES_OF[section]}.{rest}", o.input_line)
            elif o.input_line not in groups and not (o.is_add() and o.key_or_group.startswith(ADDABLE)):
                check_key(base, o.key_or_group, o.input_line)
        return compose(config_name=name, overrides=overrides)


def sweep_jobs(overrides: Sequence[str]) -> list[dict[str, str]]:
    """The jobs of a multirun: every combination of the swept values, in the order given.

    ``["model.embed_dim=128,256", "train.steps=5"]`` gives two jobs, ``{"model.embed_dim": "128",
    "train.steps": "5"}`` and ``{"model.embed_dim": "256", ...}`` (``{key: value}``, the key with
    its ``+``/``~`` prefix). Choices (``a,b``, ``choice(a,b)``) and ranges (``range(1,4)``) sweep.
    Hydra's own sweeper is not public API and needs a Hydra app around it; this is its product.

    Raises
    ------
    ConfigError
        For a sweep that cannot be listed (an ``interval``), naming it.
    """
    values = []
    for o in OverridesParser.create().parse_overrides(list(overrides)):
        key = o.get_key_element()
        if o.is_sweep_override() and not o.is_discrete_sweep():
            raise ConfigError(f"{o.input_line}: a multirun lists its values (a,b or range(...)), not an interval")
        listed = list(o.sweep_string_iterator()) if o.is_sweep_override() else [o.get_value_element_as_str()]
        values.append([(key, v) for v in listed])
    return [dict(combination) for combination in itertools.product(*values)]


def load_sweep(overrides: Sequence[str], name: str = "config") -> list[tuple[str, DictConfig]]:
    """The composed config of each job of a multirun, each with its own ``run_dir``.

    Without ``run_dir=`` on the command line, a job's run folder is the config's ``run_dir`` with
    the job's swept values below it: ``runs/finetune_global/model.embed_dim=128`` (the swept
    ``key=value`` pairs sorted by key, joined by ``,``). A ``run_dir=`` given (it may name swept
    keys, ``run_dir=runs/scale/${model.embed_dim}``) is taken as it resolves in each job.

    Returns
    -------
    list of (str, DictConfig)
        Each job's swept values (``model.embed_dim=128``) and its config.

    Raises
    ------
    ConfigError
        When two jobs would train into the same run folder, naming both (nothing is composed to run).
    """
    jobs, swept = sweep_jobs(overrides), swept_keys(overrides)
    own_run_dir = any(key.lstrip("+") == "run_dir" for key in jobs[0])
    out, folders = [], {}
    for job in jobs:
        label = ",".join(f"{k}={job[k]}" for k in sorted(swept)) or "(no sweep)"
        cfg = load_config([f"{k}={v}" for k, v in job.items()], name=name)
        if not own_run_dir and swept:
            cfg.run_dir = f"{cfg.run_dir}/{FOLDER_UNSAFE.sub('_', label)}"
        folder = Path(str(cfg.run_dir)).resolve()
        if folder in folders:
            raise ConfigError(
                f"the jobs {folders[folder]} and {label} would both train into run_dir={cfg.run_dir}: "
                "a run folder holds one run; let run_dir name the swept keys (run_dir=runs/x/${model.embed_dim}) "
                "or leave it out"
            )
        folders[folder] = label
        out.append((label, cfg))
    return out


def swept_keys(overrides: Sequence[str]) -> list[str]:
    """The keys of ``overrides`` that sweep several values (``model.embed_dim=128,256``)."""
    parsed = OverridesParser.create().parse_overrides(list(overrides))
    return [o.get_key_element() for o in parsed if o.is_sweep_override()]


def load_run_config(run_dir: str | Path, overrides: Sequence[str] = ()) -> DictConfig:
    """A run's saved config with dotted overrides (``eval.leads=[24,72]``) of keys it has.

    The saved config is data, not instructions: it may not call resolvers (``${oc.env:...}``),
    and the outputs it names (:data:`SAVED_OUTPUTS`) must lie inside the run folder unless the command
    line gives them.

    Raises
    ------
    ConfigError
        Naming the key of the saved config that calls a resolver or writes outside the run.
    """
    path = Path(run_dir) / "config.yaml"
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: not a training run folder")
    saved = OmegaConf.load(path)
    check_no_resolvers(saved, path)
    if "eval" in saved:  # evaluation keys added since the run was saved take today's defaults
        today = OmegaConf.load(config_dir() / "config.yaml")
        saved = OmegaConf.merge({"eval": today.eval, "external": today.external}, saved)
    for item in overrides:
        check_key(saved, item.split("=", 1)[0].lstrip("+"), item)
    cfg = OmegaConf.merge(saved, OmegaConf.from_dotlist(list(overrides)))
    cfg.run_dir = str(run_dir)
    given = {item.split("=", 1)[0].lstrip("+") for item in overrides}
    check_outputs_inside(cfg, Path(run_dir), [key for key in SAVED_OUTPUTS if key not in given], path)
    return cfg


def check_no_resolvers(saved: DictConfig, path: Path) -> None:
    """Refuse a saved config whose values call a resolver (``${oc.env:HOME}``, ``${now:...}``):
    a run folder shared with others could otherwise read the environment or run code.
    References to other keys (``${run_dir}/eval``) are plain data and stay."""

    def walk(node, prefix: str) -> None:
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, value in items:
            name = f"{prefix}{key}" if isinstance(node, dict) else f"{prefix[:-1]}[{key}]"
            if isinstance(value, str) and RESOLVER.search(value):
                raise ConfigError(
                    f"{path}: {name}={value!r} calls a resolver; a saved config may not read "
                    "the environment or run resolvers (give the value on the command line)"
                )
            walk(value, f"{name}.")

    walk(OmegaConf.to_container(saved, resolve=False), "")


def check_outputs_inside(cfg: DictConfig, run_dir: Path, keys: Sequence[str], path: Path) -> None:
    """Refuse output paths of the saved config (``keys``) that lie outside ``run_dir``."""
    for key in keys:
        value = OmegaConf.select(cfg, key)
        if value is None:
            continue
        target, run = Path(value).resolve(), run_dir.resolve()
        if target != run and run not in target.parents:
            raise ConfigError(
                f"{key}={value} in {path} is outside the run folder {run_dir}; a saved config "
                f"writes only inside its run: give {key}=... on the command line to write there"
            )


def check_key(cfg: DictConfig, key: str, override: str) -> None:
    """Raise ``ConfigError`` naming ``override`` (and the nearest known key) when ``cfg`` lacks ``key``."""
    if key.startswith(NAMED) and key.count(".") == next(n.count(".") for n in NAMED if key.startswith(n)):
        return  # a name the user chooses, in a section made for them
    node = cfg
    for part in key.replace("[", ".[").split("."):
        if isinstance(node, ListConfig) and part.startswith("[") and part.endswith("]"):
            continue  # an item of a list the config has
        if not isinstance(node, DictConfig) or part not in node.keys():
            near = difflib.get_close_matches(key, leaf_keys(cfg), n=1, cutoff=0.6)
            hint = f"; did you mean {near[0]}?" if near else ""
            raise ConfigError(f"{override}: the config has no key {key}{hint}")
        node = node._get_node(part)


def leaf_keys(cfg: DictConfig, prefix: str = "") -> list[str]:
    """Dotted paths of every key of ``cfg``, nested sections included."""
    keys = []
    for k in cfg.keys():
        path = f"{prefix}{k}"
        keys.append(path)
        child = cfg._get_node(k)
        if isinstance(child, DictConfig):
            keys += leaf_keys(child, path + ".")
    return keys
