"""Length-bucketed batches of row indices, shared by teacher scoring, teacher fine-tuning and student training.

One idea, used three ways: order the rows by length, so that a batch holds rows of about the same length and
little compute goes to padding, then cut that order into batches, by a padded-token budget (teacher inference:
rows × longest row stays under the budget) or by a row count (training: students and teachers). Inference keeps
the order (longest first); training shuffles (rows before sorting, so equal lengths come in random order, and
the batches after cutting, so batch lengths are not ordered through the epoch).

Pure numpy and deterministic: the same lengths and the same Generator state give the same batches in the same
order. Every function returns a list of int64 index arrays that together cover each row exactly once.
"""

from __future__ import annotations

import numpy as np

GROUP_ROWS = 2048  # shuffled token batches: rows are sorted by length within shuffled groups of this many rows


# ----------------------------------------------------------------------------------------------- the core

def sort_by_length(lengths: np.ndarray, rows: np.ndarray | None = None, *, longest_first: bool = False,
                   ) -> np.ndarray:
    """`rows` (default: all rows in index order) stably sorted by length: rows of one length keep their order
    in `rows`, so shuffling `rows` first randomises ties."""
    rows = np.arange(len(lengths)) if rows is None else rows
    keys = lengths[rows]
    return rows[np.argsort(-keys if longest_first else keys, kind="stable")]


def cut_by_tokens(order: np.ndarray, lengths: np.ndarray, batch_tokens: int) -> list[np.ndarray]:
    """Cut `order` (longest row first) into batches whose padded size (rows × the batch's first, longest row)
    is at most `batch_tokens`; a row longer than the budget goes alone."""
    batches, i = [], 0
    while i < len(order):
        size = max(1, batch_tokens // max(1, int(lengths[order[i]])))
        batches.append(order[i:i + size])
        i += size
    return batches


def cut_by_rows(order: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Cut `order` into batches of `batch_size` rows (the last may be smaller)."""
    return [order[i:i + batch_size] for i in range(0, len(order), batch_size)]


def shuffle_batches(batches: list[np.ndarray], rng: np.random.Generator) -> list[np.ndarray]:
    return [batches[k] for k in rng.permutation(len(batches))]


# ----------------------------------------------------------------------------------------------- the callers' shapes

def by_tokens(lengths: np.ndarray, batch_tokens: int, rng: np.random.Generator | None = None,
              group_rows: int = GROUP_ROWS) -> list[np.ndarray]:
    """Batches under a padded-token budget.

    Without `rng` (scoring, evaluation): all rows longest first, in that order, so a batch that does not fit in
    memory fails at the start, not after an hour. With `rng` (fine-tuning): shuffle the rows, sort by length
    within groups of `group_rows` rows (little padding, yet every epoch mixes differently), then shuffle the
    batches."""
    if rng is None:
        return cut_by_tokens(sort_by_length(lengths, longest_first=True), lengths, batch_tokens)
    perm = rng.permutation(len(lengths))
    batches = []
    for start in range(0, len(perm), group_rows):
        group = sort_by_length(lengths, perm[start:start + group_rows], longest_first=True)
        batches += cut_by_tokens(group, lengths, batch_tokens)
    return shuffle_batches(batches, rng)


def by_rows(lengths: np.ndarray, batch_size: int, rng: np.random.Generator | None = None,
            group_rows: int | None = None) -> list[np.ndarray]:
    """Batches of `batch_size` rows, rows sorted by length (shortest first).

    With `rng` (student training): random order within a length, and the batches shuffled. Padding is near
    zero, so an epoch costs about what its real tokens cost. With `group_rows` too (teacher fine-tuning), rows
    are sorted within shuffled groups of that many rows only, so a batch mixes lengths a little and the batches
    of an epoch differ from one epoch to the next. Without `rng`: a stable sort, batches in order."""
    if rng is None:
        return cut_by_rows(sort_by_length(lengths), batch_size)
    perm = rng.permutation(len(lengths))
    group = len(perm) if group_rows is None else group_rows
    batches = []
    for start in range(0, len(perm), max(1, group)):
        batches += cut_by_rows(sort_by_length(lengths, perm[start:start + group]), batch_size)
    return shuffle_batches(batches, rng)
