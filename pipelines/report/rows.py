"""The rows of the report's tables: a model's (teacher, students) and an ablation's. Measuring fills them in,
report.json holds them (`dataclasses.asdict`), rendering reads them back."""

from __future__ import annotations

from dataclasses import dataclass, field


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
