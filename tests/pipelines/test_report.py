"""pipelines/report.py on hand-made rows: the comparison line, and a run trained without a baseline."""

from __future__ import annotations

import json

import numpy as np

from pipelines import report as R
from pipelines.tasks import get_task


def _row(name: str, accuracy: float, params: int, rate: float) -> R.ModelRow:
    return R.ModelRow(name, {"dev": {"accuracy": accuracy}}, params, params // 10, rate, 1.0, "/x")


def _write(tmp_path, rows):
    agreement = {"gold_agreement_on_originals": 0.9, "_confidence": np.array([0.9, 0.6]),
                 "_original": np.array([True, False])}
    transfer = {"originals": 1, "synthetic": 1, "rows": 2, "rows_per_rule": {"mask": 1}}
    path = R.write_report(tmp_path, run_name="t", task=get_task("sst2"), teacher="teacher", rows=rows,
                          transfer_stats=transfer, agreement=agreement, stages=[], settings={}, speed_rows=2,
                          command="distill run t", machine="2 CPU cores")
    return path.read_text(), json.loads((tmp_path / "report.json").read_text())


def test_report_compares_the_distilled_student_with_teacher_and_baseline(tmp_path):
    rows = [_row("Teacher", 0.90, 1000, 10.0), _row("distilled", 0.88, 10, 1000.0), _row("baseline", 0.83, 10, 990.0)]
    md, doc = _write(tmp_path, rows)
    cmp = doc["comparison"]
    assert round(cmp["student_vs_teacher"], 6) == -2.0 and round(cmp["distilled_vs_baseline"], 6) == 5.0
    assert cmp["speedup_vs_teacher"] == 100.0 and cmp["params_fraction_of_teacher"] == 0.01
    assert "-2.0 points against the teacher, +5.0 against the same student trained without distillation" in md
    assert "| distilled | 88.0 |" in md


def test_report_without_a_baseline_claims_no_comparison_with_one(tmp_path):
    md, doc = _write(tmp_path, [_row("Teacher", 0.90, 1000, 10.0), _row("distilled", 0.88, 10, 1000.0)])
    assert "distilled_vs_baseline" not in doc["comparison"]
    assert "-2.0 points against the teacher; 100× the teacher's CPU speed" in md
    assert "without distillation" not in md
