# SPDX-License-Identifier: Apache-2.0
"""The package raises its own error classes (:mod:`physicsnemo_climax.errors`) for every error
a user can act on: no bare ``raise ValueError(...)`` or ``raise KeyError(...)`` outside the
internal guards listed here, and representative user errors raise the project's class."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from conftest import tiny_climax
from delivered_files import cds_netcdf

from physicsnemo_climax.errors import ClimaxError, ConfigError, DataError, UnknownName

PACKAGE = Path(__file__).resolve().parents[1] / "physicsnemo_climax"
BUILTINS = ("ValueError", "KeyError")

#: ``(file, exception, first words of the message)`` of the guards a user cannot trigger.
INTERNAL_GUARDS = {
    # callers pass this process's rank and worker from torch.distributed and the DataLoader
    ("data/loader.py", "ValueError", "rank "),
    # the preparation groups the levels of one variable before asking for them together
    ("data/sources.py", "ValueError", "read_levels: "),
    # the writer makes every block with the file's member count
    ("downscaling/writer.py", "ValueError", "a block of "),
    # patch kernels are checked equal first, so head windows differ by 0 or an even patch
    ("models/pretrained.py", "ValueError", "head windows of "),
    # the package's own templates, filled by the package's own code
    ("launch.py", "KeyError", ""),
}


def builtin_raises() -> set[tuple[str, str, str]]:
    """``(file, exception, start of the message's text)`` of each ``raise ValueError(...)`` /
    ``raise KeyError(...)`` in the package."""
    found = set()
    for path in PACKAGE.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (
                isinstance(node, ast.Raise)
                and isinstance(node.exc, ast.Call)
                and isinstance(node.exc.func, ast.Name)
                and node.exc.func.id in BUILTINS
            ):
                continue
            first = node.exc.args[0] if node.exc.args else None
            parts = first.values if isinstance(first, ast.JoinedStr) else [first]
            text = parts[0].value if parts and isinstance(parts[0], ast.Constant) else ""
            found.add((path.relative_to(PACKAGE).as_posix(), node.exc.func.id, text))
    return found


def test_user_errors_raise_the_projects_classes():
    unlisted = {
        (f, e, text)
        for f, e, text in builtin_raises()
        if not any(f == g and e == ge and text.startswith(words) for g, ge, words in INTERNAL_GUARDS)
    }
    assert not unlisted, (
        "raise one of physicsnemo_climax.errors' classes, or list the guard in "
        f"INTERNAL_GUARDS with the reason a user cannot trigger it: {sorted(unlisted)}"
    )


def test_every_internal_guard_is_still_there():
    found = builtin_raises()
    gone = [
        g for g in INTERNAL_GUARDS if not any(f == g[0] and e == g[1] and text.startswith(g[2]) for f, e, text in found)
    ]
    assert not gone, f"remove these from INTERNAL_GUARDS: {gone}"


def test_unknown_names_are_key_errors_printed_without_quotes():
    err = UnknownName("unknown region 'Atlantis'; known regions ['Global']")
    assert isinstance(err, KeyError) and isinstance(err, ClimaxError)
    assert str(err) == "unknown region 'Atlantis'; known regions ['Global']"


def test_a_bad_prepare_grid_is_a_config_error(tmp_path, capsys):
    from physicsnemo_climax.cli import main

    argv = [
        "data",
        "prepare",
        str(cds_netcdf(tmp_path / "a.nc")),
        "--out",
        str(tmp_path / "s"),
        "--variables",
        "2m_temperature",
        "--train",
        "2000",
        "--grid",
        "64",
    ]
    with pytest.raises(ConfigError, match="--grid 64: give H W"):
        main(["--debug", *argv])
    with pytest.raises(SystemExit) as exit_:
        main(argv)
    err = capsys.readouterr().err
    assert exit_.value.code == 1 and "--grid 64: give H W" in err and "Traceback" not in err


def test_an_unknown_variable_in_a_store_read_is_the_projects_error(tmp_path):
    from physicsnemo_climax.data.sources import Catalogue

    catalogue = Catalogue([str(cds_netcdf(tmp_path / "a.nc"))])
    with pytest.raises(UnknownName, match=r"variable specific_humidity_500 .* is in none of"):
        catalogue.locate("specific_humidity_500")
    with pytest.raises(UnknownName, match=r"a.nc: variable 't' has no level 700 hPa"):
        catalogue.locate("temperature_700")


def test_an_unknown_variable_in_the_shard_store_is_a_data_error(tmp_path):
    from physicsnemo_climax.data import PrepareConfig, ShardStore, prepare

    config = PrepareConfig(
        inputs=[str(cds_netcdf(tmp_path / "a.nc"))],
        variables=["2m_temperature"],
        splits={"train": "2000-01-01:2000-01-01"},
        grid="native",
    )
    store = ShardStore(prepare(config, tmp_path / "store"))
    with pytest.raises(DataError, match="specific_humidity_500"):
        store.check_variables(["specific_humidity_500"])


def test_bad_region_names_and_boxes_raise_the_projects_classes():
    from physicsnemo_climax.grid import native_axes, regular_grid

    model = tiny_climax(img_size=(32, 64))
    with pytest.raises(UnknownName, match="unknown region 'Atlantis'"):
        model.select_region("Atlantis")
    with pytest.raises(ConfigError, match="no patch"):
        model.select_region((89.9, 90, 0, 10))
    lat, lon = regular_grid((32, 64))
    with pytest.raises(DataError, match="reaches beyond the grid"):
        native_axes(lat[10:20], lon[:10], (-80, 80, 0, 10))
