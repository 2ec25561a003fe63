# SPDX-License-Identifier: Apache-2.0
"""A pair of CorrDiff nets per lead range: each forecast lead downscaled by the pair trained on it."""

import numpy as np
import pytest
import xarray as xr
from forecast_files import dataset_overrides, train_stage, write_forecasts
from omegaconf import OmegaConf

from physicsnemo_climax.config import load_config
from physicsnemo_climax.downscaling import generation, nets_by_lead
from physicsnemo_climax.downscaling.datasets import build_dataset
from physicsnemo_climax.downscaling.domain import Domain
from physicsnemo_climax.errors import ConfigError, OutputError


def section(reg, res, mode="all"):
    return OmegaConf.create({"inference_mode": mode, "io": {"reg_ckpt_filename": reg, "res_ckpt_filename": res}})


def domain(leads, outputs=("u",)):
    stats = {group: {v: {"mean": 0.0, "std": 1.0} for v in ("u", "v")} for group in ("input", "output")}
    return Domain(["u"], list(outputs), [], stats, 4, (8, 8), lead_hours=leads)


def test_lists_of_nets_make_pairs_by_position_and_a_single_path_is_one_pair():
    one = section("r", "d")
    assert nets_by_lead.pair_sections(one) == [one]
    pairs = nets_by_lead.pair_sections(section(["r6", "rl"], ["d6", "dl"]))
    assert [(p.io.reg_ckpt_filename, p.io.res_ckpt_filename, p.io.pair) for p in pairs] == [
        ("r6", "d6", 0),
        ("rl", "dl", 1),
    ]
    assert nets_by_lead.io_key(pairs[1], "res_ckpt_filename") == "generation.io.res_ckpt_filename[1]"
    assert nets_by_lead.io_key(one, "res_ckpt_filename") == "generation.io.res_ckpt_filename"
    # regression only: the diffusion key is not read, whatever it holds
    gen = section(["r6", "rl"], "???", "regression")
    keys = nets_by_lead.stage_keys(gen)
    assert keys == ("reg_ckpt_filename",)
    assert [p.io.reg_ckpt_filename for p in nets_by_lead.pair_sections(gen, keys)] == ["r6", "rl"]


@pytest.mark.parametrize(
    "reg, res",
    [(["r6", "rl"], ["d6"]), (["r6", "rl"], "d"), ([], [])],
    ids=["lengths differ", "list beside one path", "empty"],
)
def test_pairs_that_do_not_match_are_refused_naming_both_keys(reg, res):
    with pytest.raises(ConfigError, match=r"reg_ckpt_filename: \d.*res_ckpt_filename: (\d|one path)"):
        nets_by_lead.pair_sections(section(reg, res))


def test_each_lead_goes_to_the_most_specific_pair_trained_on_it_and_an_analysis_pair_takes_the_rest():
    where = ["six", "long", "analyses"]
    domains = [domain([6.0]), domain([72.0, 168.0]), domain(None)]
    picked = nets_by_lead.pick_pairs(domains, [6, 72, 168, 24, 6.0], where)
    assert picked.tolist() == [0, 1, 1, 2, 0]
    assert nets_by_lead.pick_pairs(domains[:1], [6, 72, None], where).tolist() == [0, 0, 0]  # one pair: all
    with pytest.raises(ConfigError, match=r"lead 24.0 h: no pair .*six: \[6.0\] h; long: \[72.0, 168.0\] h"):
        nets_by_lead.pick_pairs(domains[:2], [6, 24], where)
    # a lead several pairs were trained on: the pair trained on the fewest leads
    nested = [domain([6.0, 72.0, 168.0]), domain([72.0]), domain([72.0, 168.0])]
    assert nets_by_lead.pick_pairs(nested, [6, 72, 168], where).tolist() == [0, 1, 2]
    with pytest.raises(ConfigError, match=r"lead 72.0 h: both six and long were trained on it, each on 2 lead"):
        nets_by_lead.pick_pairs([domain([6.0, 72.0]), domain([72.0, 168.0])], [6], where)
    with pytest.raises(ConfigError, match="six and long were both trained on analyses"):
        nets_by_lead.pick_pairs([domain(None), domain(None)], [6], where)
    with pytest.raises(ConfigError, match="long: no domain.json"):
        nets_by_lead.pick_pairs([domain([6.0]), None], [6], where)
    with pytest.raises(ConfigError, match="these data have none"):
        nets_by_lead.pick_pairs(domains[:2], [None], where)


def test_chunks_hold_one_pair_each_and_keep_the_order():
    assert nets_by_lead.pair_chunks([0, 0, 1, 1, 1, 0], 2) == [(0, [0, 1]), (1, [2, 3]), (1, [4]), (0, [5])]
    assert nets_by_lead.pair_chunks([1, 0, 1], 4) == [(1, [0]), (0, [1]), (1, [2])]


