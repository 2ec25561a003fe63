# SPDX-License-Identifier: Apache-2.0
"""The scaling study: ``climax train -m`` into separate run folders, the samples-seen record,
the power-law fits and ``climax report scaling`` on two tiny trained and evaluated runs."""

import json
import math
import shutil

import numpy as np
import pandas as pd
import pytest
import torch
from faults import climax, settings
from omegaconf import OmegaConf

from physicsnemo_climax import cli
from physicsnemo_climax.config import load_config, load_sweep, sweep_jobs
from physicsnemo_climax.data import ShardStore
from physicsnemo_climax.engine.checkpointing import files_of, saved_metadata
from physicsnemo_climax.errors import ConfigError, InputError, OutputError
from physicsnemo_climax.forecasting import Run
from physicsnemo_climax.forecasting.scaling import (
    fit_power_laws,
    plot_scaling,
    power_law,
    pretraining_samples,
    samples_seen,
    scaling_table,
)
from physicsnemo_climax.tasks import train

#: An evaluation without what the report does not read (the WB2 climatology, regional scores).
QUICK_EVAL = ("eval.climatology=train_mean", "eval.regions=[global]")


def base(store, *extra):
    """The fault suite's tiny training settings without the keys a test sweeps or places."""
    return [a for a in settings(store, "unused", *extra) if not a.startswith(("run_dir=", "model.embed_dim="))]


@pytest.fixture(scope="module")
def sweep(store, tmp_path_factory):
    """Two runs of ``climax train -m model.embed_dim=16,32`` (4 steps of 8 samples x 2
    accumulated), each evaluated at 12 h on 2 initial times."""
    root = tmp_path_factory.mktemp("sweep")
    cli.main(
        [
            "train",
            "-m",
            "model.embed_dim=16,32",
            "train.grad_accum=2",
            *base(store),
            f"run_dir={root}/${{model.embed_dim}}",
        ]
    )
    for run in ("16", "32"):
        cli.main(["evaluate", f"run_dir={root / run}", "eval.leads=[12]", "eval.max_samples=2", *QUICK_EVAL])
    return root


# ------------------------------------------------------------------ the multirun
@pytest.mark.slow  # two tiny runs trained and evaluated (the module's sweep fixture)
def test_multirun_trains_each_setting_into_its_own_folder(sweep):
    assert sorted(p.name for p in sweep.iterdir()) == ["16", "32"]
    for dim in (16, 32):
        run = Run.load(sweep / str(dim), "cpu")
        assert run.model.pos_embed.shape[-1] == dim  # each folder holds its own setting
        assert OmegaConf.load(sweep / str(dim) / "config.yaml").model.embed_dim == dim
        assert load_config([]).model.embed_dim not in (16, 32)  # nothing leaked into the defaults


@pytest.mark.slow  # two tiny runs trained and evaluated (the module's sweep fixture)
def test_a_sweep_job_trains_as_the_same_run_alone(sweep, store, tmp_path):
    alone = train(load_config([*base(store), "train.grad_accum=2", "model.embed_dim=32", f"run_dir={tmp_path}"]))
    swept, single = Run.load(sweep / "32", "cpu").model.state_dict(), Run.load(alone, "cpu").model.state_dict()
    assert all(torch.equal(swept[k], single[k]) for k in single)  # the first job left nothing behind


def test_multirun_default_folders_and_refusals(store, tmp_path):
    jobs = load_sweep(["model.embed_dim=16,32", "train.steps=2"])
    assert [str(cfg.run_dir) for _, cfg in jobs] == [
        "runs/finetune_global/model.embed_dim=16",
        "runs/finetune_global/model.embed_dim=32",
    ]
    assert jobs[0][1].eval.out_dir == "runs/finetune_global/model.embed_dim=16/eval"
    assert [j["seed"] for j in sweep_jobs(["seed=range(0,3)", "train.steps=2"])] == ["0", "1", "2"]
    with pytest.raises(ConfigError, match="would both train into run_dir="):
        load_sweep(["model.embed_dim=16,32", f"run_dir={tmp_path}/one"])
    with pytest.raises(ConfigError, match="only `climax train -m` runs a sweep"):
        load_config(["model.embed_dim=16,32"])


