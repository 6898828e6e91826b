"""Measuring: the report's numbers, collected from a run's directories and from the models themselves.

The teacher is run as the score stage ran it (device, dtype, max_length) and its dev metrics are cached by
fingerprint; the students are loaded as they are served (`student.served`, float32 on CPU) and timed on a sample
of the dev sentences; several seeds become one row (mean ± sample std); an ablation's row comes from its students'
metrics.json and stats.json; the transfer set gives the teacher's agreement with the gold labels.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np

from .. import metrics, store
from ..tasks import Split, TaskSpec
from .rows import AblationRow, ModelRow


def _timed_rate(fn, n: int, repeats: int = 2) -> float:
    """Sentences/s of `fn()` over n sentences: the best of a few runs after a warm-up."""
    fn()
    best = min(_seconds(fn) for _ in range(repeats))
    return round(n / best, 1)


def _seconds(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


TEACHER_EVAL_VERSION = 2  # bump whenever the teacher's dev metrics change for the same inputs (2: class views)


def teacher_eval_fingerprint(identity: dict[str, str], dev_hashes: dict[str, str], task: TaskSpec, max_length: int,
                             device_type: str, dtype: str) -> str:
    """What the teacher's dev metrics depend on: its weights, config and tokenizer, the dev files, the task (label
    map, metrics), the cut-off length, the precision it ran at (bf16 on a GPU can flip a near-tied argmax) and
    the library versions that change its numbers."""
    return store.fingerprint(f"teacher-eval@{TEACHER_EVAL_VERSION}", identity, dev_hashes, task.to_dict(),
                             max_length, device_type, dtype, store.result_versions())


def cached_teacher_scores(cache: Path, fingerprint: str) -> tuple[dict, dict] | None:
    """The dev metrics and class views stored in `cache` for this fingerprint; None when absent, stale or
    unreadable (then the teacher is simply evaluated again)."""
    try:
        doc = json.loads(cache.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(doc, dict) or doc.get("fingerprint") != fingerprint or not isinstance(doc.get("dev"), dict):
        return None
    return doc["dev"], doc.get("classes") or {}


def evaluate_teacher(scorer: Any, task: TaskSpec, dev: dict[str, Split]) -> tuple[dict, dict]:
    """The task's metrics on every dev split (the argmax of a `teacher.TeacherScorer` against the gold labels),
    and each split's class view (`metrics.class_view`)."""
    logits = {name: scorer.predict(split.texts, split.text_pairs) for name, split in dev.items()}
    return evaluated(task, dev, logits)


def evaluated(task: TaskSpec, dev: dict[str, Split], logits: dict[str, np.ndarray]) -> tuple[dict, dict]:
    """({split: task metrics}, {split: class view}) of a model's logits on the dev splits."""
    scores = {n: metrics.compute(task.metrics, logits[n].argmax(1), s.labels) for n, s in dev.items()}
    return scores, {n: metrics.class_view(logits[n], s.labels, logits[n].shape[1]) for n, s in dev.items()}


