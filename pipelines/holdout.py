"""The held-out slice of the training originals that model selection uses, so that dev is only reported.

`select_on: holdout` (the default of `distill train`, `distill finetune-teacher` and `distill run`): a fixed,
seeded, stratified slice of the training split's examples (HOLDOUT_FRACTION of them, at most HOLDOUT_MAX, with
the split's class shares) is left out of training, together with every synthetic row made from them, and the
best epoch, early stopping and the teacher's best checkpoint are chosen on it. The slice depends only on the
split's labels and on HOLDOUT_SEED, never on the student's seed: every seed and both student families select
on the same examples, and a teacher fine-tuned by the project on the same split chose its checkpoint on the
same ones (and, refitted on a small split, then trained on them too). `select_on: dev` is the old
behaviour (selection on the first dev split), kept for comparison; the report says which was used.

Twins: a training split may hold the same text twice (GLUE's do). A held-out original's twin outside the slice,
and any synthetic row equal to a held-out original, would teach the held-out text word for word and flatter the
holdout, so every row whose normalised text key (`text_keys`: lower-cased, whitespace runs as one space) is a
held-out original's is left out of training too, and counted. The holdout's `sha256` (its example ids and keys)
is recorded wherever it is used, so the report can check that the teacher and every student chose on the same
examples.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .errors import DataError

SELECT_ON = ("holdout", "dev")
HOLDOUT_SPLIT = "holdout"  # its name beside the dev splits in metrics, histories and the report
HOLDOUT_FRACTION = 0.05
HOLDOUT_MAX = 2000
HOLDOUT_SEED = 0


def holdout_size(n_examples: int) -> int:
    """Examples held out of a split of n: 5%, at least 1, at most 2,000."""
    return min(HOLDOUT_MAX, max(1, round(HOLDOUT_FRACTION * n_examples)))


def holdout_examples(labels: np.ndarray) -> np.ndarray:
    """The held-out example indices (sorted) of a split whose examples have these label ids (-1: none), drawn
    with the split's class shares (stratified: a small holdout drawn at random can lean to one class, and then
    a student that predicts that class looks best on it). Within each class, examples are taken in the order of
    one seeded permutation of the whole split."""
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) < 2:
        raise DataError(f"a holdout needs at least 2 training examples, found {len(labels)}; "
                        "use --select-on dev (select_on: dev in a run config)")
    order = np.random.default_rng(HOLDOUT_SEED).permutation(len(labels))
    classes, counts = np.unique(labels, return_counts=True)
    quotas = class_quotas(holdout_size(len(labels)), counts)
    picked = [order[labels[order] == c][:q] for c, q in zip(classes, quotas)]
    return np.sort(np.concatenate(picked))


def class_quotas(k: int, counts: np.ndarray) -> np.ndarray:
    """k split among classes in proportion to their counts (largest remainder; ties to the earlier class)."""
    exact = k * counts / counts.sum()
    quotas = np.floor(exact).astype(np.int64)
    extra = np.argsort(-(exact - quotas), kind="stable")[:k - quotas.sum()]
    quotas[extra] += 1
    return quotas


def text_keys(texts: pa.Array | pa.ChunkedArray | list[str],
              pairs: pa.Array | pa.ChunkedArray | list[str] | None = None) -> pa.Array | pa.ChunkedArray:
    """Each row's normalised text key: lower-cased, whitespace runs as one space, trimmed (a pair's two texts
    joined by NUL)."""
    def normal(column):
        column = pa.array(column, pa.string()) if isinstance(column, list) else column
        return pc.utf8_trim_whitespace(pc.replace_substring_regex(pc.utf8_lower(column), r"\s+", " "))

    keys = normal(texts)
    return keys if pairs is None else pc.binary_join_element_wise(keys, normal(pairs), "\x00")


def holdout_sha256(example_ids: np.ndarray, keys: pa.Array | pa.ChunkedArray) -> str:
    """The holdout's identity: its example ids (sorted) with their text keys, in that order."""
    h = hashlib.sha256(np.asarray(example_ids, dtype=np.int64).tobytes())
    for key in keys.to_pylist():
        h.update(key.encode("utf-8", "surrogatepass") + b"\x00")
    return h.hexdigest()


def twins(keys: pa.Array | pa.ChunkedArray, held_keys: pa.Array | pa.ChunkedArray) -> np.ndarray:
    """bool [rows]: the rows whose key is one of the held-out originals'."""
    return pc.is_in(keys, value_set=pc.unique(held_keys)).to_numpy(zero_copy_only=False)


@dataclass
class HoldoutMask:
    """Which rows of a transfer or scored set belong to the holdout (originals and the rows made from them)."""

    held_out: np.ndarray  # bool [N]
    examples: int  # held-out examples
    of_examples: int  # examples the slice was drawn from
    twin_rows: int = 0  # rows outside the slice left out of training as twins of held-out originals
    twin_originals: int = 0  # ... of them originals
    sha256: str | None = None  # holdout_sha256

    def record(self) -> dict:
        return {"select_on": "holdout", "examples": self.examples, "of_examples": self.of_examples,
                "rows": int(self.held_out.sum()), "fraction": HOLDOUT_FRACTION, "max": HOLDOUT_MAX,
                "seed": HOLDOUT_SEED, "twin_rows_excluded": self.twin_rows,
                "twin_originals_excluded": self.twin_originals, "sha256": self.sha256}


def holdout_rows(source_index: np.ndarray, is_original: np.ndarray, gold: np.ndarray, where: str) -> HoldoutMask:
    """The holdout of a transfer set, from its `source_index` (the row of the original in the training split),
    `is_original` and gold label columns. The split is read back off its labelled originals (its size: the
    largest source index + 1; its labels: theirs), so the slice is the one a teacher fine-tuned on that split
    held out; unlabelled text augmented after the split (`distill augment --input`) is never held out."""
    labelled = is_original & (gold >= 0)
    originals = source_index[labelled]
    if len(originals) == 0:
        raise DataError("the set has no original rows with gold labels to hold out (a set made from unlabelled "
                        "text?); use --select-on dev (select_on: dev in a run config)", where)
    labels = np.full(int(originals.max()) + 1, -1, dtype=np.int64)
    labels[originals] = gold[labelled]
    chosen = holdout_examples(labels)
    return HoldoutMask(np.isin(source_index, chosen), int(np.isin(chosen, originals).sum()), len(labels))


def split_scores(scores: dict) -> tuple[dict, dict | None]:
    """An evaluation's metrics per split, as (the dev splits', the holdout's or None)."""
    return {k: v for k, v in scores.items() if k != HOLDOUT_SPLIT}, scores.get(HOLDOUT_SPLIT)
