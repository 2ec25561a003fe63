# SPDX-License-Identifier: Apache-2.0
"""Files from elsewhere load as data only (issue 26, part 2): the fault suite's probes.

``.mdlus`` checkpoints: a class or module named by ``args.json`` outside the
allow-list is never imported (at every load site: forecast, ``init=``,
``climax convert``, CorrDiff generation, nested modules, third-party registry
names); arguments out of bounds or implying more weights than the file holds
are refused by name before anything is built; a file of another class is a
one-line error; a bad newest checkpoint in a run folder makes forecast,
evaluation, ClimateBench evaluation and the Earth2Studio wrapper fall back to
the previous one with a warning, changing no file. Stores: shards are checked
(declared sizes, checksum, compression) before anything is decompressed;
``lat.npy``, ``lon.npy``, statistics and climatologies are read header first.
Legitimate files (our runs, official-layout checkpoints, upstream CorrDiff
files, legacy tar ``.mdlus``, compressed stores) still load as before.
"""

import io
import json
import logging
import shutil
import tarfile
import uuid
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
import xarray as xr
from conftest import tiny_climax
from faults import climax, forecast_args, initial_condition, settings, snapshot
from physicsnemo.core import ModelRegistry, Module
from test_corrdiff_checkpoints import UPSTREAM, saved, upstream_net
from test_official_checkpoint import official_like_state, write_ckpt

from physicsnemo_climax.config import load_config, load_run_config
from physicsnemo_climax.data import ShardStore
from physicsnemo_climax.downscaling import net_files
from physicsnemo_climax.downscaling.models import ClimaXRegression
from physicsnemo_climax.engine import checkpointing
from physicsnemo_climax.errors import CheckpointError, DataError
from physicsnemo_climax.forecasting import Run, evaluate
from physicsnemo_climax.models import DEFAULT_VARIABLES, ClimaX, read_weights

REG_KEY = "generation.io.reg_ckpt_filename"


# ------------------------------------------------------------------ helpers
def rewrite(path: Path, edit=None, compress: dict | None = None, extra: dict | None = None) -> Path:
    """Rewrite the ``.mdlus`` zip ``path``: ``edit(args)`` changes its parsed ``args.json`` in place,
    ``compress`` maps member names to a zip compression, ``extra`` replaces members' bytes."""
    with zipfile.ZipFile(path) as archive:
        files = {n: archive.read(n) for n in archive.namelist()}
    if edit is not None:
        args = json.loads(files["args.json"])
        edit(args)
        files["args.json"] = json.dumps(args).encode()
    files.update(extra or {})
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in files.items():
            archive.writestr(name, data, compress_type=(compress or {}).get(name, zipfile.ZIP_STORED))
    return path


def plant(run: Path, step: int, source: Path | None = None, edit=None, truncate: bool = False) -> Path:
    """Replace checkpoint ``step``'s model file of ``run`` (a copy of ``source``, ``edit``-ed args,
    or truncated) and fix its checksum, as someone who also rewrites the checksum file would."""
    files = checkpointing.files_of(run / "checkpoints", step)
    if source is not None:
        shutil.copy(source, files["model"])
    if edit is not None:
        rewrite(files["model"], edit)
    if truncate:
        files["model"].write_bytes(files["model"].read_bytes()[:3000])
    if files["checksums"].exists():
        sums = json.loads(files["checksums"].read_text())
        sums[files["model"].name] = checkpointing.sha256(files["model"])
        files["checksums"].write_text(json.dumps(sums))
    return files["model"]


def copy_of(file: Path, folder: Path, name: str) -> Path:
    return Path(shutil.copy(file, folder / name))


def one_line(code, err) -> str:
    """The error line of a failed ``climax`` call, checked to be one line without a traceback."""
    assert code == 1 and len(err) == 2 and "Traceback" not in "\n".join(err), err
    return err[0]


