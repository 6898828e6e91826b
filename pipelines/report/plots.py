"""The report's PNG plots: learning curves, teacher confidence, the metric against model size and against
transfer-set size. matplotlib is a dependency; where it cannot be imported the report says so instead."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from .rows import AblationRow, ModelRow


def _pyplot() -> Any:
    """matplotlib's pyplot, drawing to files only (the Agg backend); None without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def plots_missing() -> str | None:
    """Why the report has no plots (None: it has them)."""
    if _pyplot() is not None:
        return None
    return "matplotlib cannot be imported here (`pip install matplotlib`, a dependency of distill-pipelines)"


def _save(plt: Any, fig: Any, out: Path, name: str) -> str:
    fig.tight_layout()
    fig.savefig(out / name, dpi=110)
    plt.close(fig)
    return name


def write_plots(out: Path, rows: list[ModelRow], agreement: dict[str, Any], metric: str,
                first_split: str) -> dict[str, str]:
    """PNG plots; returns name -> file name (none without matplotlib: `plots_missing` says why)."""
    plt = _pyplot()
    if plt is None:
        return {}
    files = {}
    students = [r for r in rows if r.history]
    if students:
        files["learning_curves"] = _learning_curves(plt, out, students, metric, first_split)
    conf, original = agreement.get("_confidence"), agreement.get("_original")
    if conf is not None and len(conf):
        files["teacher_confidence"] = _teacher_confidence(plt, out, conf, original)
    files["metric_vs_size"] = _metric_vs_size(plt, out, rows, metric, first_split)
    return files


def _learning_curves(plt: Any, out: Path, students: list[ModelRow], metric: str, first_split: str) -> str:
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 3.8))
    for r in students:
        epochs = [h["epoch"] for h in r.history]
        ax1.plot(epochs, [h["train_loss"] for h in r.history], marker="o", label=r.name)
        ax2.plot(epochs, [h["dev"][first_split][metric] for h in r.history], marker="o", label=r.name)
    ax1.set(xlabel="epoch", ylabel="train loss (own loss)", title="Training loss")
    ax2.set(xlabel="epoch", ylabel=f"dev {metric}", title=f"Dev {metric} ({first_split})")
    ax1.legend(fontsize=8)
    ax2.legend(fontsize=8)
    return _save(plt, fig, out, "learning_curves.png")


def _teacher_confidence(plt: Any, out: Path, conf: np.ndarray, original: np.ndarray) -> str:
    fig, ax = plt.subplots(figsize=(6, 3.8))
    bins = np.linspace(conf.min(), 1.0, 31)
    ax.hist(conf[original], bins=bins, alpha=0.6, density=True, label=f"original ({original.sum():,})")
    if (~original).any():
        ax.hist(conf[~original], bins=bins, alpha=0.6, density=True, label=f"synthetic ({(~original).sum():,})")
    ax.set(xlabel="teacher confidence (max softmax probability)", ylabel="density",
           title="Teacher confidence on the transfer set")
    ax.legend()
    return _save(plt, fig, out, "teacher_confidence.png")


def _metric_vs_size(plt: Any, out: Path, rows: list[ModelRow], metric: str, first_split: str) -> str:
    fig, ax = plt.subplots(figsize=(6, 3.8))
    for r in rows:
        ax.scatter(r.params, r.dev[first_split][metric], s=60)
        ax.annotate(r.name, (r.params, r.dev[first_split][metric]), textcoords="offset points", xytext=(6, 4),
                    fontsize=8)
    ax.set_xscale("log")
    ax.set(xlabel="parameters (log scale)", ylabel=f"dev {metric}", title=f"Dev {metric} against model size")
    return _save(plt, fig, out, "metric_vs_size.png")


def plot_size_curve(out: Path, rows: list[AblationRow], metric: str, split: str) -> str | None:
    """The metric against the transfer set's size: the size ablation's students and the full set's."""
    sized = sorted((r for r in rows if r.draws is not None), key=lambda r: r.rows)
    if len(sized) < 2:
        return None
    plt = _pyplot()
    if plt is None:
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
    return _save(plt, fig, out, "metric_vs_transfer_size.png")
