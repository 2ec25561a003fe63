# SPDX-License-Identifier: Apache-2.0
"""Weights by name: a small catalogue of published files, one cache, verified downloads.

Everywhere a weights file is named (``init=``, ``climax convert``, the
Earth2Studio wrappers) the name may be

* a local path (used as it is);
* a catalogue name (:data:`CATALOGUE`, e.g. ``climax-5.625deg``);
* ``hf://OWNER/REPO/FILE``: a file of a Hugging Face model repository, from
  ``$HF_ENDPOINT`` (the hub client's own variable) or ``https://huggingface.co``;
* ``ngc://models/ORG[/TEAM]/NAME@VERSION/FILE``: a file of a public NVIDIA NGC
  model, from NGC's public file address (:func:`ngc_url`; ``$CLIMAX_NGC_ENDPOINT``
  moves the host);
* ``https://...`` or ``http://...``;
* ``s3://...``, ``gs://...`` or any other fsspec URL.

A catalogue entry may name a file inside a published zip archive (its
``member``): the archive is downloaded and verified as any file, and the member
is extracted once beside it, its SHA-256 recorded and checked at every use.
:class:`WeightsPackage` is the Earth2Studio-style package of a published folder
(``resolve(file)``), resolved through the same cache.

A remote file is downloaded once into the cache (``$CLIMAX_CACHE``, default
``~/.cache/physicsnemo_climax``; a task's ``weights_cache`` key before both;
:func:`cache_dir`), into a ``.partial`` file
that an interrupted download resumes (HTTP ranges) or restarts, and is renamed
into place only when whole. Its SHA-256 is checked against the catalogue's
pinned one, or, where none is published, recorded on the first download and
checked on every later use: a file whose hash does not match is refused and
never loaded. Offline, the error names the URL and the path to put the file at
by hand. Loading itself stays ``torch.load(weights_only=True)``.

Written on the standard library (``urllib``) rather than ``huggingface_hub``
so that the package needs no hub client, and one code path serves every
HTTP host; fsspec reads the cloud buckets, as the data layer does.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import os
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path, PurePosixPath

from .errors import DataError, UnknownName
from .files import sha256, write_atomic


@dataclass(frozen=True)
class Published:
    """A published weights file.

    Attributes
    ----------
    url : str
        Where it is (any form :func:`local_file` reads).
    source, license : str
        Who published it, under which licence.
    variables, grid : str
        What the model expects: its input variables and its grid.
    sha256 : str or None
        The file's SHA-256 where published (``None``: recorded on the first download).
    member : str or None
        A file inside the zip archive at ``url`` (``None``: the file at ``url`` itself).
    """

    url: str
    source: str
    license: str
    variables: str
    grid: str
    sha256: str | None = None
    member: str | None = None


def official_climax(resolution: str, grid: str) -> Published:
    """One of the two checkpoints the ClimaX authors published on Hugging Face (no SHA-256 published)."""
    return Published(
        url=f"hf://tungnd/climax/{resolution}.ckpt",
        source="ClimaX (Nguyen et al. 2023), pretrained on five CMIP6 models",
        license="MIT",
        variables="the paper's 48 ERA5 variables (DEFAULT_VARIABLES)",
        grid=grid,
    )


#: The CorrDiff Taiwan package on NGC, as Earth2Studio's ``CorrDiffTaiwan.load_default_package``
#: names it (``ngc://models/nvidia/modulus/corrdiff_inference_package@1``) and its ``load_model``
#: reads it: one zip holding ``checkpoints/{regression,diffusion}.mdlus`` and the CWB Zarr
#: (statistics, ``XLAT``/``XLONG``) under ``corrdiff_inference_package/``.
CORRDIFF_TAIWAN = "ngc://models/nvidia/modulus/corrdiff_inference_package@1/corrdiff_inference_package.zip"


def corrdiff_taiwan(member: str | None = None) -> Published:
    """The CorrDiff Taiwan package (no SHA-256 published), or one file inside it."""
    return Published(
        url=CORRDIFF_TAIWAN,
        source="CorrDiff (Mardani et al. 2023), ERA5 25 km -> CWA WRF 2 km over Taiwan; NVIDIA NGC",
        license="see its NGC page, catalog.ngc.nvidia.com/orgs/nvidia/teams/modulus/models/corrdiff_inference_package",
        variables="12 ERA5 inputs (tcwv; z, t, u, v at 500 and 850 hPa; t2m, u10m, v10m) -> "
        "maximum radar reflectivity, t2m, u10m, v10m",
        grid="448 x 448 (2 km, curvilinear XLAT/XLONG); inputs interpolated to the same grid",
        member=member,
    )


#: The published weights this package knows by name.
CATALOGUE: dict[str, Published] = {
    "climax-5.625deg": official_climax("5.625deg", "32 x 64 (5.625 deg), patch 2"),
    "climax-1.40625deg": official_climax("1.40625deg", "128 x 256 (1.40625 deg), patch 4"),
    "corrdiff-taiwan": corrdiff_taiwan(),
    "corrdiff-taiwan-regression": corrdiff_taiwan("corrdiff_inference_package/checkpoints/regression.mdlus"),
    "corrdiff-taiwan-diffusion": corrdiff_taiwan("corrdiff_inference_package/checkpoints/diffusion.mdlus"),
}

#: Attempts of one download before it fails, and the first wait between them (doubled each time).
ATTEMPTS, BACKOFF_S = 4, 0.5
CHUNK = 2**20


#: The caches :func:`cache_at` set, innermost last (a task's ``weights_cache``).
_CACHES: list[Path] = []


def cache_dir() -> Path:
    """Where downloads go: the ``weights_cache`` of the task running (:func:`cache_at`), else
    ``$CLIMAX_CACHE``, else ``~/.cache/physicsnemo_climax``."""
    if _CACHES:
        return _CACHES[-1]
    return Path(os.environ.get("CLIMAX_CACHE") or Path.home() / ".cache" / "physicsnemo_climax")


@contextmanager
def cache_at(path: str | Path | None) -> Iterator[None]:
    """Within the block, downloads go to ``path`` (``None``: where they would go anyway)."""
    if path is None:
        yield
        return
    _CACHES.append(Path(path))
    try:
        yield
    finally:
        _CACHES.pop()


def is_remote(name: str) -> bool:
    """Whether ``name`` is a catalogue name or a URL rather than a local path."""
    return str(name) in CATALOGUE or "://" in str(name)


def download_url(url: str) -> str:
    """The URL to read: ``hf://OWNER/REPO/FILE`` becomes the hub's ``resolve/main`` address,
    ``ngc://models/...`` NGC's public file address (:func:`ngc_url`)."""
    if url.startswith("ngc://"):
        return ngc_url(url)
    if not url.startswith("hf://"):
        return url
    parts = url[len("hf://") :].split("/", 2)
    if len(parts) != 3 or not all(parts):
        raise DataError(f"{url}: write hf://OWNER/REPO/FILE")
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    return f"{endpoint}/{parts[0]}/{parts[1]}/resolve/main/{parts[2]}"