@pytest.fixture
def foreign(tmp_path, monkeypatch):
    """A module on ``sys.path`` that creates a marker file when imported: ``(name, marker)``."""
    name = f"foreign_{uuid.uuid4().hex[:8]}"
    folder = tmp_path / "site"
    folder.mkdir()
    marker = tmp_path / f"{name}.imported"
    (folder / f"{name}.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    monkeypatch.syspath_prepend(str(folder))
    return name, marker


def naming(module: str, name: str = "Foreign"):
    def edit(args):
        args.update({"__name__": name, "__module__": module})

    return edit


@pytest.fixture(scope="module")
def climax_file(trained, tmp_path_factory) -> Path:
    """A copy of the trained run's newest model file (a ClimaX)."""
    return copy_of(
        checkpointing.files_of(trained / "checkpoints", 4)["model"], tmp_path_factory.mktemp("cx"), "climax.mdlus"
    )


@pytest.fixture(scope="module")
def corrdiff_file(tmp_path_factory) -> Path:
    """A tiny CorrDiff regression net as upstream's recipe saves it."""
    return saved(upstream_net("regression"), tmp_path_factory.mktemp("cd") / "regression.mdlus")


def forecast_cli(capsys, run: Path, store: Path, tmp_path: Path):
    initial_condition(store).to_netcdf(tmp_path / "ic.nc")
    return climax(capsys, *forecast_args(run, tmp_path / "ic.nc", tmp_path / "out.nc", "12h"))


@pytest.fixture
def no_construction(monkeypatch):
    """Fails the test if PhysicsNeMo is asked to build or load a model (records the calls)."""
    calls = []

    def refuse(cls, *args, **kwargs):
        calls.append(args)
        raise AssertionError("Module.from_checkpoint was called")

    monkeypatch.setattr(Module, "from_checkpoint", classmethod(refuse))
    return calls


# ------------------------------------------------------------------ .mdlus: modules never imported
@pytest.mark.parametrize("site", ["forecast", "init", "convert", "corrdiff", "nested", "registry"])
def test_a_module_named_by_args_json_is_never_imported(
    capsys, site, foreign, store, run, climax_file, corrdiff_file, tmp_path, monkeypatch
):
    module, marker = foreign
    if site == "forecast":  # both checkpoints of the run name the module
        for step in (2, 4):
            plant(run, step, edit=naming(module))
        line = one_line(*forecast_cli(capsys, run, store, tmp_path))
        assert "ClimaX.0.4.mdlus" in line and "Foreign" in line and module in line
    elif site in ("init", "convert"):
        file = rewrite(copy_of(climax_file, tmp_path, "init.mdlus"), naming(module))
        argv = (
            ["train", *settings(store, tmp_path / "new_run"), f"init={file}"]
            if site == "init"
            else ["convert", str(file), str(tmp_path / "out.mdlus")]
        )
        line = one_line(*climax(capsys, *argv))
        assert "init.mdlus" in line and "Foreign" in line and module in line
        assert not (tmp_path / "out.mdlus").exists()
    elif site == "corrdiff":  # a class name CorrDiff generation loads, from another module
        file = rewrite(copy_of(corrdiff_file, tmp_path, "reg.mdlus"), naming(module, "ClimaXRegression"))
        with pytest.raises(CheckpointError, match=rf"reg.mdlus.*ClimaXRegression.*{module}"):
            net_files.load_net(file, REG_KEY, "regression")
    elif site == "nested":  # a nested module entry (PhysicsNeMo builds those first)
        prefix = "__physicsnemo.Module__"

        def nest(args):
            args["__args__"]["lat"] = f"{prefix}.lat"
            args[f"{prefix}.lat"] = {"__name__": "Foreign", "__module__": module, "__args__": {}}

        file = rewrite(copy_of(climax_file, tmp_path, "nested.mdlus"), nest)
        with pytest.raises(ValueError, match=rf"nested.mdlus.*Foreign.*{module}"):
            read_weights(file)
    else:  # a name another installed package registers in PhysicsNeMo's model registry
        from importlib.metadata import EntryPoint

        registry = ModelRegistry()
        monkeypatch.setitem(
            registry._model_registry,
            "Foreign",
            EntryPoint(name="Foreign", value=f"{module}:Foreign", group="physicsnemo.models"),
        )
        file = rewrite(copy_of(climax_file, tmp_path, "registered.mdlus"), naming("physicsnemo.models.foreign"))
        with pytest.raises(ValueError, match=r"registered.mdlus.*Foreign"):
            read_weights(file)
    assert not marker.exists(), "the module named by args.json was imported"


# ------------------------------------------------------------------ .mdlus: sizes and bounds
def huge_climax(args):
    args["__args__"]["embed_dim"] = 458752  # blocks.0.attn.qkv.weight alone: 3 D x D float32, 2.5 TB


def huge_unet(args):
    args["__args__"]["model_channels"] = 2**17


@pytest.mark.parametrize("site", ["forecast", "init", "corrdiff"])
def test_arguments_implying_more_than_the_file_holds_are_refused_before_any_allocation(
    capsys, site, store, run, climax_file, corrdiff_file, tmp_path, no_construction
):
    if site == "forecast":
        for step in (2, 4):
            plant(run, step, edit=huge_climax)
        line = one_line(*forecast_cli(capsys, run, store, tmp_path))
        assert "ClimaX.0.4.mdlus" in line and "ClimaX.0.2.mdlus" in line
    elif site == "init":
        file = rewrite(copy_of(climax_file, tmp_path, "huge.mdlus"), huge_climax)
        with pytest.raises(ValueError) as err:
            read_weights(file)
        line = str(err.value)
        assert "huge.mdlus" in line
    else:
        file = rewrite(copy_of(corrdiff_file, tmp_path, "huge.mdlus"), huge_unet)
        with pytest.raises(CheckpointError) as err:
            net_files.load_net(file, REG_KEY, "regression")
        line = str(err.value)
        assert "huge.mdlus" in line
    assert "TB" in line and "the file holds" in line  # both sizes, by name
    assert not no_construction


@pytest.mark.parametrize(
    "change, match",
    [
        ({"drop_path": float("nan")}, "drop_path.*NaN"),
        ({"img_size": [8, 2**40]}, "img_size"),
        ({"img_size": [-8, 16]}, "img_size"),
        ({"depth": 2**31 - 1}, "depth"),
        ({"variables": "x" * (2**20)}, "variables"),
    ],
    ids=["nan", "huge_grid", "negative_grid", "huge_depth", "long_string"],
)
def test_argument_values_out_of_bounds_are_refused_by_name(climax_file, tmp_path, no_construction, change, match):
    file = rewrite(copy_of(climax_file, tmp_path, "bad.mdlus"), lambda args: args["__args__"].update(change))
    with pytest.raises(ValueError, match=rf"bad.mdlus.*{match}"):
        read_weights(file)
    assert not no_construction


def test_a_compressed_args_json_bomb_is_refused_before_it_is_inflated(climax_file, tmp_path):
    with zipfile.ZipFile(climax_file) as archive:
        text = archive.read("args.json") + b" " * (64 * 2**20)  # still valid JSON
    file = rewrite(
        copy_of(climax_file, tmp_path, "bomb.mdlus"),
        extra={"args.json": text},
        compress={"args.json": zipfile.ZIP_DEFLATED},
    )
    assert file.stat().st_size < 2**20
    with pytest.raises(ValueError, match=r"bomb.mdlus.*args.json"):
        read_weights(file)


# ------------------------------------------------------------------ .mdlus: another class
def test_a_corrdiff_file_given_to_forecast_is_one_line(capsys, store, run, corrdiff_file, tmp_path):
    for step in (2, 4):
        plant(run, step, source=corrdiff_file)
    line = one_line(*forecast_cli(capsys, run, store, tmp_path))
    assert "ClimaX.0.4.mdlus" in line and "CorrDiffRegressionUNet" in line and "ClimaX" in line


def test_a_corrdiff_file_given_as_init_is_one_line(capsys, store, corrdiff_file, tmp_path):
    line = one_line(*climax(capsys, "train", *settings(store, tmp_path / "new_run"), f"init={corrdiff_file}"))
    assert "regression.mdlus" in line and "CorrDiffRegressionUNet" in line and "ClimaX" in line


def test_a_corrdiff_file_given_to_the_earth2studio_wrapper_names_it(store, corrdiff_file):
    pytest.importorskip("earth2studio")
    from physicsnemo_climax.earth2studio import ClimaXPrognostic

    with pytest.raises(ValueError, match=r"regression.mdlus.*CorrDiffRegressionUNet.*ClimaX"):
        ClimaXPrognostic.from_checkpoint(corrdiff_file, store)


@pytest.mark.parametrize("size", [["0", "0"], ["-2", "64"], ["5", "64"]])
def test_convert_with_an_impossible_grid_is_one_line(capsys, tmp_path, size):
    torch.manual_seed(0)
    source = tiny_climax(variables=list(DEFAULT_VARIABLES), img_size=(32, 64))
    ckpt = write_ckpt(tmp_path / "official.ckpt", official_like_state(source))
    line = one_line(
        *climax(capsys, "convert", str(ckpt), str(tmp_path / "out.mdlus"), "--num-heads", "4", "--img-size", *size)
    )
    assert "img-size" in line or "img_size" in line
    assert not (tmp_path / "out.mdlus").exists()


# ------------------------------------------------------------------ run folders: the previous checkpoint
def bad_newest(run: Path, kind: str, corrdiff_file: Path) -> None:
    if kind == "another_class":
        plant(run, 4, source=corrdiff_file)
    elif kind == "damaged_with_fixed_checksum":
        plant(run, 4, truncate=True)
    else:  # a run from before checksums: its loading is the check
        for step in (2, 4):
            checkpointing.files_of(run / "checkpoints", step)["checksums"].unlink()
        plant(run, 4, truncate=True)


KINDS = ["another_class", "damaged_with_fixed_checksum", "no_checksum_file"]


@pytest.mark.parametrize("kind", KINDS)
def test_forecast_falls_back_to_the_previous_checkpoint_and_changes_no_file(
    capsys, caplog, kind, store, run, corrdiff_file, tmp_path
):
    bad_newest(run, kind, corrdiff_file)
    before = snapshot(run)
    with caplog.at_level(logging.WARNING):
        code, err = forecast_cli(capsys, run, store, tmp_path)
    assert code == 0, err
    assert "checkpoint 4" in caplog.text and "ClimaX.0.4.mdlus" in caplog.text
    with xr.open_dataset(tmp_path / "out.nc") as out:
        assert out.attrs["checkpoint"].endswith("ClimaX.0.2.mdlus")
    assert snapshot(run) == before


@pytest.mark.parametrize("kind", KINDS)
def test_evaluation_falls_back_to_the_previous_checkpoint_and_changes_no_file(
    caplog, kind, run, corrdiff_file, tmp_path
):
    bad_newest(run, kind, corrdiff_file)
    before = snapshot(run)
    with caplog.at_level(logging.WARNING):
        evaluate(load_run_config(run, ["eval.leads=[12]", "eval.max_samples=2", f"eval.out_dir={tmp_path / 'ev'}"]))
    assert "checkpoint 4" in caplog.text and (tmp_path / "ev" / "scorecard.csv").exists()
    assert snapshot(run) == before


def test_the_earth2studio_wrapper_falls_back_too(caplog, run, corrdiff_file):
    pytest.importorskip("earth2studio")
    from physicsnemo_climax.earth2studio import ClimaXPrognostic

    bad_newest(run, "another_class", corrdiff_file)
    before = snapshot(run)
    with caplog.at_level(logging.WARNING):
        model = ClimaXPrognostic.from_run(run)
    assert "checkpoint 4" in caplog.text and type(model.model) is ClimaX
    assert snapshot(run) == before


def test_climatebench_evaluation_falls_back_too(caplog, corrdiff_file, tmp_path):
    from climatebench_files import write_climatebench

    from physicsnemo_climax.climate_projection import evaluate as evaluate_climatebench
    from physicsnemo_climax.tasks import train

    bench = write_climatebench(tmp_path / "bench")
    run = train(
        load_config(
            [
                f"data.root={bench}",
                f"run_dir={tmp_path / 'run'}",
                "task=climatebench",
                "data=climatebench",
                "model.img_size=[8,16]",
                "model.patch_size=2",
                "model.embed_dim=16",
                "model.depth=1",
                "model.num_heads=2",
                "task.history=3",
                "train.batch_size=8",
                "train.steps=4",
                "train.ckpt_every=2",
                "train.val_every=100",
                "train.progress=false",
                "train.num_workers=0",
                "task.targets=[tas]",
                "task.eval_years=[2030,2044]",
            ]
        )
    )
    plant(run, 4, source=corrdiff_file)
    before = snapshot(run)
    with caplog.at_level(logging.WARNING):
        evaluate_climatebench(load_run_config(run, [f"eval.out_dir={tmp_path / 'ev'}"]))
    assert "checkpoint 4" in caplog.text and (tmp_path / "ev" / "climatebench.csv").exists()
    assert snapshot(run) == before


def test_corrdiff_generation_from_a_run_folder_falls_back_too(caplog, corrdiff_file, tmp_path):
    folder = tmp_path / "reg_run" / "checkpoints"
    folder.mkdir(parents=True)
    for step in (2, 4):
        shutil.copy(corrdiff_file, folder / f"CorrDiffRegressionUNet.0.{step}.mdlus")
        torch.save({}, folder / f"checkpoint.0.{step}.pt")
    (folder / "CorrDiffRegressionUNet.0.4.mdlus").write_bytes(b"damaged")
    before = snapshot(tmp_path / "reg_run")
    with caplog.at_level(logging.WARNING):
        net = net_files.load_net(tmp_path / "reg_run", REG_KEY, "regression")
    assert "checkpoint 4" in caplog.text and "checkpoint 2" not in caplog.text  # step 2 loaded, 4 skipped
    assert isinstance(net, torch.nn.Module) and not net.training
    assert snapshot(tmp_path / "reg_run") == before


def test_resume_refuses_a_model_file_with_compressed_members(caplog, store, run):
    from faults import fit

    files = checkpointing.files_of(run / "checkpoints", 4)
    rewrite(files["model"], compress={"model.pt": zipfile.ZIP_DEFLATED})  # inflated on reading: never ours
    plant(run, 4)
    fit(store, run)
    assert "skipping checkpoint 4" in caplog.text and "compressed" in caplog.text
    assert (run / "checkpoints" / "skipped" / files["model"].name).exists()


def test_no_loadable_checkpoint_is_one_line_listing_each(capsys, store, run, tmp_path):
    for step in (2, 4):
        plant(run, step, truncate=True)
    line = one_line(*forecast_cli(capsys, run, store, tmp_path))
    assert "ClimaX.0.4.mdlus" in line and "ClimaX.0.2.mdlus" in line


# ------------------------------------------------------------------ stores
def write_bomb(path: Path, names, steps: int, grid=(8, 16)) -> None:
    """An ``.npz`` whose members are deflated zeros ``[steps, 1, H, W]`` float32, streamed (no big array)."""
    header = {"descr": "<f4", "fortran_order": False, "shape": (steps, 1, *grid)}
    zeros = bytes(2**20)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name in names:
            with archive.open(f"{name}.npy", "w", force_zip64=True) as member:
                np.lib.format.write_array_header_1_0(member, header)
                left = steps * grid[0] * grid[1] * 4
                while left:
                    member.write(zeros[: min(left, len(zeros))])
                    left -= min(left, len(zeros))


@pytest.fixture
def reads(monkeypatch):
    """The zip members whose arrays ``np.lib.format.read_array`` inflated during the test."""
    original, seen = np.lib.format.read_array, []

    def spy(fp, *args, **kwargs):
        if isinstance(fp, zipfile.ZipExtFile):
            seen.append(fp.name)
        return original(fp, *args, **kwargs)

    monkeypatch.setattr(np.lib.format, "read_array", spy)
    return seen


@pytest.mark.parametrize("manifest", ["with_checksums", "without_store_json"])
def test_a_zip_bomb_shard_is_refused_before_decompression(store, tmp_path, reads, manifest):
    copy = Path(shutil.copytree(store, tmp_path / "store"))
    if manifest == "without_store_json":  # an official-layout store: no checksums
        (copy / "store.json").unlink()
    shard = copy / "train" / "2000_0.npz"
    names = list(np.load(shard).files)
    write_bomb(shard, names, steps=80_000)  # 41 MB per variable inflated, about 40 kB on disk
    assert shard.stat().st_size < 2**20
    with pytest.raises(DataError, match="2000_0.npz"):
        for s in ShardStore(copy).shards("train"):
            s.array("2m_temperature")
    assert not reads, f"decompressed: {reads}"


def test_a_compressed_store_with_a_constant_field_still_loads(store, tmp_path):
    copy = Path(shutil.copytree(store, tmp_path / "store"))
    manifest = json.loads((copy / "store.json").read_text())
    manifest.pop("checksums", None)  # shards rewritten elsewhere: no checksums to verify
    (copy / "store.json").write_text(json.dumps(manifest))
    for shard in sorted((copy / "train").glob("2*.npz")):
        with np.load(shard) as data:
            arrays = {k: data[k] for k in data.files}
        np.savez_compressed(shard, **arrays)
    with zipfile.ZipFile(copy / "train" / "2000_0.npz") as archive:
        info = archive.getinfo("land_sea_mask.npy")
        assert info.file_size / info.compress_size > 50  # a constant field compresses well
    a, b = ShardStore(store).shards("train"), ShardStore(copy).shards("train")
    assert [s.steps for s in a] == [s.steps for s in b]
    for v in ("land_sea_mask", "2m_temperature"):
        assert np.array_equal(np.asarray(a[0].array(v)), np.asarray(b[0].array(v)))


def npy_with_header(path: Path, shape, descr="<f8", payload: bytes = bytes(64)) -> None:
    with open(path, "wb") as f:
        np.lib.format.write_array_header_1_0(f, {"descr": descr, "fortran_order": False, "shape": shape})
        f.write(payload)


@pytest.mark.parametrize(
    "name, shape, descr, match",
    [
        ("lat.npy", (10**11,), "<f8", r"lat.npy.*100000000000"),
        ("lon.npy", (10**11,), "<f8", r"lon.npy.*100000000000"),
        ("lat.npy", (8, 2), "<f8", r"lat.npy.*1-D"),
        ("lat.npy", (8,), "|O", r"lat.npy"),
        ("lat.npy", (9,), "<f8", r"lat.npy"),  # more values declared than the file holds
    ],
    ids=["lat_1e11", "lon_1e11", "lat_2d", "lat_objects", "lat_truncated"],
)
def test_grid_files_are_read_header_first(store, tmp_path, name, shape, descr, match):
    copy = Path(shutil.copytree(store, tmp_path / "store"))
    npy_with_header(copy / name, shape, descr)
    with pytest.raises(DataError, match=match):
        _ = ShardStore(copy).grid  # reading the grid reads the damaged header


@pytest.mark.parametrize(
    "file, member", [("normalize_mean.npz", "2m_temperature"), ("train/climatology.npz", "2m_temperature")]
)
def test_statistics_and_climatology_members_are_read_header_first(store, tmp_path, file, member):
    copy = Path(shutil.copytree(store, tmp_path / "store"))
    path = copy / file
    with np.load(path) as data:
        arrays = {k: data[k] for k in data.files}
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, {"descr": "<f8", "fortran_order": False, "shape": (10**11,)})
    with zipfile.ZipFile(path, "w") as archive:
        for k, a in arrays.items():
            if k == member:
                archive.writestr(f"{k}.npy", buffer.getvalue() + bytes(64))
            else:
                with archive.open(f"{k}.npy", "w") as out:
                    np.lib.format.write_array(out, a)
    st = ShardStore(copy)
    with pytest.raises(DataError, match=rf"{Path(file).name}.*{member}"):
        if file.startswith("normalize"):
            st.statistics([member])
        else:
            st.climatology("train", [member])