def measure_teacher(teacher: str, task: TaskSpec, dev: dict[str, Split], speed_rows: int, *,
                    max_length: int = 128, device: str = "cpu", dtype: str = "auto",
                    batch_tokens: int | None = None, trust_remote_code: bool = False,
                    cache: Path | None = None) -> ModelRow:
    """Dev metrics, size and speed of the teacher, run as the score stage ran it (device, dtype, the
    `max_length` the transfer set was scored with; length-sorted token-budget batches).

    The dev metrics are read from `cache` when its fingerprint matches (evaluating a BERT-large teacher on a dev
    split takes minutes on a CPU, and nothing about it changes between runs that only retrain students);
    otherwise computed and written there. Speed is timed on the first `speed_rows` dev sentences only."""
    from .. import hub
    from ..teacher.scorer import TeacherScorer

    files = hub.locate_model(teacher, trust_remote_code)
    scorer = TeacherScorer(files, device=device, dtype=dtype, max_length=max_length, batch_tokens=batch_tokens,
                           trust_remote_code=trust_remote_code)
    dev_hashes = {name: store.hash_path(split.path) for name, split in dev.items()}
    fp = teacher_eval_fingerprint(files.identity(), dev_hashes, task, max_length, scorer.device.type, scorer.dtype)
    cached = cached_teacher_scores(cache, fp) if cache is not None else None
    scores, classes = cached if cached is not None else evaluate_teacher(scorer, task, dev)
    if cached is None and cache is not None:
        store.write_json(cache, {"fingerprint": fp, "teacher": files.name, "dev": scores, "classes": classes,
                                 "rows": {name: len(split) for name, split in dev.items()}})
    first = next(iter(dev.values()))
    texts = first.texts[:speed_rows]
    pairs = first.text_pairs[:speed_rows] if first.text_pairs is not None else None
    rate = _timed_rate(lambda: scorer.predict(texts, pairs), len(texts))
    model = scorer.model
    total = sum(p.numel() for p in model.parameters())
    embeddings = getattr(model.base_model, "embeddings", None) or model.get_input_embeddings()
    emb = sum(p.numel() for p in embeddings.parameters())
    size = sum(p.stat().st_size for p in hub.weight_files(files.path))
    return ModelRow(f"Teacher ({files.name})", scores, total, total - emb, rate, round(size / 2**20, 2),
                    str(files.path), device=scorer.device.type, dtype=scorer.dtype, speed_rows=len(texts),
                    classes=classes)


def measure_student(student_dir: Path, name: str, dev: dict[str, Split], speed_rows: int, task: TaskSpec
                    ) -> ModelRow:
    """Dev metrics (from the student's metrics.json), parameters, size and CPU speed of a trained student of
    either family (`student.served`: float32, its own tokeniser, as it is served), timed on the first
    `speed_rows` dev sentences, and its class view of every dev split (from the served model's predictions)."""
    from ..student.io import load_metrics
    from ..student.served import load_served

    served = load_served(student_dir)
    doc = load_metrics(student_dir)
    first = next(iter(dev.values()))
    texts = first.texts[:speed_rows]
    pairs = first.text_pairs[:speed_rows] if first.text_pairs is not None else None
    rate = _timed_rate(lambda: served.logits(texts, pairs), len(texts))
    logits = {n: served.logits(s.texts, s.text_pairs if served.is_pair else None) for n, s in dev.items()}
    return ModelRow(name, doc["dev"], served.params, served.params_without_embedding, rate,
                    round(served.size_bytes / 2**20, 2), str(student_dir), doc.get("history", []),
                    speed_rows=len(texts), family=served.family, baseline=bool(doc.get("baseline")),
                    holdout=doc.get("holdout"), selection=doc.get("selection") or {"select_on": "dev"},
                    classes=evaluated(task, dev, logits)[1], filtered=doc.get("filtered") or {})


def measure_seeds(student_dirs: list[Path], seeds: list[int], name: str, dev: dict[str, Split],
                  speed_rows: int, task: TaskSpec) -> ModelRow:
    """One row for the students of several seeds (the same settings otherwise): dev and holdout metrics as the
    mean with the standard deviation over seeds, and every run; size and speed of the first (they share the
    architecture)."""
    from ..student.io import load_metrics

    row = measure_student(student_dirs[0], name, dev, speed_rows, task)
    if len(student_dirs) == 1:
        return row
    docs = [load_metrics(d) for d in student_dirs]
    row.runs = [{"seed": s, "dev": d["dev"], "holdout": d.get("holdout"), "best_epoch": d.get("best_epoch"),
                 "path": str(p)} for s, d, p in zip(seeds, docs, student_dirs)]
    row.dev, row.dev_std, holdout, holdout_std = seed_spread(docs)
    if holdout is not None:
        row.holdout, row.holdout_std = holdout, holdout_std
    row.history = []  # one learning curve per seed would crowd the plot: the runs are listed instead
    return row


