"""pipelines/student/filters.py: the training-time filters of the transfer set, on hand-made rows and in the
train stage (counts in stats.json, metrics.json and the fingerprint)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pipelines.metrics import softmax
from pipelines.training.filters import steer, surplus_rows
from pipelines.student.config import TrainConfig
from pipelines.tasks import get_task

from .student_fixtures import demo_scored_set, tiny_train_config, write_scored_set


def cfg(**kw):
    return TrainConfig(scored="s", task=get_task("demo"), out="o", **kw)


# rows: 2 originals (gold 0, 1), 4 synthetic; the teacher is unsure of row 3 and wrong on original 1
GOLD = np.array([0, 1, -1, -1, -1, -1])
ORIGINAL = np.array([True, True, False, False, False, False])
TEACHER = np.array([[3.0, 0.0], [2.0, 0.0], [4.0, 0.0], [0.1, 0.0], [3.0, 0.0], [0.0, 3.0]])
ALL = np.ones(6, bool)


def test_each_filter_removes_what_it_says_and_counts_it():
    assert softmax(np.array([[0.0, 0.0]])).max(axis=1).tolist() == [0.5]  # the confidence min_confidence reads
    keep, counts = steer(cfg(), GOLD, ORIGINAL, TEACHER, ALL)
    assert keep.all() and counts == {}
    keep, counts = steer(cfg(min_confidence=0.6), GOLD, ORIGINAL, TEACHER, ALL)
    assert keep.tolist() == [True, True, True, False, True, True] and counts == {"low_confidence_synthetic": 1}
    keep, counts = steer(cfg(drop_disagreeing=True), GOLD, ORIGINAL, TEACHER, ALL)
    assert keep.tolist() == [True, False, True, True, True, True] and counts == {"disagreeing_originals": 1}
    # synthetic classes by the teacher: 3 of class 0, 1 of class 1; originals 1:1 -> keep 1 of each
    keep, counts = steer(cfg(rebalance=True), GOLD, ORIGINAL, TEACHER, ALL)
    assert counts == {"rebalanced_synthetic": 2} and keep[5] and keep[2:5].sum() == 1
    assert np.array_equal(keep, steer(cfg(rebalance=True, seed=7), GOLD, ORIGINAL, TEACHER, ALL)[0])  # not by seed
    keep, counts = steer(cfg(min_confidence=0.99, baseline=True), GOLD, ORIGINAL, TEACHER, ALL)
    assert keep.all() and counts == {}  # a baseline has no teacher to filter by


def test_rebalancing_keeps_the_largest_set_with_the_originals_shares():
    predicted = np.array([0] * 50 + [1] * 10 + [2] * 40)
    gold = np.array([0] * 5 + [1] * 3 + [2] * 2)  # shares .5 .3 .2: class 1 binds -> 33 rows: 16, 10, 6
    drop = surplus_rows(predicted, np.ones(100, bool), gold, 3)
    assert np.bincount(predicted[~drop], minlength=3).tolist() == [16, 10, 6]
    assert surplus_rows(predicted, np.ones(100, bool), np.array([0, 0]), 3)[50:].all()  # classes absent: none kept


def test_the_train_stage_records_what_the_filters_removed(tmp_path):
    scored = demo_scored_set(tmp_path / "scored")
    out = tmp_path / "s"
    train_stage_run(tiny_train_config(scored, out, epochs=1, min_confidence=0.9, drop_disagreeing=True))
    stats = json.loads((out / "stats.json").read_text())
    metrics = json.loads((out / "metrics.json").read_text())
    removed = stats["filtered"]
    assert set(removed) == {"low_confidence_synthetic", "disagreeing_originals"} and removed == metrics["filtered"]
    assert removed["low_confidence_synthetic"] > 0
    plain = train_stage_run(tiny_train_config(scored, tmp_path / "p", epochs=1))
    assert json.loads((plain.out_dir / "stats.json").read_text())["rows"] == stats["rows"] + sum(removed.values())
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["min_confidence"] == 0.9 and manifest["config"]["drop_disagreeing"] is True
    from pipelines.errors import DataError

    wrong = write_scored_set(tmp_path / "wrong", ["a b", "c d", "a", "c"],
                             np.array([[0.0, 1.0], [1.0, 0.0], [0.1, 0.0], [0.0, 0.1]]), labels=[0, 1, None, None],
                             source_index=[0, 1, 0, 1])
    with pytest.raises(DataError, match=r"the filters left no rows to train on \(removed: 2 low confidence "
                                        r"synthetic, 2 disagreeing originals\); loosen --min-confidence"):
        train_stage_run(tiny_train_config(wrong, tmp_path / "none", min_confidence=0.9, drop_disagreeing=True,
                                          select_on="dev"))
    assert not (tmp_path / "none").exists()


def train_stage_run(c):
    from pipelines.stages import train

    return train.run(c)