def test_a_shard_member_on_another_grid_is_named(store, tmp_path):
    copy = Path(shutil.copytree(store, tmp_path / "store"))
    (copy / "store.json").unlink()
    shard = copy / "train" / "2000_0.npz"
    with np.load(shard) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["2m_temperature"] = arrays["2m_temperature"][..., :8]
    np.savez(shard, **arrays)
    with pytest.raises(DataError, match=r"2000_0.npz.*2m_temperature"):
        for s in ShardStore(copy).shards("train"):
            s.array("2m_temperature")


# ------------------------------------------------------------------ what still loads
def test_our_runs_and_files_load_as_before(trained, climax_file, tmp_path):
    run = Run.load(trained)
    assert run.checkpoint == checkpointing.files_of(trained / "checkpoints", 4)["model"]
    plain = Module.from_checkpoint  # PhysicsNeMo's own loader: the reference
    reference = plain(str(climax_file))
    for key, value in reference.state_dict().items():
        assert torch.equal(value, run.model.state_dict()[key]), key
    weights = read_weights(climax_file)
    assert weights.variables == reference.variables


def test_official_layout_checkpoints_convert_and_reload(capsys, tmp_path):
    torch.manual_seed(0)
    source = tiny_climax(variables=list(DEFAULT_VARIABLES), img_size=(32, 64))
    ckpt = write_ckpt(tmp_path / "official.ckpt", official_like_state(source))
    code, err = climax(capsys, "convert", str(ckpt), str(tmp_path / "out.mdlus"), "--num-heads", "4")
    assert code == 0, err
    pair = ["2m_temperature", "geopotential_500"]
    model = ClimaX.from_pretrained(
        tmp_path / "out.mdlus", variables=pair, img_size=(32, 64), embed_dim=64, depth=2, num_heads=4
    )
    assert model.variables == pair
    assert torch.equal(read_weights(tmp_path / "out.mdlus").state["pos_embed"], source.pos_embed)


