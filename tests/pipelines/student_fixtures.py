"""Helpers for the student tests: scored sets written with the store's own writer, without a teacher."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa

from pipelines import store

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared"
SST2 = SHARED / "data" / "glue" / "SST-2"
TEACHER = SHARED / "teachers" / "minilm-sst2"


def scored_schema(num_labels: int, pair: bool = False) -> pa.Schema:
    fields = [pa.field("text", pa.string())]
    if pair:
        fields.append(pa.field("text_pair", pa.string()))
    fields += [
        pa.field("label", pa.int64()),
        pa.field("source_index", pa.int64()),
        pa.field("draw", pa.int32()),
        pa.field("is_original", pa.bool_()),
        pa.field("ops", pa.list_(pa.string())),
        pa.field("teacher_logits", pa.list_(pa.float32(), num_labels)),
    ]
    return pa.schema(fields)


def write_scored_set(out: Path, texts: list[str], logits: np.ndarray, labels: list[int | None] | None = None,
                     is_original: list[bool] | None = None, pairs: list[str] | None = None,
                     source_index: list[int] | None = None, ops: list[list[str]] | None = None,
                     recorded: dict | None = None) -> Path:
    """A finished `score` stage output (data, state.json, manifest) holding the given rows; `recorded`: more
    manifest entries (the task and data directory a real scored set records)."""
    n = len(texts)
    logits = np.asarray(logits, dtype=np.float32)
    labels = labels if labels is not None else [None] * n
    is_original = is_original if is_original is not None else [lab is not None for lab in labels]
    source_index = source_index if source_index is not None else list(range(n))
    ops = ops if ops is not None else [[] if o else ["mask"] for o in is_original]
    made: dict[int, int] = {}  # synthetic rows so far per source: the draw number of the next
    draws = []
    for src, orig in zip(source_index, is_original):
        draws.append(None if orig else made.get(src, 0))
        made[src] = made.get(src, 0) + (not orig)
    schema = scored_schema(logits.shape[1], pairs is not None)
    cols = {"text": texts}
    if pairs is not None:
        cols["text_pair"] = pairs
    cols.update(label=labels, source_index=source_index, draw=draws, is_original=is_original, ops=ops,
                teacher_logits=pa.FixedSizeListArray.from_arrays(pa.array(logits.reshape(-1)), logits.shape[1]))
    table = pa.table(cols).cast(schema)
    fp = store.fingerprint("test-scored", texts[:50], n, float(logits.sum()), pairs is not None)
    with store.stage_run("score", out, fp, {"test": True}, seed=0, extra={"teacher": "test", **(recorded or {})}) as run:
        store.write_dataset(run.work_dir, table, schema, fp)
        run.stats["rows"] = n
        run.commit()
    return Path(out)


def demo_scored_set(out: Path, synthetic_per_row: int = 1, seed: int = 0, recorded: dict | None = None) -> Path:
    """The demo task's train split as a scored set: each original plus masked copies, with logits of a fake
    teacher that knows the gold label (and keeps its opinion on the copies)."""
    from augment import MASK_SYMBOL
    from pipelines.tasks import get_task, read_split

    split, _ = read_split(get_task("demo"), get_task("demo").default_data, "train")
    rng = np.random.default_rng(seed)
    texts, labels, orig, src, logits = [], [], [], [], []
    for i, (text, y) in enumerate(zip(split.texts, split.labels.tolist())):
        z = np.array([2.0 - 4.0 * y, 4.0 * y - 2.0]) + rng.normal(0, 0.5, 2)
        words = text.split()
        for k in range(1 + synthetic_per_row):
            if k == 0:
                texts.append(text)
            else:
                w = list(words)
                w[rng.integers(len(w))] = MASK_SYMBOL
                texts.append(" ".join(w))
            labels.append(y if k == 0 else None)
            orig.append(k == 0)
            src.append(i)
            logits.append(z if k == 0 else z * 0.8)
    return write_scored_set(out, texts, np.stack(logits), labels=labels, is_original=orig, source_index=src,
                            recorded=recorded)


def tiny_train_config(scored: Path, out: Path, **overrides):
    """A fast TrainConfig on the demo task: tiny dims, no pretrained vectors, no export."""
    from pipelines.stages.train import TrainConfig
    from pipelines.tasks import get_task

    values = dict(scored=scored, task=get_task("demo"), out=out, vectors="none", embed_dim=16, hidden=8, fc=8,
                  epochs=2, batch_size=32, export="none", lr=3e-3, patience=5, threads=1, ema=0.0)
    values.update(overrides)
    return TrainConfig(**values)
