# SPDX-License-Identifier: Apache-2.0
"""A ``.mdlus`` file read as data: checked before PhysicsNeMo builds anything from it.

PhysicsNeMo's ``Module.from_checkpoint`` imports the module an ``args.json``
names (for classes outside its model registry), calls the class with the
arguments the file holds, and only then reads the weights. Every ``.mdlus``
this package loads goes through :func:`load_module`, which first checks,
importing nothing the file names and allocating nothing its arguments ask for:

1. **The archive** and **the arguments**, read by :func:`.mdlus_file.read_file`
   within bounds (member sizes, compression, plain JSON: no NaN, integers
   within int32, strings, lists and nesting bounded, grids of at most
   65,536 cells a side and 2^25 in all), and ``model.pt``'s tensor shapes
   read on the meta device.
2. **The class**: one the caller loads (``classes``), from a module of
   PhysicsNeMo or this package. Other classes (nested modules too) come only
   from PhysicsNeMo's model registry where the entry is PhysicsNeMo's or this
   package's own; names other installed packages register are refused.
3. **The sizes**: the model is built from the arguments on the meta device,
   with a budget of modules and tensors set by the file; a tensor the
   arguments imply beyond what the file holds is refused with both sizes. A class may also define
   ``saved_layout_problem(args, tensors)`` for arguments its constructor uses
   before any weight exists (ClimaX's ``depth``).

Only then is the file handed to PhysicsNeMo, through the class itself
(``cls.from_checkpoint``), so that PhysicsNeMo resolves no class by name for it.
"""

from __future__ import annotations

import warnings
from contextlib import contextmanager
from pathlib import Path

import torch
from physicsnemo.core import Module
from physicsnemo.core.module import _BASE_CKPT_PREFIX as NESTED  # PhysicsNeMo's mark of a nested module
from physicsnemo.core.registry import ModelRegistry
from torch.nn.modules import module as torch_module

from .mdlus_file import MdlusError, Saved, first_line, read_file, size_text  # the first three: for the callers

#: Bytes the arguments may imply beyond the file's tensors (buffers a class fills or widens on loading).
ALLOWANCE = 16 * 2**20
#: Packages whose modules a file may name (``modulus`` is PhysicsNeMo's former name, mapped by it).
TRUSTED_MODULES = ("physicsnemo", "physicsnemo_climax", "modulus")
#: Distributions whose entries of PhysicsNeMo's model registry count as PhysicsNeMo's or this package's.
TRUSTED_DISTRIBUTIONS = ("nvidia-physicsnemo", "physicsnemo-climax")


def load_module(path: str | Path, classes, *, subclasses: bool = False, override_args: dict | None = None) -> Module:
    """The model of the ``.mdlus`` file ``path``, once :func:`check_file` accepts it.

    Parameters
    ----------
    classes : type, str or tuple of them
        The classes the caller loads (a name: PhysicsNeMo's registry entry, when it is ours).
    subclasses : bool
        Also accept their subclasses registered in PhysicsNeMo's model registry.
    override_args : dict, optional
        PhysicsNeMo's ``override_args`` (only a class's ``_overridable_args``).

    Raises
    ------
    MdlusError
        Naming the file and what is refused, or why PhysicsNeMo could not load it.
    FileNotFoundError
        No such file.
    """
    cls = check_file(path, classes, subclasses=subclasses, override_args=override_args)
    try:
        return cls.from_checkpoint(str(path), override_args=override_args)
    except Exception as err:  # a damaged model.pt, keys that do not fit: one line naming the file
        raise MdlusError(f"{path}: {cls.__name__} does not load ({first_line(err)})") from err


def check_file(path: str | Path, classes, *, subclasses: bool = False, override_args: dict | None = None) -> type:
    """The class to load ``path`` with, once the archive, arguments, class and sizes are checked
    (the module docstring's rules); see :func:`load_module` for the parameters."""
    saved = read_file(path)
    accepted = tuple(_resolve(path, c) for c in (classes if isinstance(classes, tuple) else (classes,)))
    cls = _root_class(saved, accepted, subclasses)
    _check_sizes(saved, cls, override_args or {})
    return cls


