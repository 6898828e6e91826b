"""The report's ablations: students trained on subsets of the one scored set (`ablate: [rules, size]`).

Each variant is a distilled student of the run's first family trained on a subset selected by the transfer
set's `ops` (without one rule's rows; the originals alone) or `draw` (the first N draws per example) columns,
for every seed of the run. A subset approximates a transfer set made without the rule or with fewer draws (the
dedupe ran over the whole set): the report says so, and gives each subset's size. Rows: the metric's mean ±
std over seeds on dev (and the holdout), a paper-style table, and a plot of the metric against transfer-set size.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import store


@dataclass
class AblationRow:
    name: str  # what the students were trained on, e.g. "without masking"
    rows: int  # training rows of the subset
    dev: dict[str, dict[str, float]]  # split -> metric -> mean over seeds
    dev_std: dict[str, dict[str, float]]
    holdout: dict[str, float] | None
    holdout_std: dict[str, float] | None
    draws: int | None  # draws per example trained on (0: the originals alone; None: a rule ablation)
    seeds: int
    paths: list[str]


def measure_ablation(student_dirs: list[Path], name: str, draws: int | None) -> AblationRow:
    """An ablation's row from its students' metrics.json and stats.json (one directory per seed)."""
    from .student.io import load_metrics

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
    """{split: {metric: value}} of several runs -> ({split: {metric: mean}}, {split: {metric: std}})."""
    mean, std = {}, {}
    for split, metrics in per_run[0].items():
        values = {m: np.array([r[split][m] for r in per_run]) for m in metrics}
        mean[split] = {m: round(float(v.mean()), 6) for m, v in values.items()}
        std[split] = {m: round(float(v.std()), 6) for m, v in values.items()}
    return mean, std


def render_ablations(doc: dict) -> list[str]:
    from .report import fmt_spread  # the main table's cells (report imports this module)

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
             + (f", mean ± std over {seeds} seeds" if seeds > 1 else "") + ". A subset approximates a transfer set "
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


def plot_size_curve(out: Path, rows: list[AblationRow], metric: str, split: str) -> str | None:
    """The metric against the transfer set's size: the size ablation's students and the full set's."""
    sized = sorted((r for r in rows if r.draws is not None), key=lambda r: r.rows)
    if len(sized) < 2:
        return None
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    fig, ax = plt.subplots(figsize=(6, 3.8))
    x = [r.rows for r in sized]
    y = [100 * r.dev[split][metric] for r in sized]
    err = [100 * r.dev_std[split][metric] for r in sized]
    ax.errorbar(x, y, yerr=err if sized[0].seeds > 1 else None, marker="o", capsize=3)
    for r in sized:
        label = "originals" if r.draws == 0 else f"{r.draws} draw{'s' if r.draws > 1 else ''}"
        ax.annotate(label, (r.rows, 100 * r.dev[split][metric]), textcoords="offset points",
                    xytext=(5, -12), fontsize=8)
    ax.set_xscale("log")
    ax.set(xlabel="training rows (log scale)", ylabel=f"{split} {metric} (%)",
           title=f"{split} {metric} against transfer-set size")
    fig.tight_layout()
    fig.savefig(out / "metric_vs_transfer_size.png", dpi=110)
    plt.close(fig)
    return "metric_vs_transfer_size.png"
