"""The scored set's rows a student learns from, the same for both families: the scored set read memory-mapped
and checked against the task (labels, logits), the holdout set aside (`select_on: holdout`), the rows the
objective has a target on, the ablation subsets (`drop_rule`, `max_draws`) and the filters (`filters.steer`).
The texts stay in the memory-mapped scored set; each family tokenises the kept rows its own way.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from .. import store
from ..errors import DataError, TeacherMismatchError
from ..holdout import holdout_rows, holdout_sha256, text_keys, twins
from .filters import steer

if TYPE_CHECKING:
    from ..student.config import TrainConfig
    from ..tasks import TaskSpec

TOKENISE_ROWS = 1 << 18  # rows of the scored set read at a time (`SelectedRows.pieces`)

def read_scored_table(cfg: TrainConfig, task: TaskSpec) -> pa.Table:
    """The scored set's columns that training reads (memory-mapped), with `label` and `is_original` filled in
    where it has none (every row: --limit cuts the rows trained on after the holdout is drawn from all of them);
    its logits checked against the task's label count."""
    cols = ["text", "teacher_logits"] + (["text_pair"] if task.is_pair else [])
    table = store.read_table(cfg.scored)
    missing = [c for c in cols if c not in table.column_names]
    if missing:
        raise DataError(f"{cfg.scored}: the scored set has no column(s) {missing}; its columns are "
                        f"{table.column_names}" + (" (a pair task needs text_pair)" if "text_pair" in missing else ""))
    # Sets scored from plain text (`distill score --input`) have no gold labels and no originals.
    if "label" not in table.column_names:
        table = table.append_column("label", pa.nulls(table.num_rows, pa.int64()))
    if "is_original" not in table.column_names:
        table = table.append_column("is_original", pa.array(np.zeros(table.num_rows, dtype=bool)))
    table = table.select([*cols, "label", "is_original"] + [c for c in ("source_index", "ops", "draw")
                                                            if c in table.column_names])
    logits_type = table.schema.field("teacher_logits").type
    num_labels = logits_type.list_size if pa.types.is_fixed_size_list(logits_type) else None
    if num_labels != task.num_labels:
        raise TeacherMismatchError(
            f"{cfg.scored}: teacher_logits has {num_labels} classes but task '{task.name}' has {task.num_labels} "
            f"({', '.join(task.label_names)}); score with a teacher fine-tuned on this task")
    return table


def training_rows(cfg: TrainConfig, gold: np.ndarray, is_original: np.ndarray) -> np.ndarray | None:
    """The rows the objective can learn from, as a mask (None: every row). The baseline keeps the gold-labelled
    originals (the paper's "without distillation"). `ce` on gold labels keeps the gold-labelled rows: the others
    have no target, and a length-sorted batch of only those would be an optimiser step without a gradient
    (Adam's momentum and the moving average would still move the weights). Every other objective has a target
    on every row: the teacher's logits, or its argmax."""
    if cfg.baseline:
        return is_original & (gold >= 0)
    if cfg.loss == "ce" and cfg.hard_labels == "gold":
        return gold >= 0
    return None


def hard_labels(cfg: TrainConfig, gold: np.ndarray, teacher: np.ndarray) -> np.ndarray:
    """[N] int64 hard label per row (-1: none): the gold labels, or with hard_labels=teacher the teacher's argmax
    on every row (the authors' code). The baseline has no teacher: gold labels whatever the setting."""
    if cfg.hard_labels == "teacher" and not cfg.baseline:
        return teacher.argmax(axis=1).astype(np.int64)
    return gold


def no_rows_message(cfg: TrainConfig, filtered: dict[str, int] | None = None) -> str:
    if filtered and sum(filtered.values()):
        return (f"{cfg.scored}: the filters left no rows to train on (removed: "
                + ", ".join(f"{n:,} {what.replace('_', ' ')}" for what, n in filtered.items())
                + "); loosen --min-confidence, --drop-disagreeing or --rebalance")
    if cfg.baseline:
        return f"{cfg.scored}: --baseline needs original rows with gold labels, found none"
    if cfg.loss == "ce" and cfg.hard_labels == "gold":
        return (f"{cfg.scored}: --loss ce with gold labels needs rows with gold labels, found none; "
                "--hard-labels teacher trains on the teacher's argmax instead")
    return f"{cfg.scored}: the scored set has no rows"