def majority_baseline(task: TaskSpec, dev: dict[str, Split]) -> dict[str, dict[str, Any]]:
    """Per dev split, the best constant prediction (the split's most frequent gold label) and the task's metrics
    of predicting it for every row: what any model, the teacher first, must beat."""
    out = {}
    for name, split in dev.items():
        if split.labels is not None and (split.labels >= 0).any():
            label, scores = metrics.majority_class(task.metrics, split.labels, task.num_labels)
            out[name] = {"label": task.label_names[label], **scores}
    return out


def teacher_agreement(scored_dir: Path) -> dict[str, Any]:
    """How often the teacher's argmax equals the gold label on the original rows, and its confidence
    (max softmax probability) on original and synthetic rows."""
    table = store.read_table(scored_dir, ["label", "is_original", "teacher_logits"])
    num_labels = table.schema.field("teacher_logits").type.list_size
    logits = table["teacher_logits"].combine_chunks().flatten().to_numpy(zero_copy_only=False)
    logits = logits.reshape(-1, num_labels).astype(np.float64)
    conf = metrics.softmax(logits).max(1)
    original = table["is_original"].to_numpy(zero_copy_only=False)
    labels = table["label"].to_numpy(zero_copy_only=False)
    has_gold = original & ~np.isnan(labels.astype(float))
    agree = float(np.mean(logits[has_gold].argmax(1) == labels[has_gold].astype(np.int64))) if has_gold.any() else None
    return {
        "gold_agreement_on_originals": round(agree, 4) if agree is not None else None,
        "originals": int(original.sum()), "synthetic": int((~original).sum()),
        "mean_confidence_original": round(float(conf[original].mean()), 4) if original.any() else None,
        "mean_confidence_synthetic": round(float(conf[~original].mean()), 4) if (~original).any() else None,
        "_confidence": conf, "_original": original,
    }


# Ablations (`ablate: [rules, size]`): each variant is a distilled student of the run's first family trained on a
# subset of the one scored set, selected by the transfer set's `ops` (without one rule's rows; the originals
# alone) or `draw` (the first N draws per example) columns, for every seed of the run.

def measure_ablation(student_dirs: list[Path], name: str, draws: int | None) -> AblationRow:
    """An ablation's row from its students' metrics.json and stats.json (one directory per seed)."""
    from ..student.io import load_metrics

    docs = [load_metrics(d) for d in student_dirs]
    rows = json.loads((student_dirs[0] / store.STATS).read_text("utf-8"))["rows"]
    return AblationRow(name, int(rows), *seed_spread(docs), draws, len(docs), [str(d) for d in student_dirs])


def seed_spread(docs: list[dict]) -> tuple[dict, dict, dict | None, dict | None]:
    """Mean and std over several students' metrics.json: dev (per split), and the holdout's where all have one."""
    dev, dev_std = mean_std([d["dev"] for d in docs])
    if not all(d.get("holdout") for d in docs):
        return dev, dev_std, None, None
    mean, std = mean_std([{"h": d["holdout"]} for d in docs])
    return dev, dev_std, mean["h"], std["h"]


def mean_std(per_run: list[dict[str, dict[str, float]]]) -> tuple[dict, dict]:
    """{split: {metric: value}} of several runs -> ({split: {metric: mean}}, {split: {metric: std}}): the sample
    standard deviation (ddof 1; 0 for one run), as the population one understates the spread of 2-3 seeds."""
    mean, std = {}, {}
    ddof = 1 if len(per_run) > 1 else 0
    for split, names in per_run[0].items():
        values = {m: np.array([r[split][m] for r in per_run]) for m in names}
        mean[split] = {m: round(float(v.mean()), 6) for m, v in values.items()}
        std[split] = {m: round(float(v.std(ddof=ddof)), 6) for m, v in values.items()}
    return mean, std


def describe_machine(rows: list[ModelRow]) -> str:
    """This machine's CPU, and its GPU when a row was measured on one (the speed column depends on both)."""
    from ..devices import available_cpus, cpu_description

    text = f"{available_cpus()} CPUs: {cpu_description()}"
    if any(r.device == "cuda" for r in rows):
        import torch

        text += f", {torch.cuda.get_device_name()}"
    return text
