# SPDX-License-Identifier: Apache-2.0
"""The run record (``run.json``) as one typed record: written and read back unchanged,
older files load, unknown keys survive, a relaunch compares the task's facts only."""

import json

import pytest

from physicsnemo_climax.engine.run_folder import RUN_JSON, read_run_record
from physicsnemo_climax.engine.run_info import RunInfo
from physicsnemo_climax.errors import DataError

#: A ClimaX forecasting run.json as this package wrote it before the typed record.
OLDER = {
    "task": "finetune_global",
    "variables": ["t2m", "z500", "cos_zenith"],
    "out_variables": ["t2m", "z500"],
    "model_variables": ["t2m", "z500", "cos_zenith"],
    "statistics": {"t2m": {"mean": 280.5, "std": 12.25}, "z500": {"mean": 54000.0, "std": 3000.0}},
    "units": {"t2m": "K"},
    "lat": [-45.0, 45.0],
    "lon": [0.0, 90.0, 180.0, 270.0],
    "hours_per_step": 6,
    "lead_hours": None,
    "max_lead_hours": 72,
    "lead_range": [6, 72],
    "lead_step": 6,
    "data_root": "/data/store",
    "region": "NorthAmerica",
    "forcings": ["cos_zenith"],
    "plan": {"precision": "fp32"},
    "history": [{"resumed_at_step": 10, "changed": {}}],
    "written_by_a_later_version": {"x": 1},
}


def test_a_record_reads_typed_and_writes_back_the_same_json():
    info = RunInfo.from_json(OLDER)
    assert info.variables == ("t2m", "z500", "cos_zenith") and info.lead_range == (6, 72)
    assert info.statistics["z500"]["std"] == 3000.0 and info.hours_per_step == 6
    assert info.data_fingerprint is None  # an older run: no fingerprint recorded
    assert info.extra == {"written_by_a_later_version": {"x": 1}}
    assert info.to_json() == {**OLDER, "data_fingerprint": None, "input_statistics": None}
    with pytest.raises(AttributeError):
        info.task = "other"  # frozen


def test_a_corrdiff_record_has_only_its_task_and_relaunch_facts_leave_out_plan_history_and_data_root():
    info = RunInfo.from_json({"task": "corrdiff_regression", "plan": {"precision": "bf16"}})
    assert info.variables == () and info.lead_hours is None and info.statistics == {}
    facts = RunInfo.from_json(OLDER).facts()
    assert "plan" not in facts and "history" not in facts and "data_root" not in facts
    assert facts["variables"] == OLDER["variables"]


def test_read_run_record_names_a_damaged_file(tmp_path):
    (tmp_path / RUN_JSON).write_text(json.dumps(OLDER))
    assert read_run_record(tmp_path) == RunInfo.from_json(OLDER)
    (tmp_path / RUN_JSON).write_text("[1, 2]")
    with pytest.raises(DataError, match="JSON object"):
        read_run_record(tmp_path)
    (tmp_path / RUN_JSON).write_text("{not json")
    with pytest.raises(DataError, match="not valid JSON"):
        read_run_record(tmp_path)
