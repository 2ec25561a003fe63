# SPDX-License-Identifier: Apache-2.0
"""A ``.mdlus`` file read as data: checked before PhysicsNeMo builds anything from it.

PhysicsNeMo's ``Module.from_checkpoint`` imports the module an ``args.json``
names (for classes outside its model registry), calls the class with the
arguments the file holds, and only then reads the weights. Every ``.mdlus``
this package loads goes through :func:`load_module`, which first checks, importing
nothing the file names and allocating nothing its arguments ask for:

1. **The archive** (zip, or the older tar): ``args.json``, ``metadata.json``
   and ``model.pt`` are there; the members' declared sizes fit in the file;
   the JSON members are at most :data:`MAX_JSON_BYTES`; a compressed member
   expands at most :data:`MAX_RATIO` times (PhysicsNeMo stores them
   uncompressed).
2. **The arguments**: plain JSON within bounds (:func:`argument_problem`: no
   NaN, integers within int32, strings, lists and nesting bounded, grids of at
   most :data:`MAX_AXIS` per side and :data:`MAX_CELLS` cells).
3. **The class**: one the caller loads (``classes``), from a module of
   PhysicsNeMo or this package. Other classes (nested modules too) come only
   from PhysicsNeMo's model registry where the entry is PhysicsNeMo's or this
   package's own; names other installed packages register are refused.
4. **The sizes**: ``model.pt``'s tensors are read on the meta device (shapes
   only, each within the bytes the file holds); the model is built from the
   arguments on the meta device, with a budget of tensors and modules set by
   the file; a tensor the arguments imply beyond what the file holds is
   refused with both sizes. A class may also define
   ``saved_layout_problem(args, tensors)`` for arguments its constructor uses
   before any weight exists (ClimaX's ``depth``).

Only then is the file handed to PhysicsNeMo, through the class itself
(``cls.from_checkpoint``), so that PhysicsNeMo resolves no class by name for it.
"""

from __future__ import annotations

import io
import json
import math
import pickle
import tarfile
import warnings
import zipfile
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import torch
from physicsnemo.core import Module
from physicsnemo.core.module import _BASE_CKPT_PREFIX as NESTED  # PhysicsNeMo's mark of a nested module
from physicsnemo.core.registry import ModelRegistry
from torch.nn.modules import module as torch_module

MEMBERS = ("args.json", "metadata.json", "model.pt")
#: ``args.json`` / ``metadata.json`` at most (a ClimaX's longest arguments, lat/lon lists, take kB).
MAX_JSON_BYTES = 16 * 2**20
#: Expansion of a compressed member at most (JSON compresses about 10 times, weights hardly).
MAX_RATIO = 100
MAX_INT = 2**31 - 1
MAX_STRING = 2**16
MAX_ITEMS = 2**20
MAX_NESTING = 16
#: Grid arguments (``img_size``, ``img_resolution``): cells per side and in all (4096 x 8192).
GRID_ARGUMENTS = ("img_size", "img_resolution")
MAX_AXIS = 2**16
MAX_CELLS = 2**25
#: Bytes the arguments may imply beyond the file's tensors (buffers a class fills or widens on loading).
ALLOWANCE = 16 * 2**20
#: Packages whose modules a file may name (``modulus`` is PhysicsNeMo's former name, mapped by it).
TRUSTED_MODULES = ("physicsnemo", "physicsnemo_climax", "modulus")
#: Distributions whose entries of PhysicsNeMo's model registry count as PhysicsNeMo's or this package's.
TRUSTED_DISTRIBUTIONS = ("nvidia-physicsnemo", "physicsnemo-climax")


class MdlusError(ValueError):
    """A ``.mdlus`` file refused before loading; the message names the file and the item."""


