"""Rendering: report.json (the measured rows, the comparison, the run's stages and settings) and report.md, the
paper's tables made from it."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from .. import store
from ..tasks import TaskSpec
from .plots import plot_size_curve, plots_missing, write_plots
from .rows import AblationRow, ModelRow


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
    lines += ["", _selection_note(rows[1:], splits) + _holdout_check(doc.get("holdouts") or {})] \
        if len(rows) > 1 else []
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


def holdouts(teacher: str, rows: list[ModelRow]) -> dict[str, Any]:
    """The sha256 of the holdout each model chose on: the teacher's (when this project fine-tuned it, from its
    manifest) and each student's (from its metrics), so the report can say whether they are one and the same."""
    manifest = store.read_manifest(teacher) if Path(teacher).is_dir() else None
    return {"teacher": ((manifest or {}).get("holdout") or {}).get("sha256"),
            "students": {r.name: r.selection.get("sha256") for r in rows[1:] if r.selection.get("sha256")},
            "twin_rows_excluded": max((r.selection.get("twin_rows_excluded") or 0 for r in rows[1:]), default=0)}


def _holdout_check(h: dict[str, Any]) -> str:
    """One sentence: the teacher and the students held out the same examples (or which did not)."""
    students = set(h.get("students", {}).values())
    if not students:
        return ""
    twins = h.get("twin_rows_excluded") or 0
    twins_note = (f" {twins:,} rows outside it whose text equals a held-out original's (twins) were left out of "
                  "training too." if twins else "")
    if len(students) > 1 or (h.get("teacher") and h["teacher"] not in students):
        return (" WARNING: the models chose on different holdouts (" + ", ".join(
            f"{name}: {sha[:12]}" for name, sha in [("teacher", h.get("teacher"))] + list(h["students"].items())
            if sha) + "), so their holdout figures do not compare." + twins_note)
    who = "the teacher and every student" if h.get("teacher") else "every student"
    return f" {who.capitalize()} held out the same examples (sha256 {next(iter(students))[:12]}).{twins_note}"


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
    lines = ["## Every seed", "", f"The students' rows above give the mean ± sample standard deviation (ddof 1) over "
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


def render_ablations(doc: dict) -> list[str]:
    rows = doc.get("ablations") or []
    if not rows:
        return []
    metric = doc["task"]["metrics"][0]
    splits = list(rows[0]["dev"])
    held = any(r["holdout"] for r in rows)
    seeds = rows[0]["seeds"]
    head = ["Trained on", "Rows"] + [f"{s} {metric}" for s in splits] + ([f"holdout {metric}"] if held else [])
    lines = ["## Ablations", "",
             f"Distilled students ({doc['ablation_family']}) trained on subsets of the one scored set"
             + (f", mean ± sample std over {seeds} seeds" if seeds > 1 else "")
             + ". A subset approximates a transfer set "
             "made without the rule (or with fewer draws): duplicates were dropped over the whole set.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        spread = seeds > 1  # one seed: no ± 0.0
        cells = [r["name"], f"{r['rows']:,}"] + [
            fmt_spread(r["dev"][s][metric], r["dev_std"][s][metric] if spread else None) for s in splits]
        cells += [fmt_spread((r["holdout"] or {}).get(metric),
                             (r["holdout_std"] or {}).get(metric) if spread else None)] if held else []
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


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
    elif doc.get("plots_missing"):
        lines += ["## Plots", "", f"No plots: {doc['plots_missing']}.", ""]
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
        "stages": stages, "settings": settings, "plots": plots, "plots_missing": plots_missing(),
        "speed_rows": speed_rows, "holdouts": holdouts(teacher, rows),
        "command": command, "machine": machine,
        "created": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    store.write_json(out / "report.json", doc)
    (out / "report.md").write_text(render_markdown(doc), encoding="utf-8")
    return out / "report.md"