def ngc_url(url: str) -> str:
    """NGC's public address of ``ngc://models/ORG[/TEAM]/NAME@VERSION/FILE``:
    ``https://api.ngc.nvidia.com/v2/models/ORG[/TEAM]/NAME/versions/VERSION/files/FILE``.

    The address is the one the public (unauthenticated) branch of Earth2Studio's
    ``NGCModelFileSystem`` (``earth2studio/models/auto/ngc.py``) downloads a file of a
    public model from; a private model needs NGC's authenticated API, which is not
    spoken here (download it with the NGC CLI and give its path).
    ``$CLIMAX_NGC_ENDPOINT`` replaces ``https://api.ngc.nvidia.com`` (a mirror, the tests).

    Raises
    ------
    DataError
        For a URL of another form, showing the form.
    """
    body = url[len("ngc://models/") :] if url.startswith("ngc://models/") else ""
    model, _, rest = body.partition("@")
    version, _, file = rest.partition("/")
    owners = model.split("/")
    if not (2 <= len(owners) <= 3 and all(owners) and version and file and not file.endswith("/")):
        raise DataError(f"{url}: write ngc://models/ORG[/TEAM]/NAME@VERSION/FILE")
    endpoint = os.environ.get("CLIMAX_NGC_ENDPOINT", "https://api.ngc.nvidia.com").rstrip("/")
    return f"{endpoint}/v2/models/{'/'.join(owners)}/versions/{version}/files/{file}"


