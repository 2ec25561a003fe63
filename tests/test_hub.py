# SPDX-License-Identifier: Apache-2.0
"""Weights by name (:mod:`physicsnemo_climax.hub`) against a local HTTP server laid out like the
Hugging Face hub (``/OWNER/REPO/resolve/main/FILE``, reached through ``HF_ENDPOINT``) and like a
plain host: downloads into the cache, resumed after a cut, hashes pinned or recorded and checked,
refusals, no network, and ``init=`` of a hub file."""

import pytest
import torch
from hub_server import RangeHandler, put

from physicsnemo_climax import hub
from physicsnemo_climax.cli import main
from physicsnemo_climax.errors import DataError, UnknownName
from physicsnemo_climax.models import ClimaX


def test_a_hub_file_is_downloaded_once_and_its_hash_recorded(server):
    site, _ = server
    digest = put(site, "owner/repo/resolve/main/w.bin", b"weights" * 1000)
    path = hub.local_file("hf://owner/repo/w.bin")
    assert path.read_bytes() == b"weights" * 1000 and path.is_relative_to(hub.cache_dir())
    assert hub.verify(path, "hf://owner/repo/w.bin", None) == digest
    assert hub.local_file("hf://owner/repo/w.bin") == path
    assert len(RangeHandler.requests) == 1  # the second use reads the cache


def test_a_cut_download_resumes_where_it_stopped(server):
    site, url = server
    data = bytes(range(256)) * 3000
    put(site, "plain/big.bin", data)
    RangeHandler.cut["/plain/big.bin"] = 100_000
    path = hub.local_file(f"{url}/plain/big.bin")
    assert path.read_bytes() == data
    assert RangeHandler.requests == [("/plain/big.bin", 0), ("/plain/big.bin", 100_000)]
    assert not path.with_name("big.bin.partial").exists()


def test_a_partial_file_left_whole_by_a_crash_is_fetched_again(server):
    site, url = server
    put(site, "whole.bin", b"0123456789")
    partial = hub.cached_path(f"{url}/whole.bin").with_name("whole.bin.partial")
    partial.parent.mkdir(parents=True)
    partial.write_bytes(b"9876543210")  # as long as the file: the server answers 416
    assert hub.local_file(f"{url}/whole.bin").read_bytes() == b"0123456789"
    assert RangeHandler.requests == [("/whole.bin", 10), ("/whole.bin", 0)]


def test_a_file_that_changed_after_its_first_use_is_refused(server):
    site, url = server
    put(site, "a.bin", b"first")
    path = hub.local_file(f"{url}/a.bin")
    path.write_bytes(b"tampered")
    with pytest.raises(DataError, match="SHA-256 .* expected .* refused"):
        hub.local_file(f"{url}/a.bin")


def test_a_download_that_is_not_the_published_file_is_refused_and_deleted(server, monkeypatch):
    site, url = server
    put(site, "pinned.bin", b"not what was published")
    entry = hub.Published(f"{url}/pinned.bin", "test", "MIT", "none", "none", sha256="0" * 64)
    monkeypatch.setitem(hub.CATALOGUE, "pinned", entry)
    with pytest.raises(DataError, match="not the published"):
        hub.local_file("pinned")
    assert not hub.cached_path(entry.url).exists()
    assert not hub.cached_path(entry.url).with_name("pinned.bin.partial").exists()


def test_no_network_names_the_url_and_where_to_put_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv("CLIMAX_CACHE", str(tmp_path))
    monkeypatch.setattr(hub, "BACKOFF_S", 0.0)
    url = "http://127.0.0.1:9/nothing/here.ckpt"  # the discard port: connection refused
    with pytest.raises(DataError, match="cannot download http://127.0.0.1:9/nothing/here.ckpt") as err:
        hub.local_file(url)
    assert str(hub.cached_path(url)) in str(err.value)
    # a file put there by hand is used (and its hash recorded)
    hub.cached_path(url).parent.mkdir(parents=True, exist_ok=True)
    hub.cached_path(url).write_bytes(b"by hand")
    assert hub.local_file(url).read_bytes() == b"by hand"


def test_a_missing_file_on_the_server_fails_at_once(server):
    _, url = server
    with pytest.raises(DataError, match="404"):
        hub.local_file(f"{url}/absent.bin")
    assert len(RangeHandler.requests) == 1  # the server said no: not asked again


def test_a_url_that_names_no_file_writes_nothing(tmp_path, monkeypatch):
    monkeypatch.setenv("CLIMAX_CACHE", str(tmp_path / "cache"))
    for url in ("https://host/dir/", "https://host/dir/..", "https://host/.", "https://host"):
        with pytest.raises(DataError, match="names no file"):
            hub.local_file(url)
    assert not (tmp_path / "cache").exists()


def test_names_that_are_nothing_are_refused():
    with pytest.raises(UnknownName, match="init=climax-5deg"):
        hub.local_file("climax-5deg")
    with pytest.raises(DataError, match="hf://OWNER/REPO/FILE"):
        hub.download_url("hf://only-owner")


def test_init_reads_a_hub_mdlus(server, tmp_path):
    site, _ = server
    torch.manual_seed(0)
    source = ClimaX(variables=["a", "b"], img_size=(8, 16), patch_size=4, embed_dim=32, depth=1, num_heads=4)
    source.save(str(tmp_path / "m.mdlus"))
    put(site, "me/climax-test/resolve/main/m.mdlus", (tmp_path / "m.mdlus").read_bytes())
    model = ClimaX.from_pretrained(
        "hf://me/climax-test/m.mdlus", variables=["a", "b"], img_size=(8, 16), patch_size=4, embed_dim=32, depth=1
    )
    for key, value in source.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value)


def test_climax_weights_list_and_verify(server, capsys):
    site, _ = server
    main(["weights", "list"])
    out = capsys.readouterr().out
    assert "climax-5.625deg" in out and "hf://tungnd/climax/5.625deg.ckpt" in out and "not cached" in out
    put(site, "x/y/resolve/main/z.bin", b"z")
    main(["weights", "fetch", "hf://x/y/z.bin"])
    main(["weights", "verify", "hf://x/y/z.bin", "climax-5.625deg"])
    out = capsys.readouterr().out
    assert "SHA-256 checked" in out and "climax-5.625deg: not cached" in out


def test_a_task_weights_cache_beats_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("CLIMAX_CACHE", str(tmp_path / "env"))
    assert hub.cache_dir() == tmp_path / "env"
    with hub.cache_at(tmp_path / "task"):
        assert hub.cached_path("https://h/w.ckpt").is_relative_to(tmp_path / "task")
    with hub.cache_at(None):
        assert hub.cache_dir() == tmp_path / "env"
    assert hub.cache_dir() == tmp_path / "env"
