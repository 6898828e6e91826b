"""The run report: what distillation bought, as the paper's tables show it.

Teacher vs distilled student vs the same student trained without distillation: the task metric on each dev
split, parameters with and without the embedding table, inference sentences/s measured here (the students on
CPU, the teacher on a sample of the same dev sentences on the device and dtype it scored with), and size on
disk. The teacher's dev metrics are cached by fingerprint, so a run that only retrains students does not
evaluate the teacher again. Then the transfer set's statistics, the teacher's agreement with the gold
labels, the settings, and PNG plots (learning curves, teacher confidence, metric against size).
"""

from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import metrics, store
from .report_ablations import AblationRow, plot_size_curve, render_ablations, seed_spread
from .tasks import Split, TaskSpec


@dataclass
class ModelRow:
    """One line of the report's main table."""

    name: str
    dev: dict[str, dict[str, float]]  # split -> metric -> value
    params: int
    params_without_embedding: int
    sentences_per_s: float
    size_mb: float
    path: str
    history: list[dict] = field(default_factory=list)  # students: per-epoch train loss and dev metrics
    device: str = "cpu"  # where sentences_per_s was measured (the teacher runs where the score stage ran it)
    dtype: str = "float32"
    speed_rows: int = 0  # dev sentences timed
    family: str = ""  # students: bilstm or transformer
    baseline: bool = False  # students: trained without distillation
    holdout: dict[str, float] | None = None  # students selected on a holdout: its metrics
    selection: dict = field(default_factory=dict)  # students: what chose the best epoch (metrics.json's selection)
    runs: list[dict] = field(default_factory=list)  # students of several seeds: each one's seed, dev and holdout
    dev_std: dict[str, dict[str, float]] = field(default_factory=dict)  # ... and the std over them (dev: the mean)
    holdout_std: dict[str, float] | None = None
    classes: dict[str, dict] = field(default_factory=dict)  # split -> metrics.class_view (first seed's student)
    filtered: dict[str, int] = field(default_factory=dict)  # students: rows each training-time filter removed


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
    from . import hub
    from .teacher.scorer import TeacherScorer

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
    from .student.io import load_metrics
    from .student.served import load_served

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
    from .student.io import load_metrics

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


# ----------------------------------------------------------------------------------------------- plots

def write_plots(out: Path, rows: list[ModelRow], agreement: dict[str, Any], metric: str,
                first_split: str) -> dict[str, str]:
    """PNG plots; returns name -> file name. Without matplotlib the report simply has no plots."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return {}
    files = {}
    students = [r for r in rows if r.history]
    if students:
        fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
        for r in students:
            epochs = [h["epoch"] for h in r.history]
            ax1.plot(epochs, [h["train_loss"] for h in r.history], marker="o", label=r.name)
            ax2.plot(epochs, [h["dev"][first_split][metric] for h in r.history], marker="o", label=r.name)
        ax1.set(xlabel="epoch", ylabel="train loss (own loss)", title="Training loss")
        ax2.set(xlabel="epoch", ylabel=f"dev {metric}", title=f"Dev {metric} ({first_split})")
        ax1.legend(fontsize=8)
        ax2.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(out / "learning_curves.png", dpi=110)
        plt.close(fig)
        files["learning_curves"] = "learning_curves.png"
    conf, original = agreement.get("_confidence"), agreement.get("_original")
    if conf is not None and len(conf):
        fig, ax = plt.subplots(figsize=(6, 3.8))
        bins = np.linspace(conf.min(), 1.0, 31)
        ax.hist(conf[original], bins=bins, alpha=0.6, density=True, label=f"original ({original.sum():,})")
        if (~original).any():
            ax.hist(conf[~original], bins=bins, alpha=0.6, density=True, label=f"synthetic ({(~original).sum():,})")
        ax.set(xlabel="teacher confidence (max softmax probability)", ylabel="density",
               title="Teacher confidence on the transfer set")
        ax.legend()
        fig.tight_layout()
        fig.savefig(out / "teacher_confidence.png", dpi=110)
        plt.close(fig)
        files["teacher_confidence"] = "teacher_confidence.png"
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for r in rows:
        ax.scatter(r.params, r.dev[first_split][metric], s=60)
        ax.annotate(r.name, (r.params, r.dev[first_split][metric]), textcoords="offset points", xytext=(6, 4),
                    fontsize=8)
    ax.set_xscale("log")
    ax.set(xlabel="parameters (log scale)", ylabel=f"dev {metric}", title=f"Dev {metric} against model size")
    fig.tight_layout()
    fig.savefig(out / "metric_vs_size.png", dpi=110)
    plt.close(fig)
    files["metric_vs_size"] = "metric_vs_size.png"
    return files


# ----------------------------------------------------------------------------------------------- the report

def _fmt_metric(v: float | None) -> str:
    return "–" if v is None else f"{100 * v:.1f}"


def fmt_spread(v: float | None, std: float | None) -> str:
    """A metric, with ± its standard deviation over seeds where there are several."""
    return _fmt_metric(v) + (f" ± {100 * std:.1f}" if v is not None and std is not None else "")


def _device_name(row: ModelRow) -> str:
    return "CPU" if row.device == "cpu" else row.device.upper()


def _speed_phrase(teacher: ModelRow) -> str:
    """How the comparison names the teacher's speed: measured on a GPU, it is not a CPU figure."""
    return "the teacher's CPU speed" if teacher.device == "cpu" else \
        f"the teacher's speed on {_device_name(teacher)} ({teacher.dtype})"


