# SPDX-License-Identifier: Apache-2.0
"""Weights by name beyond ``init=``: the CorrDiff package of the catalogue (an NGC zip, its nets
extracted and verified), the CorrDiff config keys and options that take names, Earth2Studio's
``load_default_package`` / ``load_model``, and the run options that refuse names. All against the
local server of ``tests/hub_server.py`` (NGC's public file addresses and the hub at it)."""

import io
import zipfile

import numpy as np
import pytest
import torch
import xarray as xr
from faults import climax
from hub_server import RangeHandler, put
from test_corrdiff_checkpoints import SHAPE, saved, upstream_net
from test_official_checkpoint import official_like_state, write_ckpt

from physicsnemo_climax import hub
from physicsnemo_climax.cli import main
from physicsnemo_climax.downscaling import net_files, write_mini_file
from physicsnemo_climax.errors import ConfigError, DataError
from physicsnemo_climax.models import DEFAULT_VARIABLES, mdlus

PACKAGE = "v2/models/nvidia/modulus/corrdiff_inference_package/versions/1/files/corrdiff_inference_package.zip"
MEMBERS = "corrdiff_inference_package/checkpoints/"


def package_zip(files: dict[str, bytes]) -> bytes:
    """A zip laid out as the CorrDiff Taiwan package: ``files`` under its ``checkpoints/``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, data in files.items():
            archive.writestr(MEMBERS + name, data)
        archive.writestr("corrdiff_inference_package/README", b"not a net")
    return buffer.getvalue()


def test_ngc_names_are_ngc_public_file_addresses(monkeypatch):
    monkeypatch.delenv("CLIMAX_NGC_ENDPOINT", raising=False)
    assert hub.ngc_url(hub.CORRDIFF_TAIWAN) == "https://api.ngc.nvidia.com/" + PACKAGE
    assert hub.ngc_url("ngc://models/org/name@0.1.0/a/b.mdlus") == (
        "https://api.ngc.nvidia.com/v2/models/org/name/versions/0.1.0/files/a/b.mdlus"
    )
    for bad in ("ngc://models/name@1/f", "ngc://models/o/t/n@1", "ngc://models/o/t/n@1/", "ngc://datasets/o/n@1/f"):
        with pytest.raises(DataError, match="ngc://models/ORG"):
            hub.ngc_url(bad)


def test_a_corrdiff_name_resolves_to_the_served_net_and_is_verified(server):
    site, _ = server
    put(site, PACKAGE, package_zip({"regression.mdlus": b"R" * 5000, "diffusion.mdlus": b"D" * 3000}))
    regression = hub.local_file("corrdiff-taiwan-regression", "generation.io.reg_ckpt_filename")
    assert regression.read_bytes() == b"R" * 5000 and regression.is_relative_to(hub.cache_dir())
    assert hub.local_file("corrdiff-taiwan-diffusion").read_bytes() == b"D" * 3000
    assert RangeHandler.requests == [("/" + PACKAGE, 0)]  # one archive, downloaded once
    assert hub.record_path(regression).exists() and hub.record_path(hub.cached_path(hub.CORRDIFF_TAIWAN)).exists()
    regression.write_bytes(b"R" * 4999 + b"x")  # a net changed after its first use
    with pytest.raises(DataError, match="SHA-256 .* expected .* refused"):
        hub.local_file("corrdiff-taiwan-regression")


def test_a_package_that_is_not_the_published_one_is_refused_and_never_loaded(server, monkeypatch, tmp_path):
    site, _ = server
    put(site, PACKAGE, package_zip({"regression.mdlus": b"tampered"}))
    for name in ("corrdiff-taiwan", "corrdiff-taiwan-regression"):
        pinned = hub.CATALOGUE[name].__class__(**{**vars(hub.CATALOGUE[name]), "sha256": "0" * 64})
        monkeypatch.setitem(hub.CATALOGUE, name, pinned)

    def never(*args, **kwargs):
        raise AssertionError("a refused file was read")

    monkeypatch.setattr(mdlus, "read_file", never)
    monkeypatch.setattr(mdlus, "load_module", never)
    with pytest.raises(DataError, match="not the published"):
        net_files.load_net("corrdiff-taiwan-regression", "generation.io.reg_ckpt_filename", "regression")
    assert not hub.cached_path(hub.CORRDIFF_TAIWAN).exists()
    assert not list((tmp_path / "cache").rglob("*.mdlus"))


def test_offline_a_corrdiff_name_names_the_url_and_where_to_put_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("CLIMAX_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CLIMAX_NGC_ENDPOINT", "http://127.0.0.1:9")  # the discard port: refused
    monkeypatch.setattr(hub, "BACKOFF_S", 0.0)
    target = hub.cached_path(hub.CORRDIFF_TAIWAN)
    with pytest.raises(DataError, match=f"cannot download {hub.CORRDIFF_TAIWAN}") as err:
        hub.local_file("corrdiff-taiwan-regression")
    assert str(target) in str(err.value)
    target.write_bytes(package_zip({"regression.mdlus": b"by hand"}))  # the package put there by hand
    assert hub.local_file("corrdiff-taiwan-regression").read_bytes() == b"by hand"


def generate(tmp_path, reg, res, out) -> xr.Dataset:
    """``climax downscale generate`` of two members at two times of a CorrDiff-Mini file."""
    main(
        [
            "downscale",
            "generate",
            "--no-score",
            f"dataset.data_path={tmp_path / 'mini.nc'}",
            f"dataset.stats_path={tmp_path / 'stats.json'}",
            f"generation.io.reg_ckpt_filename={reg}",
            f"generation.io.res_ckpt_filename={res}",
            f"generation.io.output_filename={tmp_path / out}",
            "generation.num_ensembles=2",
            "generation.seed_batch_size=2",
            "generation.times=null",
            "generation.max_times=2",
            "generation.sampler.num_steps=3",
        ]
    )
    return xr.open_dataset(tmp_path / out, group="prediction").load()


def test_downscale_generate_takes_the_corrdiff_nets_by_name(server, tmp_path):
    site, _ = server
    write_mini_file(tmp_path / "mini.nc", tmp_path / "stats.json", samples=3, shape=SHAPE, factor=4)
    reg = saved(upstream_net("regression", 1), tmp_path / "reg.mdlus")
    res = saved(upstream_net("diffusion", 2), tmp_path / "res.mdlus")
    put(site, PACKAGE, package_zip({"regression.mdlus": reg.read_bytes(), "diffusion.mdlus": res.read_bytes()}))
    by_name = generate(tmp_path, "corrdiff-taiwan-regression", "corrdiff-taiwan-diffusion", "by_name.nc")
    by_path = generate(tmp_path, reg, res, "by_path.nc")
    assert by_name.sizes == by_path.sizes and len(by_name.data_vars) == 2
    for name in by_path.data_vars:
        assert float(np.abs(by_path[name]).mean()) > 0
        np.testing.assert_array_equal(by_name[name].values, by_path[name].values)


@pytest.mark.parametrize("option", ["--run", "--checkpoint"])
def test_forecast_refuses_a_published_name_for_a_run_and_says_what_to_do(capsys, tmp_path, option):
    code, err = climax(
        capsys, "forecast", option, "climax-5.625deg", "--input", "ic.nc", "--lead", "6", "--output", "o.nc"
    )
    assert code == 1 and "Traceback" not in "\n".join(err)
    assert f"{option} climax-5.625deg" in err[0] and "training run folder" in err[0]
    assert "ClimaXPrognostic.from_checkpoint" in err[0] and "init=NAME" in err[0]


def test_earth2studio_default_package_gives_the_model_from_checkpoint_gives(server, store, tmp_path):
    from conftest import tiny_climax

    from physicsnemo_climax.earth2studio import ClimaXPrognostic

    site, _ = server
    torch.manual_seed(3)
    source = tiny_climax(variables=list(DEFAULT_VARIABLES), img_size=(8, 16))
    ckpt = write_ckpt(tmp_path / "5.625deg.ckpt", official_like_state(source))
    put(site, "tungnd/climax/resolve/main/5.625deg.ckpt", ckpt.read_bytes())
    package = ClimaXPrognostic.load_default_package()
    assert package.root == "hf://tungnd/climax"
    with pytest.raises(ConfigError, match=r"load_model\(package, store=\.\.\.\).*give store="):
        ClimaXPrognostic.load_model(package)
    by_package = ClimaXPrognostic.load_model(package, store=store, num_heads=4, device="cpu")
    by_path = ClimaXPrognostic.from_checkpoint(ckpt, store, num_heads=4, device="cpu")
    assert hub.cached_path(hub.CATALOGUE["climax-5.625deg"].url).exists()  # the catalogue's cached file
    assert by_package.variables == by_path.variables and len(by_path.dynamic) == 3
    x = torch.randn(2, 1, len(by_path.dynamic), 8, 16) * 10 + 280
    torch.testing.assert_close(by_package._step(x), by_path._step(x), rtol=0, atol=0)
    assert not torch.equal(by_path._step(x), x)


def test_load_model_takes_an_earth2studio_package(store, tmp_path):
    auto = pytest.importorskip("earth2studio.models.auto")
    from conftest import tiny_climax

    from physicsnemo_climax.earth2studio import ClimaXPrognostic

    torch.manual_seed(4)
    source = tiny_climax(variables=list(DEFAULT_VARIABLES), img_size=(8, 16))
    ckpt = write_ckpt(tmp_path / "w.ckpt", official_like_state(source))
    package = auto.Package(str(tmp_path), cache=False)
    model = ClimaXPrognostic.load_model(package, store=store, checkpoint="w.ckpt", num_heads=4, device="cpu")
    ref = ClimaXPrognostic.from_checkpoint(ckpt, store, num_heads=4, device="cpu")
    x = torch.randn(1, 1, len(ref.dynamic), 8, 16)
    torch.testing.assert_close(model._step(x), ref._step(x), rtol=0, atol=0)