def test_pairs_of_other_grids_or_channels_are_refused_naming_them():
    other = domain([72.0], outputs=("u", "v"))
    with pytest.raises(ConfigError, match=r"long: trained with output_variables \['u', 'v'\], but six"):
        nets_by_lead.check_same_fields([domain([6.0]), other], ["six", "long"])


def test_the_forecast_command_takes_a_path_per_pair():
    from physicsnemo_climax.cli import _one_or_list, build_parser

    argv = "downscale forecast --climax-run c --regression r6 rl --diffusion d6 dl --input i --lead 6 72 --output o"
    args = build_parser().parse_args([*argv.split(), "generation.time_block=2"])
    assert (_one_or_list(args.regression), _one_or_list(args.diffusion)) == (["r6", "rl"], ["d6", "dl"])
    assert args.overrides == ["generation.time_block=2"]
    args = build_parser().parse_args(
        "downscale forecast --climax-run c --regression r --input i --lead 6 --output o".split()
    )
    assert (_one_or_list(args.regression), args.diffusion) == ("r", None)  # one pair, as before


# ----------------------------------------------------------------------------- generation


@pytest.fixture(scope="module")
def runs_by_lead(tmp_path_factory):
    """Regression runs on the 6 h forecasts (no lead-time embedding) and on the 72 and 168 h ones
    (lead-time-aware): each has its own statistics and leads."""
    root = tmp_path_factory.mktemp("by_lead")
    data = write_forecasts(root)
    six = train_stage(data, root / "six", "regression", "dataset.leads=[6]")
    long = train_stage(
        data, root / "long", "lt_aware_regression", "dataset.leads=[72,168]", "model.model_args.lead_time_steps=2"
    )
    return data, six, long


def regression_means(data, leads, reg, out, *extra):
    cfg = load_config(
        [
            *dataset_overrides(data, leads),
            f"generation.io.reg_ckpt_filename={reg}",
            f"generation.io.output_filename={out}",
            "generation.inference_mode=regression",
            "generation.num_ensembles=1",
            "generation.seed_batch_size=1",
            "generation.times=null",
            "generation.time_block=2",
            *extra,
        ],
        "config_generate_hrrr_mini",
    )
    generation.generate(cfg)
    return xr.open_dataset(out), xr.open_dataset(out, group="regression"), build_dataset(cfg.dataset)


def test_generation_draws_each_lead_with_its_pair_as_each_pair_alone_does(runs_by_lead, tmp_path):
    data, six, long = runs_by_lead
    root, both, samples = regression_means(data, "[6,72,168]", f"[{six},{long}]", tmp_path / "both.nc")
    hours = root.lead_time.values / np.timedelta64(1, "h")
    np.testing.assert_array_equal(hours, samples.sample_lead_hours)  # the dataset's order, the leads interleaved
    assert len(set(hours[:3])) == 3
    assert root.attrs["nets_by_lead"] == f"[6.0] h: {six}; [72.0, 168.0] h: {long}"
    _, alone6, _ = regression_means(data, "[6]", six, tmp_path / "six.nc")
    _, alone_long, _ = regression_means(data, "[72,168]", long, tmp_path / "long.nc")
    for name in ("u", "v"):
        # each pair in physical units through its own statistics
        np.testing.assert_allclose(both[name].values[hours == 6], alone6[name].values, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(both[name].values[hours > 6], alone_long[name].values, rtol=1e-5, atol=1e-5)
    trained = [Domain.load(run) for run in (six, long)]
    assert trained[0].stats["input"]["u"]["std"] != trained[1].stats["input"]["u"]["std"]


def test_a_tie_an_empty_list_and_an_output_onto_a_listed_net_are_refused_before_anything_is_written(
    runs_by_lead, tmp_path
):
    data, six, long = runs_by_lead
    twice = rf"lead 6.0 h: both generation.io.reg_ckpt_filename\[0\]={six} and .*\[1\]={six} were trained on it"
    with pytest.raises(ConfigError, match=twice):
        regression_means(data, "[6]", f"[{six},{six}]", tmp_path / "x.nc")
    # one pair: a lead among the samples asked that it was not trained on names the trained leads
    with pytest.raises(ConfigError, match=r"lead \[72.0\] h: the CorrDiff run was trained on forecasts at leads"):
        regression_means(data, "[6,72]", six, tmp_path / "x.nc")
    written = sorted(long.rglob("*"))
    with pytest.raises(OutputError, match=f"is the input {long}"):  # every net of the lists is an input
        regression_means(data, "[6]", f"[{six},{long}]", long, "generation.io.overwrite=true")
    assert sorted(long.rglob("*")) == written
    with pytest.raises(ConfigError, match=r"reg_ckpt_filename: 0"):  # an empty list, named before any work
        regression_means(data, "[6]", "[]", tmp_path / "x.nc")
    assert not list(tmp_path.iterdir())