@pytest.mark.slow  # two tiny runs trained and evaluated (the module's sweep fixture)
def test_multirun_refuses_a_folder_holding_another_run(store, tmp_path, capsys):
    train(load_config([*base(store), f"run_dir={tmp_path}/16", "model.embed_dim=16", "train.lr=0.01"]))
    args = ["train", "-m", "model.embed_dim=16,32", *base(store), f"run_dir={tmp_path}/${{model.embed_dim}}"]
    code, err = climax(capsys, *args)
    assert code == 1 and "holds a run trained with other settings" in err[0] and "train.lr" in err[0]
    assert not (tmp_path / "32").exists()  # the sweep stopped at the refused job


# ------------------------------------------------------------------ samples seen
@pytest.mark.slow  # two tiny runs trained and evaluated (the module's sweep fixture)
def test_checkpoints_count_samples_seen_across_a_relaunch(sweep, tmp_path):
    run = shutil.copytree(sweep / "16", tmp_path / "run")
    assert saved_metadata(run / "checkpoints", 2)["samples_seen"] == 2 * 8 * 2  # steps x batch x accumulation
    for path in files_of(run / "checkpoints", 4).values():
        path.unlink()  # as if stopped after step 2
    cfg = load_config(["train.grad_accum=2", *base(ShardStore(Run.load(run, "cpu").info.data_root).root)])
    cfg.run_dir, cfg.model.embed_dim = str(run), 16
    train(cfg)
    assert saved_metadata(run / "checkpoints", 4)["samples_seen"] == 4 * 8 * 2


def test_samples_seen_of_an_older_checkpoint_from_the_config(tmp_path):
    train = load_config(["train.batch_size=8", "train.grad_accum=3"]).train
    assert samples_seen(tmp_path, 10, train) == 10 * 8 * 3  # no training state: steps x batch x accumulation
    train.total_batch_size = 48
    assert samples_seen(tmp_path, 10, train) == 480


# ------------------------------------------------------------------ the fits
def test_power_law_recovers_an_exact_slope():
    x = np.array([1e3, 1e4, 1e5, 1e6])
    slope, intercept, r2 = power_law(x, 2.5 * x**-0.3)
    assert slope == pytest.approx(-0.3) and intercept == pytest.approx(math.log(2.5)) and r2 == pytest.approx(1.0)
    assert all(math.isnan(v) for v in power_law([5, 5], [1.0, 2.0]))  # one distinct x: no fit


def test_fits_keep_groups_of_the_other_axes_apart():
    sizes, data = [1e4, 1e5, 1e6], {100: -0.1, 1000: -0.2}
    rows = [
        dict(embed_dim=int(n), depth=2, params=n, samples_seen=640, train_samples=d, resolution_deg=5.625)
        | dict(pretrain_samples=math.nan)
        | dict(variable="z500", rmse=3.0 * n**slope * d**-0.05)
        for d, slope in data.items()
        for n in sizes
    ]
    fits = fit_power_laws(pd.DataFrame(rows)).set_index(["axis", "group"])
    assert fits.loc[("params", "train_samples=100"), "slope"] == pytest.approx(-0.1)
    assert fits.loc[("params", "train_samples=1000"), "slope"] == pytest.approx(-0.2)
    by_data = fits.loc["train_samples"]
    assert len(by_data) == 3 and by_data.points.eq(2).all()  # one fit per model size, two data amounts each
    assert set(fits.index.get_level_values("axis")) == {"params", "train_samples"}  # the others do not vary


def test_fits_and_figure_against_resolution(tmp_path):
    rows = [
        dict(embed_dim=d, depth=2, params=d * 1000 + (4000 if res < 2 else 0), samples_seen=640, train_samples=100)
        | dict(pretrain_samples=math.nan, resolution_deg=res, lead=72.0, variable="t850", rmse=d**-0.1 * res**0.5)
        for d in (64, 128)
        for res in (1.40625, 5.625)
    ]
    table = pd.DataFrame(rows)
    fits = fit_power_laws(table).set_index(["axis", "group"])
    assert fits.loc[("resolution_deg", "embed_dim=64"), "slope"] == pytest.approx(0.5)  # coarser grid, larger error
    assert set(fits.index.get_level_values("axis")) == {"params", "resolution_deg"}
    plot_scaling(table, fit_power_laws(table), tmp_path / "scaling.png")
    assert (tmp_path / "scaling.png").stat().st_size > 1000