def cached_path(url: str) -> Path:
    """Where ``url`` lives in the cache: a folder per URL (its hash), the file's own name.

    Raises
    ------
    DataError
        For a URL whose path names no file (it ends in ``/``, ``.`` or ``..``): nothing is
        written outside its folder of the cache.
    """
    key = hashlib.sha256(url.encode()).hexdigest()[:16]
    path = urllib.parse.urlsplit(url).path  # after the host (the owner of an hf:// name)
    name = path.rsplit("/", 1)[-1]
    if name in ("", ".", ".."):
        raise DataError(f"{url}: the URL names no file to download")
    return cache_dir() / "weights" / key / name


def local_file(name: str | Path, option: str = "init") -> Path:
    """The local file of ``name`` (see the module's docstring), downloaded and verified when remote.

    A URL that a catalogue entry publishes is checked against that entry's SHA-256, as its name is.

    Raises
    ------
    UnknownName
        For a name that is neither a file, a URL nor in the catalogue (naming ``option``).
    DataError
        For a download that fails (naming the URL and where to put the file by hand), or a
        file whose SHA-256 is not the pinned or recorded one.
    """
    text = str(name)
    if not is_remote(text):
        if not Path(text).exists() and "/" not in text and "." not in text:
            raise UnknownName(f"{option}={text}: not a file, and not a catalogue name {sorted(CATALOGUE)}")
        return Path(text)
    entry = CATALOGUE.get(text)
    url = entry.url if entry else text
    pinned = next((e.sha256 for e in CATALOGUE.values() if e.url == url and e.sha256), None)
    target = cached_path(url)
    if not target.exists():
        fetch(url, target, pinned)
    verify(target, url, pinned)
    return extracted(target, url, entry.member) if entry and entry.member else target


def fetch(url: str, target: Path, pinned: str | None = None) -> None:
    """Download ``url`` to ``target`` through ``target.partial``, resuming or restarting after a
    failure, up to :data:`ATTEMPTS` times; ``target`` appears only when whole and, with a ``pinned``
    SHA-256, only when it matches (a mismatch is deleted and refused)."""
    target.parent.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".partial")
    copy = _copy_fsspec if url.split("://")[0] not in ("hf", "ngc", "http", "https") else _copy_http
    last = None
    for attempt in range(ATTEMPTS):
        try:
            copy(download_url(url), partial)
            last = None
            break
        except (OSError, http.client.HTTPException) as err:
            last = err
            if isinstance(err, urllib.error.HTTPError) and err.code in (401, 403, 404):
                break  # the server said no: another try says the same
            time.sleep(BACKOFF_S * 2**attempt)
    if last is not None:
        raise DataError(
            f"cannot download {url} ({last}); without a network, download it elsewhere and put it at "
            f"{target} (its SHA-256 is checked when published, recorded otherwise)"
        ) from last
    if pinned is not None and sha256(partial) != pinned:
        partial.unlink()
        raise DataError(f"{url}: the downloaded file's SHA-256 is not the published {pinned}; refused and deleted")
    os.replace(partial, target)


def _copy_http(url: str, partial: Path) -> None:
    """Append ``url``'s bytes to ``partial``, asking only for those it lacks (an HTTP range); a
    server that ignores the range sends the whole file, which replaces the partial one."""
    have = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=60)
    except urllib.error.HTTPError as err:
        if err.code == 416 and have:  # the partial file is as long as the file, or longer: start again
            partial.unlink()
            raise http.client.IncompleteRead(b"") from err
        raise
    with response:
        if have and response.status != 206:
            have = 0
        expected = response.headers.get("Content-Length")
        with open(partial, "ab" if have else "wb") as out:
            _stream(response.read, out)
    if expected is not None and partial.stat().st_size != have + int(expected):
        raise http.client.IncompleteRead(b"", int(expected))  # the connection ended early: resume