# ------------------------------------------------------------------ the class
def _resolve(path, wanted) -> type:
    """A class the caller loads: itself, or a name's entry of PhysicsNeMo's registry when it is ours."""
    if isinstance(wanted, type):
        return wanted
    cls = registered(wanted)
    if cls is None:
        raise MdlusError(
            f"{path}: PhysicsNeMo's model registry has no entry {wanted} of PhysicsNeMo or "
            "physicsnemo-climax (another installed package registers that name?)"
        )
    return cls


def registered(name: str) -> type | None:
    """The class PhysicsNeMo's model registry gives for ``name`` when the entry is PhysicsNeMo's or this
    package's (importing only their modules); ``None`` for other names and other packages' entries."""
    registry = ModelRegistry()
    entry = registry._model_registry.get(name)  # private: the registry shows no entry without loading it
    if entry is None:
        return None
    if isinstance(entry, type):
        ours = entry.__module__.split(".")[0] in TRUSTED_MODULES[:2]
    else:
        dist = getattr(getattr(entry, "dist", None), "name", "") or ""
        ours = (
            dist.lower().replace("_", "-") in TRUSTED_DISTRIBUTIONS
            and entry.module.split(".")[0] in TRUSTED_MODULES[:2]
        )
    try:
        return registry.factory(name) if ours else None
    except Exception:  # PhysicsNeMo's model that needs what is not installed here (dgl, ...): not loadable
        return None


def _root_class(saved: Saved, accepted: tuple[type, ...], subclasses: bool) -> type:
    """The class of the file's ``__name__``: one of ``accepted`` (or, with ``subclasses``, an
    ours-registered subclass); never a class found by importing the module the file names."""
    name, module = _named(saved, saved.args)
    cls = next((c for c in accepted if c.__name__ == name), None)
    if cls is None and subclasses:
        cls = registered(name)
        cls = cls if cls is not None and issubclass(cls, accepted) else None
    if cls is None:
        expected = " or ".join(c.__name__ for c in accepted) + (" (or a subclass)" if subclasses else "")
        raise MdlusError(f"{saved.path}: a {name} checkpoint ({module}), not a {expected}")
    return cls


def _named(saved: Saved, entry) -> tuple[str, str]:
    """``__name__`` and ``__module__`` of an ``args.json`` entry, the module one of PhysicsNeMo or this package."""
    if (
        not isinstance(entry, dict)
        or not all(isinstance(entry.get(k), str) for k in ("__name__", "__module__"))
        or not isinstance(entry.get("__args__"), dict)
    ):
        raise MdlusError(f"{saved.path}: args.json lacks __name__, __module__ or __args__ (not a PhysicsNeMo .mdlus)")
    name, module = entry["__name__"], entry["__module__"]
    if module.split(".")[0] not in TRUSTED_MODULES:
        raise MdlusError(
            f"{saved.path}: args.json names class {name} from module {module!r}, neither PhysicsNeMo's "
            "nor physicsnemo-climax's; a .mdlus never makes this package import a module"
        )
    return name, module


def _nested_class(saved: Saved, key: str) -> type:
    """The class of a nested module entry: PhysicsNeMo resolves it by name, so the registry entry must be ours."""
    name, module = _named(saved, saved.args.get(key))
    cls = registered(name)
    if cls is None:
        raise MdlusError(
            f"{saved.path}: nested module {key} is a {name} ({module}), not a model PhysicsNeMo's "
            "registry holds for PhysicsNeMo or physicsnemo-climax"
        )
    return cls


def _layout_problem(saved: Saved, cls: type, args: dict, where: str) -> None:
    """Refuse arguments the class's constructor uses before any weight exists that the file contradicts
    (its ``saved_layout_problem`` hook, given the tensors under ``where``, e.g. ``"climax."``)."""
    hook = getattr(cls, "saved_layout_problem", None)
    tensors = {k[len(where) :]: v for k, v in saved.tensors.items() if k.startswith(where)}
    try:
        problem = hook(args, tensors) if hook else None
    except Exception as err:  # arguments of the wrong kind (a list where a dict belongs)
        problem = f"arguments it cannot read ({type(err).__name__}: {first_line(err)})"
    if problem:
        raise MdlusError(f"{saved.path}: args.json of this {cls.__name__} asks for {problem}: damaged or edited")


