"""pipelines/holdout.py: the slice of the training originals that model selection uses instead of dev."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines.errors import DataError
from pipelines.holdout import class_quotas, holdout_examples, holdout_rows, holdout_size


def test_the_holdout_is_a_twentieth_of_the_split_at_most_2000():
    assert holdout_size(2) == 1 and holdout_size(320) == 16 and holdout_size(40_000) == 2000
    assert holdout_size(67_349) == 2000 and holdout_size(3_668) == 183


def test_the_holdout_keeps_the_splits_class_shares_and_is_fixed():
    labels = np.array([0] * 300 + [1] * 100)  # 3:1, sorted: an unstratified prefix would be one class
    chosen = holdout_examples(labels)
    assert len(chosen) == 20 and np.bincount(labels[chosen]).tolist() == [15, 5]
    assert np.array_equal(chosen, holdout_examples(labels.copy())) and np.all(np.diff(chosen) > 0)
    shuffled = np.random.default_rng(1).permutation(labels)  # other labels: another slice, same shares
    assert np.bincount(shuffled[holdout_examples(shuffled)]).tolist() == [15, 5]
    assert class_quotas(5, np.array([1, 1, 1])).tolist() == [2, 2, 1] and class_quotas(3, np.array([9, 1])).sum() == 3
    with pytest.raises(DataError, match="at least 2 training examples.*--select-on dev"):
        holdout_examples(np.array([1]))


def test_synthetic_rows_go_with_their_original():
    # 10 originals (source 0..9), each with two synthetic rows after it
    source = np.repeat(np.arange(10), 3)
    is_original = np.tile([True, False, False], 10)
    gold = np.where(is_original, source % 2, -1)
    mask = holdout_rows(source, is_original, gold, "set")
    held = set(source[mask.held_out].tolist())
    assert len(held) == mask.examples == 1 and mask.of_examples == 10 and mask.held_out.sum() == 3
    assert held == set(holdout_examples(np.arange(10) % 2).tolist())  # the split's slice, read back off the set
    assert mask.record()["rows"] == 3
    with pytest.raises(DataError, match="no original rows with gold labels to hold out"):
        holdout_rows(source, np.zeros(30, bool), gold, "set")


def test_students_hold_out_the_examples_the_fine_tuned_teacher_held_out(tmp_path):
    """A transfer set of the demo split (the real augment stage) and `finetune-teacher`'s split of the same
    training file leave out the same examples."""
    import pyarrow.compute as pc

    from pipelines import store
    from pipelines.stages import augment
    from pipelines.stages.augment import AugmentConfig, RecipeConfig
    from pipelines.stages.finetune import FinetuneConfig, hold_out
    from pipelines.tasks import get_task, read_split

    demo = get_task("demo")
    train, _ = read_split(demo, demo.default_data, "train")
    rest, splits, n = hold_out(FinetuneConfig(task=demo, out=tmp_path / "t"), train, {})
    assert n == 16 and len(rest) == len(train) - 16 and list(splits) == ["holdout"]
    teacher_held = set(splits["holdout"].texts)
    out = augment.run(AugmentConfig(task=demo, out=tmp_path / "transfer", recipe=RecipeConfig(n_iter=2),
                                    workers=1)).out_dir
    table = store.read_table(out)
    is_original = table.column("is_original").to_numpy(zero_copy_only=False)
    gold = pc.fill_null(table.column("label"), -1).to_numpy()
    mask = holdout_rows(table.column("source_index").to_numpy(), is_original, gold, str(out))
    texts = np.array(table.column("text").to_pylist(), dtype=object)
    assert set(texts[mask.held_out & is_original].tolist()) == teacher_held
    assert not teacher_held & set(rest.texts)