def _copy_fsspec(url: str, partial: Path) -> None:
    """Copy ``url`` (an fsspec URL: ``s3://``, ``gs://``, ...) to ``partial`` whole (read anonymously)."""
    import fsspec

    with fsspec.open(url, "rb", anon=True) as source, open(partial, "wb") as out:
        shutil.copyfileobj(source, out, CHUNK)


def _stream(read: Callable[[int], bytes], out) -> None:
    for block in iter(lambda: read(CHUNK), b""):
        out.write(block)


def extracted(archive: Path, url: str, member: str) -> Path:
    """The file ``member`` of the zip ``archive`` (downloaded from ``url``, verified), extracted once
    into ``ARCHIVE.d/`` beside it through a ``.partial`` file; its SHA-256 is recorded then and
    checked at every use (:func:`verify`), as a downloaded file's is.

    Raises
    ------
    DataError
        For a member outside the archive's folder (absolute, ``..``), one the archive lacks, or
        an archive that is not a zip file.
    """
    parts = PurePosixPath(member).parts
    if not parts or PurePosixPath(member).is_absolute() or ".." in parts:
        raise DataError(f"{url}: {member!r} is not a file inside the archive")
    target = archive.with_name(archive.name + ".d").joinpath(*parts)
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".partial")
        try:
            with zipfile.ZipFile(archive) as zipped, zipped.open(member) as source, open(partial, "wb") as out:
                shutil.copyfileobj(source, out, CHUNK)
        except KeyError as err:
            raise DataError(f"{url} ({archive}): the archive has no {member}") from err
        except zipfile.BadZipFile as err:
            raise DataError(f"{url} ({archive}): not a zip archive ({err})") from err
        os.replace(partial, target)
    verify(target, f"{url}#{member}", None)
    return target


class WeightsPackage:
    """A published folder of weights, Earth2Studio's way: ``resolve(file)`` gives the local path of
    one of its files, fetched into this package's cache and verified (:func:`local_file`).

    It stands in for ``earth2studio.models.auto.Package`` where a model of this package names its
    default weights (``load_default_package``); models read a package only through ``resolve``,
    so an Earth2Studio ``Package`` works where this one does.

    Parameters
    ----------
    root : str
        The folder: a URL that :func:`local_file` reads with ``/FILE`` appended
        (``hf://tungnd/climax``, ``ngc://models/ORG/TEAM/NAME@VERSION``, ``https://...``), or a
        local folder.
    """

    def __init__(self, root: str | Path):
        self.root = str(root).rstrip("/")

    def __repr__(self) -> str:
        return f"WeightsPackage({self.root!r})"

    def resolve(self, file: str) -> str:
        """The local path of ``file`` of the package (downloaded and verified when remote)."""
        return str(local_file(f"{self.root}/{file}", "package"))


def record_path(target: Path) -> Path:
    """The record beside a cached file: its URL, SHA-256, size and modification time."""
    return target.with_name(target.name + ".json")


def verify(target: Path, url: str, pinned: str | None) -> str:
    """Check the cached ``target`` of ``url`` against the ``pinned`` SHA-256, or the one recorded at its
    first use (recording it then); returns the SHA-256.

    The file is hashed again only when its size or modification time changed since the record.

    Raises
    ------
    DataError
        When the hash differs, naming the file, both hashes and how to download it again.
    """
    stat, record = target.stat(), record_path(target)
    known = json.loads(record.read_text()) if record.exists() else {}
    if known.get("size") == stat.st_size and known.get("mtime_ns") == stat.st_mtime_ns:
        digest = known["sha256"]
    else:
        digest = sha256(target)
    want = pinned or known.get("sha256")
    if want is not None and digest != want:
        raise DataError(
            f"{target} (from {url}): SHA-256 {digest}, expected {want}; the file is refused. Delete it "
            "and run `climax weights fetch` again"
        )
    write_atomic(record, json.dumps({"url": url, "sha256": digest, "size": stat.st_size, "mtime_ns": stat.st_mtime_ns}))
    return digest


def catalogue_rows() -> list[dict]:
    """The catalogue as rows (``climax weights list``): name, what it is, and whether it is cached."""
    return [{"name": n, **asdict(e), "cached": cached_path(e.url).exists()} for n, e in CATALOGUE.items()]