# ------------------------------------------------------------------ the sizes
def _check_sizes(saved: Saved, cls: type, overrides: dict) -> None:
    """Refuse arguments implying tensors beyond what the file holds (built on the meta device)."""
    implied = _implied(saved, cls, overrides)
    excess = {k: n - saved.tensors.get(k, ((), 0))[1] for k, (_, n) in implied.items()}
    excess = {k: n for k, n in excess.items() if n > 0}
    if sum(excess.values()) <= ALLOWANCE:
        return
    key = max(excess, key=excess.get)
    shape, held = implied[key][0], saved.tensors.get(key)
    holds = f"{list(held[0])} ({size_text(held[1])})" if held else "no such tensor"
    raise MdlusError(
        f"{saved.path}: its arguments (args.json) imply {key} of shape {list(shape)} ({size_text(implied[key][1])}), "
        f"the file holds {holds}; {size_text(sum(n for _, n in implied.values()))} of weights in all for "
        f"{size_text(sum(n for _, n in saved.tensors.values()))} in the file: damaged or edited, not loaded"
    )


def _implied(saved: Saved, cls: type, overrides: dict) -> dict[str, tuple[tuple[int, ...], int]]:
    """Shape and bytes of each tensor of the model the arguments build (on the meta device)."""
    budget = 8 * len(saved.tensors) + 1024  # a state dict entry costs a few registrations (modules too)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # only PhysicsNeMo's rule is wanted here: _overridable_args (ValueError)
        cls._override_args(dict(saved.args["__args__"]), dict(overrides))
    try:
        with warnings.catch_warnings(), torch.device("meta"), _registrations(saved.path, budget):
            warnings.simplefilter("ignore")  # PhysicsNeMo warns again when it loads the file
            model = _build(saved, cls, saved.args, overrides)
    except MdlusError:
        raise
    except Exception as err:  # arguments the class refuses
        raise MdlusError(
            f"{saved.path}: {cls.__name__} cannot be built from its args.json ({type(err).__name__}: {first_line(err)})"
        ) from err
    return {k: (tuple(v.shape), v.numel() * v.element_size()) for k, v in model.state_dict().items()}


def _build(saved: Saved, cls: type, entry: dict, overrides: dict, key: str = "", where: str = "") -> Module:
    """The module of an ``args.json`` entry (``key``: a nested one's, ``where``: its weights' prefix) as
    PhysicsNeMo builds it: older file versions mapped by the class, nested modules first, overrides;
    each after the class's own check (:func:`_layout_problem`). Run on the meta device."""
    args = dict(entry["__args__"])
    version = saved.metadata.get(f"{key}{'.' if key else ''}mdlus_file_version", cls.__model_checkpoint_version__)
    if version != cls.__model_checkpoint_version__:
        if version not in cls.__supported_model_checkpoint_version__:
            raise MdlusError(
                f"{saved.path}: file version {version} of {cls.__name__} is not one this PhysicsNeMo reads"
            )
        args = cls._backward_compat_arg_mapper(version, args)
    for name, value in args.items():
        if isinstance(value, str) and value.startswith(NESTED):
            args[name] = _build(saved, _nested_class(saved, value), saved.args[value], {}, value, f"{where}{name}.")
    args.update(overrides)
    if args.get("use_apex_gn"):  # apex's GroupNorm, a CUDA extension, holds the weight and bias torch's does
        args["use_apex_gn"] = False
    _layout_problem(saved, cls, args, where)
    return cls(**args)


@contextmanager
def _registrations(path: Path, budget: int):
    """Stop building a model once it has registered ``budget`` modules, parameters and buffers
    (arguments asking for a million blocks stop here, not after the million)."""
    count = [0]

    def hook(*args):
        count[0] += 1
        if count[0] > budget:
            raise MdlusError(
                f"{path}: its arguments build more than {budget} modules and tensors for a file of "
                f"{(budget - 1024) // 8} tensors: damaged or edited, not loaded"
            )

    handles = [
        torch_module.register_module_module_registration_hook(hook),
        torch_module.register_module_parameter_registration_hook(hook),
        torch_module.register_module_buffer_registration_hook(hook),
    ]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()