def test_residual_and_overlapping_head_files_still_load(tmp_path):
    torch.manual_seed(0)
    source = tiny_climax(residual=True, overlapping_head=True)
    source.save(str(tmp_path / "own.mdlus"))
    again = read_weights(tmp_path / "own.mdlus")
    assert all(torch.equal(v, again.state[k]) for k, v in source.state_dict().items())


def test_a_registry_name_taken_over_by_another_package_is_never_imported(trained, climax_file, foreign, monkeypatch):
    from importlib.metadata import EntryPoint

    module, marker = foreign
    monkeypatch.setitem(
        ModelRegistry()._model_registry,
        "ClimaX",
        EntryPoint(name="ClimaX", value=f"{module}:ClimaX", group="physicsnemo.models"),
    )
    with pytest.raises(ValueError, match=r"climax.mdlus.*registry.*ClimaX"):
        read_weights(climax_file)  # init= accepts ClimaX's registered subclasses: the registry is asked
    assert type(Run.load(trained).model) is ClimaX  # a run's model loads through the class itself
    assert not marker.exists()


def as_tar(path: Path) -> Path:
    """The ``.mdlus`` zip ``path`` in the older tar layout (``args.json``, ``metadata.json``, ``model.pt``)."""
    target = path.with_name(path.stem + "_tar.mdlus")
    with zipfile.ZipFile(path) as archive, tarfile.open(target, "w") as tar:
        for name in ("args.json", "metadata.json", "model.pt"):
            data = archive.read(name)
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return target