@dataclass
class Saved:
    """What a ``.mdlus`` file holds, read without building anything.

    Attributes
    ----------
    path : Path
    args : dict
        ``args.json``: ``{"__name__", "__module__", "__args__"}`` and nested modules' entries.
    metadata : dict
        ``metadata.json`` (PhysicsNeMo version, ``mdlus_file_version``).
    tensors : dict of str to (tuple of int, int)
        Shape and bytes of each tensor of ``model.pt``.
    """

    path: Path
    args: dict
    metadata: dict
    tensors: dict[str, tuple[tuple[int, ...], int]]


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
        raise MdlusError(f"{path}: {cls.__name__} does not load ({_first_line(err)})") from err


def check_file(path: str | Path, classes, *, subclasses: bool = False, override_args: dict | None = None) -> type:
    """The class to load ``path`` with, once the archive, arguments, class and sizes are checked
    (the module docstring's rules); see :func:`load_module` for the parameters."""
    saved = read_file(path)
    accepted = tuple(_resolve(path, c) for c in (classes if isinstance(classes, tuple) else (classes,)))
    cls = _root_class(saved, accepted, subclasses)
    _check_arguments(saved, cls)
    _check_sizes(saved, cls, override_args or {})
    return cls


# ------------------------------------------------------------------ the archive
def read_file(path: str | Path) -> Saved:
    """The :class:`Saved` contents of a ``.mdlus``, its archive and JSON members checked.

    Raises
    ------
    MdlusError
        Not a ``.mdlus``, or members beyond the bounds (named).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    try:
        # PhysicsNeMo's order: an older tar file ending in model.pt (itself a zip) also looks like a zip
        if tarfile.is_tarfile(path):
            return _read_tar(path)
        if zipfile.is_zipfile(path):
            return _read_zip(path)
    except MdlusError:
        raise
    except (OSError, EOFError, RuntimeError, ValueError, tarfile.TarError, zipfile.BadZipFile,
            pickle.UnpicklingError) as err:
        raise MdlusError(f"{path}: not a readable .mdlus checkpoint ({_first_line(err)})") from err
    raise MdlusError(f"{path}: not a PhysicsNeMo .mdlus checkpoint (neither a zip nor a tar archive)")


@dataclass(frozen=True)
class _Member:
    size: int  # bytes once extracted
    stored: int  # bytes in the archive
    offset: int | None  # where an uncompressed member's bytes start in the file; None when compressed


def _read_zip(path: Path) -> Saved:
    with zipfile.ZipFile(path) as archive:
        infos = archive.infolist()
        if len({i.filename for i in infos}) != len(infos):
            raise MdlusError(f"{path}: the archive holds a member name twice")
        members = {i.filename: _Member(i.file_size, i.compress_size, _zip_offset(path, i)) for i in infos}
        _check_members(path, members)
        args, metadata = (_json(path, name, archive.read(name)) for name in MEMBERS[:2])
        weights = members["model.pt"]
        if weights.offset is None:  # compressed (not as PhysicsNeMo writes it, within MAX_RATIO)
            with archive.open("model.pt") as stream:
                return Saved(path, args, metadata, _tensors(path, stream, weights.size))
    with open(path, "rb") as raw:
        return Saved(path, args, metadata, _tensors(path, _Window(raw, weights.offset, weights.size), weights.size))


def _zip_offset(path: Path, info: zipfile.ZipInfo) -> int | None:
    """Where a stored (uncompressed) member's bytes start: after its local header."""
    if info.compress_type != zipfile.ZIP_STORED:
        return None
    with open(path, "rb") as raw:
        raw.seek(info.header_offset)
        local = raw.read(30)
    if local[:4] != b"PK\x03\x04":
        raise MdlusError(f"{path}: corrupt zip member {info.filename}")
    return info.header_offset + 30 + int.from_bytes(local[26:28], "little") + int.from_bytes(local[28:30], "little")


def _read_tar(path: Path) -> Saved:
    try:
        archive = tarfile.open(path, "r:")
    except tarfile.ReadError as err:
        raise MdlusError(f"{path}: a compressed tar archive; PhysicsNeMo's tar .mdlus files are not") from err
    with archive:
        entries = {m.name.removeprefix("./"): m for m in archive.getmembers()}
        odd = [n for n in MEMBERS if n in entries and not entries[n].isfile()]
        if odd:
            raise MdlusError(f"{path}: {odd} are not plain files in the archive")
        members = {n: _Member(m.size, m.size, m.offset_data) for n, m in entries.items() if m.isfile()}
        _check_members(path, members)
        args, metadata = (_json(path, n, archive.extractfile(entries[n]).read()) for n in MEMBERS[:2])
    weights = members["model.pt"]
    with open(path, "rb") as raw:
        return Saved(path, args, metadata, _tensors(path, _Window(raw, weights.offset, weights.size), weights.size))