@dataclass
class HeldOut:
    """The holdout's original rows with their gold labels: what the best epoch is chosen on."""

    texts: list[str]
    pairs: list[str] | None
    labels: np.ndarray  # int64 [n]
    record: dict  # holdout.HoldoutMask.record(): how it was drawn, for metrics.json and the report


@dataclass
class SelectedRows:
    """The scored set's rows the objective learns from, with their targets (both student families read these),
    and the holdout left out of them (None with select_on: dev). The texts stay in the memory-mapped scored set:
    `pieces` reads the kept rows' texts a slice at a time, `table` all of them at once."""

    source: pa.Table  # the scored set, every row (memory-mapped)
    keep: np.ndarray | None  # bool [rows of source]: the rows kept (None: every row)
    gold: np.ndarray  # int64 [N], -1: no gold label
    teacher: np.ndarray  # float32 [N, C]
    labels: np.ndarray  # int64 [N]: the hard label of each row, -1 where it has none
    original_rows: int  # of the N kept rows
    holdout: HeldOut | None = None
    filtered: dict[str, int] = field(default_factory=dict)  # rows each filter removed (filters.steer)

    def __len__(self) -> int:
        return len(self.gold)

    def pieces(self, columns: list[str], rows: int | None = None, every_row: bool = False) -> Iterator[pa.Table]:
        """The kept rows' `columns` (with `every_row`, every row's: what a token cache holds), in order, `rows`
        (default TOKENISE_ROWS) rows of the scored set at a time."""
        rows = rows or TOKENISE_ROWS
        for start in range(0, self.source.num_rows, rows):
            piece = self.source.select(columns).slice(start, rows)
            yield piece if self.keep is None or every_row else piece.filter(pa.array(self.keep[start:start + rows]))

    def kept_rows(self) -> np.ndarray:
        """int64 indices of the kept rows among the scored set's (its first --limit) rows."""
        return np.arange(self.source.num_rows) if self.keep is None else np.flatnonzero(self.keep)

    @property
    def table(self) -> pa.Table:
        """The kept rows' columns, all in memory."""
        return self.source if self.keep is None else self.source.filter(pa.array(self.keep))


def split_holdout(cfg: TrainConfig, table: pa.Table, gold: np.ndarray, is_original: np.ndarray
                  ) -> tuple[np.ndarray | None, HeldOut | None]:
    """With select_on: holdout, the mask of rows outside the holdout (what training may use) and the holdout's
    gold-labelled originals; with select_on: dev, (None, None)."""
    if cfg.select_on != "holdout":
        return None, None
    if "source_index" not in table.column_names:
        raise DataError("the scored set has no source_index column to draw a holdout from; use --select-on dev",
                        str(cfg.scored))
    source_index = table.column("source_index").to_numpy()
    mask = holdout_rows(source_index, is_original, gold, str(cfg.scored))
    rows = np.flatnonzero(mask.held_out & is_original & (gold >= 0))
    if len(rows) == 0:
        raise DataError("the holdout has no original rows with gold labels; use --select-on dev", str(cfg.scored))
    picked = table.take(pa.array(rows))
    pair = "text_pair" in picked.column_names
    held_keys = text_keys(picked.column("text"), picked.column("text_pair") if pair else None)
    twin = twin_rows(table, held_keys, pair) & ~mask.held_out
    mask.twin_rows, mask.twin_originals = int(twin.sum()), int((twin & is_original).sum())
    mask.sha256 = holdout_sha256(source_index[rows], held_keys)
    return ~(mask.held_out | twin), HeldOut(picked.column("text").to_pylist(),
                                            picked.column("text_pair").to_pylist() if pair else None, gold[rows],
                                            mask.record())


