"""pipelines/metrics.py against values computed by hand, and the degenerate cases a small or skewed dev split
produces (one class only, no predicted positives, no true positives): every metric stays a finite number."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipelines import metrics

# tp = 2 (rows 0, 1), fn = 2 (rows 2, 3), fp = 1 (row 4), tn = 5 (rows 5..9)
GOLD = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0])
PRED = np.array([1, 1, 0, 0, 1, 0, 0, 0, 0, 0])


def test_accuracy_f1_and_mcc_match_the_hand_computed_confusion_matrix():
    assert metrics.accuracy(PRED, GOLD) == 0.7  # 7 of 10
    assert metrics.f1(PRED, GOLD) == pytest.approx(4 / 7)  # 2tp / (2tp + fp + fn) = 4 / (4 + 1 + 2)
    # (tp·tn − fp·fn) / sqrt((tp+fp)(tp+fn)(tn+fp)(tn+fn)) = (10 − 2) / sqrt(3·4·6·7)
    assert metrics.mcc(PRED, GOLD) == pytest.approx(8 / math.sqrt(504))


def test_f1_of_the_other_class_counts_class_zero_as_positive():
    # with 0 as the positive class: tp = 5, fp = 2, fn = 1
    assert metrics.f1(PRED, GOLD, positive=0) == pytest.approx(10 / 13)


def test_perfect_and_inverted_predictions():
    assert (metrics.accuracy(GOLD, GOLD), metrics.f1(GOLD, GOLD), metrics.mcc(GOLD, GOLD)) == (1.0, 1.0, 1.0)
    inverted = 1 - GOLD
    assert (metrics.accuracy(inverted, GOLD), metrics.f1(inverted, GOLD), metrics.mcc(inverted, GOLD)) == (0.0, 0.0, -1.0)


def test_mcc_is_symmetric_in_the_labels():
    assert metrics.mcc(1 - PRED, 1 - GOLD) == pytest.approx(metrics.mcc(PRED, GOLD))


@pytest.mark.parametrize("pred, gold, expected", [
    # one class only, predicted right: accuracy 1; no positives at all, so F1 0; MCC undefined -> 0
    ([0, 0, 0], [0, 0, 0], {"accuracy": 1.0, "f1": 0.0, "mcc": 0.0}),
    ([1, 1, 1], [1, 1, 1], {"accuracy": 1.0, "f1": 1.0, "mcc": 0.0}),
    # no predicted positives: tp = fp = 0, fn = 2
    ([0, 0, 0, 0], [1, 0, 1, 0], {"accuracy": 0.5, "f1": 0.0, "mcc": 0.0}),
    # no true positives in the gold labels: tp = fn = 0, fp = 2
    ([1, 0, 1, 0], [0, 0, 0, 0], {"accuracy": 0.5, "f1": 0.0, "mcc": 0.0}),
    # every prediction the same class while gold has both: MCC undefined -> 0
    ([1, 1, 1, 1], [1, 0, 1, 0], {"accuracy": 0.5, "f1": pytest.approx(2 / 3), "mcc": 0.0}),
])
def test_degenerate_confusion_matrices_give_defined_metrics(pred, gold, expected):
    with np.errstate(all="raise"):  # a 0/0 or sqrt of nothing would raise here instead of slipping out as NaN
        got = metrics.compute(("accuracy", "f1", "mcc"), np.array(pred), np.array(gold))
    assert got == expected


def test_compute_skips_unlabelled_rows_and_keeps_the_requested_order():
    pred = np.array([1, 0, 1, 1])
    gold = np.array([1, -1, 0, -1])  # rows 1 and 3 have no gold label
    got = metrics.compute(("f1", "accuracy"), pred, gold)
    assert list(got) == ["f1", "accuracy"]
    assert got == {"f1": pytest.approx(2 / 3), "accuracy": 0.5}  # over rows 0 and 2 only: tp = 1, fp = 1


def test_compute_rounds_to_six_places():
    assert metrics.compute(("f1",), PRED, GOLD) == {"f1": 0.571429}


def test_no_labelled_rows_at_all_gives_zeros_not_nan():
    with np.errstate(all="raise"):
        got = metrics.compute(("accuracy", "f1", "mcc"), np.array([1, 0]), np.array([-1, -1]))
    assert got == {"accuracy": 0.0, "f1": 0.0, "mcc": 0.0}


def test_class_view_counts_confusion_precision_recall_and_calibration():
    from pipelines.metrics import class_view

    # rows: gold 0, 0, 1, 1, unlabelled; predicted 0 (p=.9), 1 (p=.6), 1 (p=.9), 1 (p=.9)
    logits = np.log(np.array([[0.9, 0.1], [0.4, 0.6], [0.1, 0.9], [0.1, 0.9], [0.5, 0.5]]))
    v = class_view(logits, np.array([0, 0, 1, 1, -1]), 2)
    assert v["confusion"] == [[1, 1], [0, 2]] and v["rows"] == 4
    assert v["precision"] == [1.0, pytest.approx(2 / 3, abs=1e-6)] and v["recall"] == [0.5, 1.0]
    # bin of 0.6: one wrong row (|0 - 0.6| x 1/4); bin of 0.9: three right rows (|1 - 0.9| x 3/4)
    assert v["ece"] == pytest.approx(0.6 / 4 + 0.1 * 3 / 4, abs=1e-6)
    perfect = class_view(np.array([[10.0, -10.0], [-10.0, 10.0]]), np.array([0, 1]), 2)
    assert perfect["ece"] < 1e-6 and perfect["precision"] == [1.0, 1.0]