def _check_members(path: Path, members: dict[str, _Member]) -> None:
    """The three members are there, their sizes fit in the file and expand within bounds."""
    missing = [n for n in MEMBERS if n not in members]
    if missing:
        raise MdlusError(f"{path}: not a PhysicsNeMo .mdlus checkpoint ({', '.join(missing)} missing)")
    size = path.stat().st_size
    for name in MEMBERS:
        m = members[name]
        if name.endswith(".json") and m.size > MAX_JSON_BYTES:
            raise MdlusError(f"{path}: {name} declares {_bytes(m.size)}, more than the {_bytes(MAX_JSON_BYTES)} "
                             "a .mdlus's arguments take: not loaded")
        if m.offset is None and m.size > MAX_RATIO * max(m.stored, 1):
            raise MdlusError(f"{path}: {name} would expand {m.size / max(m.stored, 1):.0f} times, to {_bytes(m.size)} "
                             f"(at most {MAX_RATIO} times): refused before decompression")
        if m.offset is not None and (m.stored != m.size or m.offset + m.size > size):
            raise MdlusError(f"{path}: {name} declares {_bytes(m.size)} beyond the end of the file (truncated)")


class _Window(io.RawIOBase):
    """Bytes ``[start, start + size)`` of an open file, as a file (an uncompressed member, for torch.load)."""

    def __init__(self, raw, start: int, size: int):
        super().__init__()
        self.raw, self.start, self.size, self.position = raw, start, size, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self.position

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.position, 2: self.size}[whence]
        self.position = min(max(base + offset, 0), self.size)
        return self.position

    def readinto(self, buffer) -> int:
        n = min(len(buffer), self.size - self.position)
        self.raw.seek(self.start + self.position)
        got = self.raw.readinto(memoryview(buffer)[:n])
        self.position += got
        return got


def _tensors(path: Path, stream, size: int) -> dict[str, tuple[tuple[int, ...], int]]:
    """Shape and bytes of each tensor of ``model.pt`` (``size`` bytes), read on the meta device:
    torch reads the pickle, not the data, and ``weights_only`` builds nothing but tensors."""
    state = torch.load(stream, map_location="meta", weights_only=True)
    if not isinstance(state, dict):
        raise MdlusError(f"{path}: model.pt holds a {type(state).__name__}, not a state dict")
    tensors, storages = {}, {}
    for key, value in state.items():
        if not isinstance(value, torch.Tensor):
            continue
        storage = value.untyped_storage()
        storages[storage._cdata] = storage.nbytes()  # one entry per storage shared by several tensors
        last = value.storage_offset() + sum((n - 1) * s for n, s in zip(value.shape, value.stride()))
        if value.numel() and (last + 1) * value.element_size() > storage.nbytes():
            raise MdlusError(f"{path}: model.pt's {key} reaches beyond its storage (damaged or forged)")
        tensors[str(key)] = (tuple(value.shape), value.numel() * value.element_size())
    if sum(storages.values()) > size:
        raise MdlusError(f"{path}: model.pt declares {_bytes(sum(storages.values()))} of weights, the file "
                         f"holds {_bytes(size)} (truncated or forged)")
    return tensors


# ------------------------------------------------------------------ the arguments
def _json(path: Path, name: str, data: bytes) -> dict:
    try:
        value = json.loads(data.decode("utf-8"))  # NaN and Infinity parse; argument_problem refuses NaN
    except (UnicodeDecodeError, ValueError, RecursionError) as err:
        raise MdlusError(f"{path}: {name} is not valid JSON ({_first_line(err)})") from err
    if not isinstance(value, dict):
        raise MdlusError(f"{path}: {name} holds a {type(value).__name__}, not an object")
    problem = argument_problem(value, name)
    if problem:
        raise MdlusError(f"{path}: {problem}; not a file this package loads (damaged or edited)")
    return value