# ------------------------------------------------------------------ the report
@pytest.mark.slow  # two tiny runs trained and evaluated (the module's sweep fixture)
def test_report_scaling_table_and_files(sweep, tmp_path, capsys):
    out = tmp_path / "report"
    code, err = climax(
        capsys, "report", "scaling", str(sweep / "16"), str(sweep / "32"), "--lead", "12", "--out", str(out)
    )
    assert code == 0, err
    table = pd.read_csv(out / "scaling.csv")
    store = ShardStore(Run.load(sweep / "16", "cpu").info.data_root)
    for dim in (16, 32):
        rows = table[table.embed_dim == dim]
        run = Run.load(sweep / str(dim), "cpu")
        scorecard = pd.read_csv(sweep / str(dim) / "eval" / "scorecard.csv")
        model = scorecard[(scorecard.method == "model") & (scorecard.region == "global")].set_index("variable")
        assert rows.params.iloc[0] == sum(p.numel() for p in run.model.parameters())
        assert rows.samples_seen.iloc[0] == 4 * 8 * 2 and rows.steps.iloc[0] == 4
        assert rows.train_samples.iloc[0] == sum(s.steps for s in store.shards("train"))
        assert rows.resolution_deg.iloc[0] == pytest.approx(360 / 16)
        assert np.allclose(rows.set_index("variable").rmse, model.loc[rows.variable, "rmse"])
    fits = json.loads((out / "scaling.json").read_text())["fits"]
    assert {f["axis"] for f in fits} == {"params"} and len(fits) == table.variable.nunique()
    assert (out / "scaling.png").stat().st_size > 1000
    assert (
        climax(capsys, "report", "scaling", str(sweep / "16"), str(sweep / "32"), "--lead", "12", "--out", str(out))[0]
        == 1
    )
    args = ["report", "scaling", str(sweep / "16"), str(sweep / "32"), "--lead", "12", "--out", str(out), "--overwrite"]
    assert climax(capsys, *args)[0] == 0


@pytest.mark.slow  # two tiny runs trained and evaluated (the module's sweep fixture)
def test_report_scaling_errors(sweep, tmp_path):
    runs = [sweep / "16", sweep / "32"]
    with pytest.raises(InputError, match="two or more different runs"):
        scaling_table([runs[0], runs[0]], lead=12)
    with pytest.raises(InputError, match=r"not 72 h: `climax evaluate run_dir=.*eval.leads=\[72\]`"):
        scaling_table(runs, lead=72)
    with pytest.raises(InputError, match="its evaluation has no"):
        scaling_table(runs, lead=12, variables=["2m_temperature", "u10"])
    bare = shutil.copytree(runs[1], tmp_path / "bare", ignore=shutil.ignore_patterns("eval"))
    with pytest.raises(InputError, match=f"{bare} has no evaluation .*`climax evaluate run_dir={bare}"):
        scaling_table([runs[0], bare], lead=12)
    (tmp_path / "junk" / "eval").mkdir(parents=True)
    shutil.copy(runs[1] / "eval" / "scorecard.csv", tmp_path / "junk" / "eval")
    with pytest.raises(InputError, match="junk: not a readable training run"):
        scaling_table([runs[0], tmp_path / "junk"], lead=12)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(OutputError):
        from physicsnemo_climax.forecasting.scaling import write_scaling_report

        write_scaling_report(runs, tmp_path / "mine", lead=12)
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


@pytest.mark.slow  # two tiny runs trained and evaluated (the module's sweep fixture)
def test_pretraining_data_of_the_run_init_names(sweep, tmp_path):
    store = ShardStore(Run.load(sweep / "16", "cpu").info.data_root)
    model_file = sorted((sweep / "16" / "checkpoints").glob("*.mdlus"))[-1]
    assert pretraining_samples(str(model_file)) == sum(s.steps for s in store.shards("train"))
    assert math.isnan(pretraining_samples(None))
    outside = shutil.copy(model_file, tmp_path / "official.mdlus")  # no run folder above it
    assert math.isnan(pretraining_samples(str(outside)))
