"""pipelines/batching.py: the shared batch plans give exactly the batches the three hand-written versions gave
(scoring, fine-tuning, student training), in the same order for the same Generator."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines import batching


def _scoring_reference(lengths, batch_tokens):
    order = np.argsort(-lengths, kind="stable")
    batches, i = [], 0
    while i < len(order):
        size = max(1, batch_tokens // max(1, int(lengths[order[i]])))
        batches.append(order[i:i + size])
        i += size
    return batches


def _finetune_reference(lengths, batch_tokens, rng, group_rows):
    perm = rng.permutation(len(lengths))
    batches = []
    for start in range(0, len(perm), group_rows):
        group = perm[start:start + group_rows]
        batches += [group[b] for b in _scoring_reference(lengths[group], batch_tokens)]
    return [batches[k] for k in rng.permutation(len(batches))]


def _student_reference(lengths, batch_size, rng):
    perm = rng.permutation(len(lengths))
    order = perm[np.argsort(lengths[perm], kind="stable")]
    batches = [order[i:i + batch_size] for i in range(0, len(order), batch_size)]
    return [batches[i] for i in rng.permutation(len(batches))]


def _same(a, b):
    return len(a) == len(b) and all(x.dtype == y.dtype and np.array_equal(x, y) for x, y in zip(a, b))


@pytest.mark.parametrize("n", [0, 1, 37, 5000])
def test_batching_equals_the_hand_written_plans(n):
    lengths = np.random.default_rng(n).integers(1, 60, size=n)
    for budget in (1, 50, 4096):
        assert _same(batching.by_tokens(lengths, budget), _scoring_reference(lengths, budget))
        got = batching.by_tokens(lengths, budget, np.random.default_rng(7), group_rows=1000)
        assert _same(got, _finetune_reference(lengths, budget, np.random.default_rng(7), 1000))
    for size in (1, 32, 10_000):
        got = batching.by_rows(lengths, size, np.random.default_rng(3))
        assert _same(got, _student_reference(lengths, size, np.random.default_rng(3)))


def test_batching_by_rows_in_groups_sorts_within_each_shuffled_group_only():
    """Teacher fine-tuning: batches of `size` examples, each from one group of `group` shuffled rows, sorted by
    length inside it; together they cover every row once."""
    lengths = np.random.default_rng(5).integers(1, 60, size=1000)
    size, group = 32, 256
    got = batching.by_rows(lengths, size, np.random.default_rng(2), group_rows=group)
    perm = np.random.default_rng(2).permutation(1000)
    groups = [set(perm[i:i + group].tolist()) for i in range(0, 1000, group)]
    assert sorted(np.concatenate(got).tolist()) == list(range(1000))
    assert all(len(b) <= size for b in got)
    assert sum(len(b) < size for b in got) == sum(len(g) % size > 0 for g in groups)  # one short batch a group
    assert all(any(set(b.tolist()) <= g for g in groups) for b in got)
    assert all(np.all(np.diff(lengths[b]) >= 0) for b in got)
    one_group = batching.by_rows(lengths, size, np.random.default_rng(2), group_rows=10_000)
    assert _same(one_group, batching.by_rows(lengths, size, np.random.default_rng(2)))  # the students' plan


def test_batching_by_rows_unshuffled_is_sorted():
    lengths = np.array([5, 1, 3, 1, 4])
    assert [b.tolist() for b in batching.by_rows(lengths, 2)] == [[1, 3], [2, 4], [0]]