def argument_problem(value, where: str, depth: int = 0) -> str | None:
    """What is out of bounds in a JSON value (``None``: nothing): NaN (``Infinity`` is allowed:
    PhysicsNeMo's EDM nets save ``sigma_max=inf``), integers beyond int32, strings over
    :data:`MAX_STRING` characters, lists or objects over :data:`MAX_ITEMS` items, nesting over
    :data:`MAX_NESTING`, and grids (:data:`GRID_ARGUMENTS`) over :data:`MAX_AXIS` / :data:`MAX_CELLS`."""
    if depth > MAX_NESTING:
        return f"{where} nests deeper than {MAX_NESTING} levels"
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        return f"{where}={value} is beyond +-{MAX_INT}" if abs(value) > MAX_INT else None
    if isinstance(value, float):
        return f"{where} is NaN" if math.isnan(value) else None
    if isinstance(value, str):
        return f"{where} is a string of {len(value)} characters (at most {MAX_STRING})" \
            if len(value) > MAX_STRING else None
    if len(value) > MAX_ITEMS:
        return f"{where} holds {len(value)} items (at most {MAX_ITEMS})"
    items = value.items() if isinstance(value, dict) else enumerate(value)
    for key, item in items:
        inner = f"{where}.{key}" if isinstance(value, dict) else f"{where}[{key}]"
        problem = argument_problem(item, inner, depth + 1) or (
            _grid_problem(item, inner) if isinstance(value, dict) and key in GRID_ARGUMENTS else None)
        if problem:
            return problem
    return None


def _grid_problem(value, where: str) -> str | None:
    """A grid argument (``[H, W]`` or one side) of whole sides of 1 to :data:`MAX_AXIS` cells, at most
    :data:`MAX_CELLS` in all: the grid sizes buffers a constructor computes before any weight exists."""
    sides = value if isinstance(value, list) else [value, value]
    if not sides or not all(isinstance(s, int) and not isinstance(s, bool) and 1 <= s <= MAX_AXIS for s in sides):
        return f"{where}={value}: each side must be a whole number of 1 to {MAX_AXIS} cells"
    if math.prod(sides) > MAX_CELLS:
        return f"{where}={value}: {math.prod(sides)} cells, more than {MAX_CELLS}"
    return None


# ------------------------------------------------------------------ the class
def _resolve(path, wanted) -> type:
    """A class the caller loads: itself, or a name's entry of PhysicsNeMo's registry when it is ours."""
    if isinstance(wanted, type):
        return wanted
    cls = registered(wanted)
    if cls is None:
        raise MdlusError(f"{path}: PhysicsNeMo's model registry has no entry {wanted} of PhysicsNeMo or "
                         "physicsnemo-climax (another installed package registers that name?)")
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
        ours = dist.lower().replace("_", "-") in TRUSTED_DISTRIBUTIONS and \
            entry.module.split(".")[0] in TRUSTED_MODULES[:2]
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
    if not isinstance(entry, dict) or not all(isinstance(entry.get(k), str) for k in ("__name__", "__module__")) \
            or not isinstance(entry.get("__args__"), dict):
        raise MdlusError(f"{saved.path}: args.json lacks __name__, __module__ or __args__ (not a PhysicsNeMo .mdlus)")
    name, module = entry["__name__"], entry["__module__"]
    if module.split(".")[0] not in TRUSTED_MODULES:
        raise MdlusError(f"{saved.path}: args.json names class {name} from module {module!r}, neither PhysicsNeMo's "
                         "nor physicsnemo-climax's; a .mdlus never makes this package import a module")
    return name, module


