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
    rest, splits, record = hold_out(FinetuneConfig(task=demo, out=tmp_path / "t"), train, {})
    assert record["examples"] == 16 and len(rest) == len(train) - 16 and list(splits) == ["holdout"]
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


def _scored_with_twins(out):
    """A scored set of 40 originals (one synthetic row each), where another original and a synthetic row of it
    repeat the held-out original's text (in other case and spacing): the twins GLUE train splits hold."""
    from .student_fixtures import write_scored_set

    labels = np.array([i % 2 for i in range(40)])
    held = int(holdout_examples(labels)[0])  # one of the two held-out examples (5% of 40)
    twin = next(i for i in range(40) if i not in holdout_examples(labels))
    texts, gold, orig, src = [], [], [], []
    for i in range(40):
        base = "a fine film" if i == held else f"film number {i}"
        texts += ["A  Fine film " if i == twin else base, "a fine FILM" if i == twin else f"{base} again"]
        gold += [int(labels[i]), None]
        orig += [True, False]
        src += [i, i]
    logits = np.zeros((80, 2), np.float32)
    return write_scored_set(out, texts, logits, labels=gold, is_original=orig, source_index=src), held, twin


def test_a_held_out_originals_twins_are_left_out_of_training_and_counted(tmp_path):
    from pipelines.tasks import get_task
    from pipelines.training.rows import select_rows

    from .student_fixtures import tiny_train_config

    scored, held, twin = _scored_with_twins(tmp_path / "s")
    rows = select_rows(tiny_train_config(scored, tmp_path / "o"), get_task("demo"))
    trained = set(rows.table.column("text").to_pylist())
    assert "a fine film" not in trained and "A  Fine film " not in trained and "a fine FILM" not in trained
    record = rows.holdout.record
    assert record["twin_rows_excluded"] == 2 and record["twin_originals_excluded"] == 1
    assert len(rows) == 80 - 4 - 2 and len(record["sha256"]) == 64  # the holdout's four rows and the two twins


def test_limit_draws_the_same_holdout_as_the_whole_set(tmp_path):
    from pipelines.tasks import get_task
    from pipelines.training.rows import select_rows

    from .student_fixtures import tiny_train_config

    scored, _, _ = _scored_with_twins(tmp_path / "s")
    whole = select_rows(tiny_train_config(scored, tmp_path / "o"), get_task("demo")).holdout.record
    cut = select_rows(tiny_train_config(scored, tmp_path / "o", limit=30), get_task("demo"))
    assert cut.holdout.record == whole and cut.source.num_rows == 30  # the teacher's holdout, not a smaller one


def test_the_teachers_holdout_leaves_out_twins_and_matches_the_students(tmp_path):
    from pipelines.stages.finetune import FinetuneConfig, hold_out
    from pipelines import store
    from pipelines.tasks import Split, get_task
    from pipelines.training.rows import select_rows

    from .student_fixtures import tiny_train_config

    scored, held, twin = _scored_with_twins(tmp_path / "s")
    table = store.read_table(scored)
    originals = table.filter(table.column("is_original"))
    split = Split("train.tsv", originals.column("text").to_pylist(), None,
                  np.array(originals.column("label").to_pylist()))
    rest, splits, record = hold_out(FinetuneConfig(task=get_task("demo"), out=tmp_path / "t"), split, {})
    assert "a fine film" in splits["holdout"].texts and "A  Fine film " not in rest.texts
    assert record["twin_originals_excluded"] == 1 and len(rest) == 40 - 2 - 1
    student = select_rows(tiny_train_config(scored, tmp_path / "o"), get_task("demo")).holdout.record
    assert record["sha256"] == student["sha256"]  # the report compares these