def _model_table(doc: dict[str, Any], rows: list[ModelRow]) -> list[str]:
    splits = list(rows[0].dev) if rows else []
    metrics = doc["task"]["metrics"]
    held = any(r.holdout for r in rows)
    head = ["Model"] + [f"{s} {m}" for s in splits for m in metrics] + (
        [f"holdout {m}" for m in metrics] if held else []) + [
        "Params", "Params w/o embeddings", "Sentences/s", "Size on disk (MB)"]
    lines = ["## Teacher vs students", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [r.name] + [fmt_spread(r.dev.get(s, {}).get(m), r.dev_std.get(s, {}).get(m))
                            for s in splits for m in metrics] + (
            [fmt_spread((r.holdout or {}).get(m), (r.holdout_std or {}).get(m)) for m in metrics] if held else []) + [
            f"{r.params:,}", f"{r.params_without_embedding:,}", f"{r.sentences_per_s:,.0f}", f"{r.size_mb:.1f}"]
        lines.append("| " + " | ".join(cells) + " |")
    majority = doc.get("majority") or {}
    if majority:
        cells = ["Majority class (every row the split's most frequent label)"] + [
            _fmt_metric(majority.get(s, {}).get(m)) for s in splits for m in metrics] + (
            ["–"] * len(metrics) if held else []) + ["–"] * 4
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", _selection_note(rows[1:], splits)] if len(rows) > 1 else []
    lines += [_filters_note(r) for r in rows[1:] if r.filtered]
    cmp = doc.get("comparison", {})
    if cmp:
        vs_baseline = (f", {cmp['distilled_vs_baseline']:+.1f} against the same student trained without "
                       "distillation" if "distilled_vs_baseline" in cmp else "")
        lines += ["", f"Distilled student: {cmp['student_vs_teacher']:+.1f} points against the teacher"
                      f"{vs_baseline}; {cmp['speedup_vs_teacher']:,.0f}× {_speed_phrase(rows[0])} with "
                      f"{cmp['params_fraction_of_teacher']:.2%} of its parameters "
                      f"({cmp['params_wo_emb_fraction_of_bert_base']:.3%} of BERT-base's outside the embeddings)."]
    return lines + ["", _speed_note(doc, rows), ""]


def _filters_note(row: ModelRow) -> str:
    removed = ", ".join(f"{n:,} {what.replace('_', ' ')}" for what, n in row.filtered.items())
    return f"\nFilters of {row.name}: removed {removed} rows before training."


def _selection_note(students: list[ModelRow], splits: list[str]) -> str:
    """Which split chose the students' best epochs: a holdout (dev is then only reported) or dev itself."""
    ways = {r.selection.get("select_on", "dev") for r in students}
    if ways == {"holdout"}:
        sel = students[0].selection
        return (f"Model selection: every student's best epoch and early stopping were chosen on a holdout of "
                f"{sel.get('examples', 0):,} of the {sel.get('of_examples', 0):,} training examples (and the "
                f"{sel.get('rows', 0):,} transfer-set rows made from them, left out of training); the dev "
                f"figures were not used to choose anything.")
    if ways == {"dev"}:
        return (f"Model selection: the students' best epochs were chosen on {splits[0] if splits else 'dev'} "
                "(select_on: dev), so their dev figures are optimistic: select_on: holdout gives unbiased ones.")
    return "Model selection: mixed (" + ", ".join(f"{r.name}: {r.selection.get('select_on', 'dev')}"
                                                  for r in students) + ")."


def _speed_note(doc: dict[str, Any], rows: list[ModelRow]) -> str:
    """Where, and over how many sentences, each speed was measured (rows[0] is the teacher)."""
    teacher, students = rows[0], rows[1:]
    parts = [f"the teacher on {_device_name(teacher)} ({teacher.dtype}) over {teacher.speed_rows} dev sentences"]
    parts += [f"the students on CPU over {students[0].speed_rows} dev sentences"] if students else []
    return (f"Speed: batch inference on this machine ({doc['machine']}), best of 2 runs after a warm-up: "
            f"{'; '.join(parts)}.")


def _seeds_section(doc: dict[str, Any], rows: list[ModelRow]) -> list[str]:
    """Every student of every seed, when the students were trained with several."""
    seeded = [r for r in rows if r.runs]
    if not seeded:
        return []
    metric = doc["task"]["metrics"][0]
    held = any(run.get("holdout") for r in seeded for run in r.runs)
    lines = ["## Every seed", "", f"The students' rows above give the mean ± standard deviation over "
             f"{len(seeded[0].runs)} seeds; each run:", "",
             "| Model | Seed | " + " | ".join(f"{s} {metric}" for s in seeded[0].dev) + (
                 f" | holdout {metric}" if held else "") + " | Best epoch |",
             "|" + "---|" * (3 + len(seeded[0].dev) + held)]
    for r in seeded:
        for run in r.runs:
            cells = [r.name, str(run["seed"])] + [_fmt_metric(v.get(metric)) for v in run["dev"].values()]
            cells += [_fmt_metric((run.get("holdout") or {}).get(metric))] if held else []
            lines.append("| " + " | ".join(cells + [str(run.get("best_epoch"))]) + " |")
    return lines + [""]


def _classes_section(doc: dict[str, Any], rows: list[ModelRow]) -> list[str]:
    """Per-class precision and recall, the confusion matrix and the calibration error of every model."""
    if not any(r.classes for r in rows):
        return []
    names = doc["task"].get("label_names") or []
    lines = ["## Per class", "", "Precision and recall of each class, the confusion matrix (a row per gold label, "
             "a column per predicted one) and the expected calibration error (ECE, 15 bins; lower is better). "
             "Students: the served float32 model (the first seed's, with several)."]
    for split in rows[0].classes:
        labels = names or [str(i) for i in range(len(rows[0].classes[split]["precision"]))]
        head = ["Model"] + [f"{kind} {c}" for c in labels for kind in ("P", "R")] + ["Confusion", "ECE"]
        lines += ["", f"{split}:", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in rows:
            v = r.classes.get(split)
            if v is None:
                continue
            cells = [r.name] + [_fmt_metric(v[kind][i]) for i in range(len(labels)) for kind in ("precision", "recall")]
            lines.append("| " + " | ".join(cells + [str(v["confusion"]), f"{v['ece']:.3f}"]) + " |")
    return lines + [""]


def _transfer_section(doc: dict[str, Any]) -> list[str]:
    t = doc["transfer"]
    lines = ["## Transfer set", "",
             f"{t.get('originals', 0):,} originals + {t.get('synthetic', 0):,} synthetic rows "
             f"= {t.get('rows', 0):,} ({t.get('draws_per_example')} draws per example; "
             f"{t.get('dropped_unchanged', 0):,} unchanged and {t.get('dropped_duplicates', 0):,} duplicate draws "
             "dropped).", "",
             "| Rule | Synthetic rows it changed |", "|---|---|"]
    lines += [f"| {rule} | {n:,} |" for rule, n in t.get("rows_per_rule", {}).items()]
    a = doc["teacher_agreement"]
    return lines + ["", f"Teacher agreement with the gold labels on the originals: "
                        f"**{_fmt_metric(a.get('gold_agreement_on_originals'))}%**. Mean teacher confidence: "
                        f"{a.get('mean_confidence_original')} on originals, {a.get('mean_confidence_synthetic')} on "
                        "synthetic rows.", ""]


PLOT_TITLES = {"learning_curves": "Student learning curves", "teacher_confidence": "Teacher confidence",
               "metric_vs_size": "Metric against model size",
               "metric_vs_transfer_size": "Metric against transfer-set size"}


def render_markdown(doc: dict[str, Any]) -> str:
    rows = [ModelRow(**r) for r in doc["models"]]
    lines = [f"# distill report: {doc['run']}", "",
             f"Task **{doc['task']['name']}**; teacher `{doc['teacher']}`. Produced by `{doc['command']}` on "
             f"{doc['created']}.", ""]
    lines += _model_table(doc, rows) + _seeds_section(doc, rows) + render_ablations(doc) + _classes_section(doc, rows)
    lines += _transfer_section(doc)
    if doc.get("plots"):
        lines += ["## Plots", ""]
        for key, file in doc["plots"].items():
            lines += [f"![{PLOT_TITLES.get(key, key)}]({file})", ""]
    lines += ["## Stages", "", "| Stage | Output | Status | Seconds |", "|---|---|---|---|"]
    lines += [f"| {s['stage']} | `{s['out']}` | {s['status']} | {s.get('seconds', 0):.1f} |"
              for s in doc.get("stages", [])]
    grouped = [s for s in doc.get("stages", []) if s.get("side_by_side", 1) > 1 and s["status"] == "done"]
    if grouped:
        lines += ["", f"The {len(grouped)} BiLSTM students trained side by side, one process per CPU: "
                      f"{grouped[0]['group_seconds']:.0f} s of wall time for the group; their own times (above) add "
                      f"up to {sum(s['seconds'] for s in grouped):.0f} s."]
    lines += ["", "## Settings", "", "```json", json.dumps(doc["settings"], indent=1, default=str), "```", ""]
    return "\n".join(lines)


BERT_BASE_PARAMS_WITHOUT_EMBEDDINGS = 85_054_464  # 12 layers × 7,087,872 (BERT-base encoder + pooler-free)


def comparison(rows: list[ModelRow], metric: str, split: str) -> dict[str, float]:
    """The first distilled student against the teacher (and against its own family's baseline, if trained)."""
    teacher, distilled = rows[0], next(r for r in rows[1:] if not r.baseline)
    out = {
        "student_vs_teacher": 100 * (distilled.dev[split][metric] - teacher.dev[split][metric]),
        "speedup_vs_teacher": distilled.sentences_per_s / max(teacher.sentences_per_s, 1e-9),
        "params_fraction_of_teacher": distilled.params / teacher.params,
        "params_wo_emb_fraction_of_bert_base": distilled.params_without_embedding
        / BERT_BASE_PARAMS_WITHOUT_EMBEDDINGS,
    }
    baseline = next((r for r in rows[1:] if r.baseline and r.family == distilled.family), None)
    if baseline is not None:  # no baseline trained (baseline: false): no comparison with it
        out["distilled_vs_baseline"] = 100 * (distilled.dev[split][metric] - baseline.dev[split][metric])
    return {k: round(v, 6) for k, v in out.items()}


def describe_machine(rows: list[ModelRow]) -> str:
    """This machine's CPU, and its GPU when a row was measured on one (the speed column depends on both)."""
    from .devices import available_cpus, cpu_description

    text = f"{available_cpus()} CPUs: {cpu_description()}"
    if any(r.device == "cuda" for r in rows):
        import torch

        text += f", {torch.cuda.get_device_name()}"
    return text


def write_report(out: Path, *, run_name: str, task: TaskSpec, teacher: str, rows: list[ModelRow],
                 transfer_stats: dict, agreement: dict, stages: list[dict], settings: dict, speed_rows: int,
                 command: str, machine: str, ablations: list[AblationRow] = (), ablation_family: str = "",
                 majority: dict[str, dict[str, Any]] | None = None) -> Path:
    """report.json, report.md and the plots, in `out`."""
    import datetime as dt

    first_split = next(iter(rows[0].dev))
    metric = task.metrics[0]
    plots = write_plots(out, rows, agreement, metric, first_split)
    size_plot = plot_size_curve(out, list(ablations), metric, first_split)
    if size_plot:
        plots["metric_vs_transfer_size"] = size_plot
    doc = {
        "run": run_name, "task": task.to_dict(), "teacher": teacher, "models": [asdict(r) for r in rows],
        "comparison": comparison(rows, metric, first_split) if len(rows) > 1 else {},
        "majority": majority or {},
        "transfer": transfer_stats,
        "teacher_agreement": {k: v for k, v in agreement.items() if not k.startswith("_")},
        "ablations": [asdict(a) for a in ablations], "ablation_family": ablation_family,
        "stages": stages, "settings": settings, "plots": plots, "speed_rows": speed_rows,
        "command": command, "machine": machine,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    store.write_json(out / "report.json", doc)
    (out / "report.md").write_text(render_markdown(doc), encoding="utf-8")
    return out / "report.md"
