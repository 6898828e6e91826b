"""The run report: what distillation bought, as the paper's tables show it.

Teacher vs distilled student vs the same student trained without distillation: the task metric on each dev
split, parameters with and without the embedding table, inference sentences/s measured here (the students on
CPU, the teacher on a sample of the same dev sentences on the device and dtype it scored with), and size on
disk. The teacher's dev metrics are cached by fingerprint, so a run that only retrains students does not
evaluate the teacher again. Then the transfer set's statistics, the teacher's agreement with the gold
labels, the settings, and PNG plots (learning curves, teacher confidence, metric against size).

Ablations (`ablate: [rules, size]`): students trained on subsets of the one scored set. A subset approximates a
transfer set made without the rule or with fewer draws (the dedupe ran over the whole set): the report says so,
and gives each subset's size. Rows: the metric's mean ± std over seeds on dev (and the holdout), a paper-style
table, and a plot of the metric against transfer-set size.

One job a module: `rows` (the tables' rows), `measure` (the numbers, from a run's directories and its models),
`plots` (the PNGs) and `render` (report.json and report.md). Callers use the names below as `report.X`.
"""

from __future__ import annotations

from .measure import (TEACHER_EVAL_VERSION, cached_teacher_scores, describe_machine, evaluate_teacher, evaluated,
                      majority_baseline, mean_std, measure_ablation, measure_seeds, measure_student, measure_teacher,
                      seed_spread, teacher_agreement, teacher_eval_fingerprint)
from .plots import plot_size_curve, write_plots
from .render import (BERT_BASE_PARAMS_WITHOUT_EMBEDDINGS, PLOT_TITLES, comparison, fmt_spread, render_ablations,
                     render_markdown, write_report)
from .rows import AblationRow, ModelRow

__all__ = [
    "BERT_BASE_PARAMS_WITHOUT_EMBEDDINGS", "PLOT_TITLES", "TEACHER_EVAL_VERSION", "AblationRow", "ModelRow",
    "cached_teacher_scores", "comparison", "describe_machine", "evaluate_teacher", "evaluated", "fmt_spread",
    "majority_baseline", "mean_std", "measure_ablation", "measure_seeds", "measure_student", "measure_teacher",
    "plot_size_curve", "render_ablations", "render_markdown", "seed_spread", "teacher_agreement",
    "teacher_eval_fingerprint", "write_plots", "write_report",
]