def twin_rows(table: pa.Table, held_keys: pa.Array, pair: bool) -> np.ndarray:
    """bool [rows]: the rows whose normalised text is a held-out original's (`holdout.twins`), a slice at a time
    (the keys of a 10M-row set would not fit in a few hundred MB at once)."""
    out = np.zeros(table.num_rows, dtype=bool)
    for start in range(0, table.num_rows, TOKENISE_ROWS):
        piece = table.slice(start, TOKENISE_ROWS)
        keys = text_keys(piece.column("text"), piece.column("text_pair") if pair else None)
        out[start:start + piece.num_rows] = twins(keys, held_keys)
    return out


def select_rows(cfg: TrainConfig, task: TaskSpec) -> SelectedRows:
    """Read the scored set, check its labels and logits, set the holdout aside (select_on: holdout), and keep the
    rows the objective can learn from that the filters (`filters.steer`) let through."""
    full = read_scored_table(cfg, task)
    gold = full.column("label").fill_null(-1).to_numpy().astype(np.int64)
    is_original = full.column("is_original").fill_null(False).to_numpy(zero_copy_only=False)
    outside, held_out = split_holdout(cfg, full, gold, is_original)  # drawn from every row, --limit or not
    table = full.slice(0, cfg.limit) if cfg.limit is not None else full
    gold, is_original = gold[:table.num_rows], is_original[:table.num_rows]
    outside = outside[:table.num_rows] if outside is not None else None
    if gold.max(initial=-1) >= task.num_labels:
        raise DataError(f"{cfg.scored}: label {gold.max()} is out of range for task '{task.name}'")
    teacher = pc.list_flatten(table.column("teacher_logits")).to_numpy().astype(np.float32)  # a writable copy
    teacher = teacher.reshape(-1, task.num_labels)  # [N, C]
    if not np.isfinite(teacher).all():
        raise DataError(f"{cfg.scored}: teacher_logits holds NaN or infinite values; score the set again")
    keep = _both(_both(training_rows(cfg, gold, is_original), outside), ablation_rows(cfg, table, is_original))
    steered, filtered = steer(cfg, gold, is_original, teacher, keep if keep is not None else np.ones(len(gold), bool))
    keep = _both(keep, steered if filtered else None)
    if keep is not None:
        gold, teacher, is_original = gold[keep], teacher[keep], is_original[keep]
    if len(gold) == 0:
        raise DataError(no_rows_message(cfg, filtered))
    return SelectedRows(table, keep, gold, teacher, hard_labels(cfg, gold, teacher), int(is_original.sum()),
                        held_out, filtered)


def ablation_rows(cfg: TrainConfig, table: pa.Table, is_original: np.ndarray) -> np.ndarray | None:
    """The subset an ablation trains on (None: every row): without the synthetic rows that `drop_rule` changed,
    and/or the originals with their first `max_draws` draws. A subset of the full transfer set approximates a
    transfer set made without the rule (or with fewer draws): the dedupe ran over all of it."""
    keep = None
    if cfg.drop_rule is not None:
        ops = table.column("ops").combine_chunks() if "ops" in table.column_names else None
        if ops is None:
            raise DataError("--drop-rule needs the transfer set's ops column, which this scored set lacks",
                            str(cfg.scored))
        changed = np.zeros(table.num_rows, dtype=bool)
        hits = pc.equal(pc.list_flatten(ops), cfg.drop_rule).to_numpy(zero_copy_only=False)
        changed[pc.list_parent_indices(ops).to_numpy()[hits]] = True
        keep = is_original | ~changed
    if cfg.max_draws is not None:
        if "draw" not in table.column_names:
            raise DataError("--max-draws needs the transfer set's draw column (added in 0.1.0, #14); augment and "
                            "score the set again", str(cfg.scored))
        draw = table.column("draw").fill_null(-1).to_numpy()
        keep = _both(keep, is_original | (draw < cfg.max_draws))
    return keep


def _both(a: np.ndarray | None, b: np.ndarray | None) -> np.ndarray | None:
    """Two row masks together (None: every row)."""
    return b if a is None else a if b is None else a & b