def _nested_class(saved: Saved, key: str) -> type:
    """The class of a nested module entry: PhysicsNeMo resolves it by name, so the registry entry must be ours."""
    name, module = _named(saved, saved.args.get(key))
    cls = registered(name)
    if cls is None:
        raise MdlusError(f"{saved.path}: nested module {key} is a {name} ({module}), not a model PhysicsNeMo's "
                         "registry holds for PhysicsNeMo or physicsnemo-climax")
    return cls


def _check_arguments(saved: Saved, cls: type) -> None:
    """Arguments the class's constructor uses before any weight exists, against the file (its hook)."""
    hook = getattr(cls, "saved_layout_problem", None)
    try:
        problem = hook(saved.args["__args__"], saved.tensors) if hook else None
    except Exception as err:  # arguments of the wrong kind (a list where a dict belongs)
        problem = f"arguments it cannot read ({type(err).__name__}: {_first_line(err)})"
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
    holds = f"{list(held[0])} ({_bytes(held[1])})" if held else "no such tensor"
    raise MdlusError(
        f"{saved.path}: its arguments (args.json) imply {key} of shape {list(shape)} ({_bytes(implied[key][1])}), "
        f"the file holds {holds}; {_bytes(sum(n for _, n in implied.values()))} of weights in all for "
        f"{_bytes(sum(n for _, n in saved.tensors.values()))} in the file: damaged or edited, not loaded")


def _implied(saved: Saved, cls: type, overrides: dict) -> dict[str, tuple[tuple[int, ...], int]]:
    """Shape and bytes of each tensor of the model the arguments build (on the meta device)."""
    budget = 8 * len(saved.tensors) + 1024  # a state dict entry costs a few registrations (modules too)
    args = _arguments(saved, cls, saved.args, "")
    if overrides:
        cls._override_args(args, dict(overrides))  # PhysicsNeMo's rule: only _overridable_args (ValueError)
    if args.get("use_apex_gn"):  # apex's GroupNorm, a CUDA extension, holds the weight and bias torch's does
        args["use_apex_gn"] = False
    try:
        with warnings.catch_warnings(), torch.device("meta"), _registrations(saved.path, budget):
            warnings.simplefilter("ignore")  # PhysicsNeMo warns again when it loads the file
            model = cls(**args)
    except MdlusError:
        raise
    except Exception as err:  # arguments the class refuses
        raise MdlusError(f"{saved.path}: {cls.__name__} cannot be built from its args.json "
                         f"({type(err).__name__}: {_first_line(err)})") from err
    return {k: (tuple(v.shape), v.numel() * v.element_size()) for k, v in model.state_dict().items()}


def _arguments(saved: Saved, cls: type, entry: dict, prefix: str) -> dict:
    """Constructor arguments of an entry as PhysicsNeMo reads them: older file versions mapped by the
    class, nested modules built first (on the meta device, as the caller runs)."""
    args = dict(entry["__args__"])
    version = saved.metadata.get(f"{prefix}{'.' if prefix else ''}mdlus_file_version", cls.__model_checkpoint_version__)
    if version != cls.__model_checkpoint_version__:
        if version not in cls.__supported_model_checkpoint_version__:
            raise MdlusError(f"{saved.path}: file version {version} of {cls.__name__} is not one this "
                             "PhysicsNeMo reads")
        args = cls._backward_compat_arg_mapper(version, args)
    for name, value in args.items():
        if isinstance(value, str) and value.startswith(NESTED):
            inner = _nested_class(saved, value)
            args[name] = inner(**_arguments(saved, inner, saved.args[value], value))
    return args


@contextmanager
def _registrations(path: Path, budget: int):
    """Stop building a model once it has registered ``budget`` modules, parameters and buffers
    (arguments asking for a million blocks stop here, not after the million)."""
    count = [0]

    def hook(*args):
        count[0] += 1
        if count[0] > budget:
            raise MdlusError(f"{path}: its arguments build more than {budget} modules and tensors for a file of "
                             f"{(budget - 1024) // 8} tensors: damaged or edited, not loaded")

    handles = [torch_module.register_module_module_registration_hook(hook),
               torch_module.register_module_parameter_registration_hook(hook),
               torch_module.register_module_buffer_registration_hook(hook)]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _bytes(n: int) -> str:
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__