@pytest.mark.parametrize("name", sorted(UPSTREAM))
def test_upstream_corrdiff_files_still_load(name, tmp_path):
    net = upstream_net(name)
    stage = "regression" if "regression" in name else "diffusion"
    file = saved(net, tmp_path / f"{name}.mdlus")
    for layout in (file, as_tar(file)):  # the zip layout, and the older tar one
        loaded = net_files.load_net(layout, REG_KEY, stage)
        assert type(loaded) is type(net)
        for key, value in net.state_dict().items():
            assert torch.equal(value, loaded.state_dict()[key]), key


def test_a_climax_regression_file_still_loads(tmp_path):
    torch.manual_seed(0)
    net = ClimaXRegression([16, 16], ["a", "b"], ["c"], dict(embed_dim=16, depth=1, num_heads=2, patch_size=4))
    net.save(str(tmp_path / "cxr.mdlus"))
    loaded = net_files.load_net(tmp_path / "cxr.mdlus", REG_KEY, "regression")
    assert isinstance(loaded, ClimaXRegression)
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in net.state_dict().items())


class Parent(Module):
    """A model holding a PhysicsNeMo model as an argument (saved as a nested module entry)."""

    def __init__(self, inner, width: int = 3):
        super().__init__()
        self.inner, self.extra = inner, torch.nn.Linear(width, width)


Parent.__module__ = "physicsnemo_climax.nested_example"  # a module of this package, as a file may name


def test_a_nested_module_from_physicsnemos_registry_still_loads(tmp_path):
    from physicsnemo.models.mlp import FullyConnected

    from physicsnemo_climax.models import mdlus

    torch.manual_seed(0)
    net = Parent(FullyConnected(in_features=4, out_features=2, num_layers=2, layer_size=8))
    net.save(str(tmp_path / "nested.mdlus"))
    loaded = mdlus.load_module(tmp_path / "nested.mdlus", Parent)
    assert type(loaded.inner) is FullyConnected
    assert all(torch.equal(v, loaded.state_dict()[k]) for k, v in net.state_dict().items())
