"""The task registry: what a task is (`TaskSpec`), the built-in GLUE tasks, and generic column-mapped tasks."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import DataError

# The demo task the project ships (written by the project, see data/README.md): <repo>/data/demo.
DEMO_DIR = Path(__file__).resolve().parents[2] / "data" / "demo"


@dataclass(frozen=True)
class TaskSpec:
    """What a task is: its columns, labels, splits and metrics. Built-ins are in TASKS; generic ones are made
    from column names with `generic_task`."""

    name: str
    text_col: str | int
    pair_col: str | int | None = None
    label_col: str | int | None = None
    label_names: tuple[str, ...] = ()  # id -> name
    label_values: tuple[str, ...] = ()  # id -> the raw value in the file ('0', 'entailment', …)
    metrics: tuple[str, ...] = ("accuracy",)  # the first is the one early stopping and reports lead with
    dev_splits: tuple[str, ...] = ("dev",)
    file_format: str = "glue-tsv"  # glue-tsv | glue-tsv-noheader | auto
    default_data: Path | None = None  # where --data defaults to (only the demo task has one)

    @property
    def is_pair(self) -> bool:
        return self.pair_col is not None

    @property
    def num_labels(self) -> int:
        return len(self.label_names)

    def to_dict(self) -> dict:
        return {
            "name": self.name, "text_col": self.text_col, "pair_col": self.pair_col, "label_col": self.label_col,
            "label_names": list(self.label_names), "label_values": list(self.label_values),
            "metrics": list(self.metrics), "dev_splits": list(self.dev_splits), "file_format": self.file_format,
        }

    @classmethod
    def from_dict(cls, d: dict) -> TaskSpec:
        """A task as `to_dict` wrote it (in a manifest); a built-in one keeps its default data directory."""
        builtin = TASKS.get(d["name"])
        return cls(d["name"], d["text_col"], d.get("pair_col"), d.get("label_col"), tuple(d.get("label_names") or ()),
                   tuple(d.get("label_values") or ()), tuple(d.get("metrics") or ("accuracy",)),
                   tuple(d.get("dev_splits") or ("dev",)), d.get("file_format") or "auto",
                   builtin.default_data if builtin is not None else None)


_BINARY = ("0", "1")
TASKS: dict[str, TaskSpec] = {
    t.name: t
    for t in [
        TaskSpec("sst2", "sentence", None, "label", ("negative", "positive"), _BINARY),
        TaskSpec("demo", "sentence", None, "label", ("negative", "positive"), _BINARY, default_data=DEMO_DIR),
        TaskSpec("mrpc", "#1 String", "#2 String", "Quality", ("not_equivalent", "equivalent"), _BINARY,
                 metrics=("f1", "accuracy")),
        TaskSpec("rte", "sentence1", "sentence2", "label", ("entailment", "not_entailment"),
                 ("entailment", "not_entailment")),
        TaskSpec("cola", 3, None, 1, ("unacceptable", "acceptable"), _BINARY, metrics=("mcc", "accuracy"),
                 file_format="glue-tsv-noheader"),
        TaskSpec("qqp", "question1", "question2", "is_duplicate", ("not_duplicate", "duplicate"), _BINARY,
                 metrics=("f1", "accuracy")),
        TaskSpec("mnli", "sentence1", "sentence2", "gold_label", ("entailment", "neutral", "contradiction"),
                 ("entailment", "neutral", "contradiction"), dev_splits=("dev_matched", "dev_mismatched")),
    ]
}


def get_task(name: str) -> TaskSpec:
    try:
        return TASKS[name]
    except KeyError:
        raise DataError(
            f"unknown task '{name}'; built-in tasks are {', '.join(sorted(TASKS))}, or pass --text-col "
            "(and --label-col, --text-pair-col) for a CSV/TSV/JSONL/Parquet file or a datasets directory"
        ) from None


def generic_task(text_col: str, pair_col: str | None = None, label_col: str | None = "label",
                 labels: list[str] | None = None, name: str = "generic") -> TaskSpec:
    """A task over any supported file with named columns. `labels` lists the label values in id order; without
    it they are taken from the train split (sorted; integers 0..K-1 keep their own order), see `infer_labels`."""
    values = tuple(str(v) for v in labels) if labels else ()
    return TaskSpec(name, text_col, pair_col, label_col, values, values, metrics=default_metrics(len(values)),
                    file_format="auto")


def default_metrics(num_labels: int) -> tuple[str, ...]:
    """The metrics of a generic task: F1 too when it is binary."""
    return ("accuracy", "f1") if num_labels == 2 else ("accuracy",)


def resolve_task(name: str | None, text_col: str | None = None, pair_col: str | None = None,
                 label_col: str | None = "label", labels: list[str] | None = None) -> TaskSpec:
    """A built-in task by name, or a generic one when a text column is given."""
    if text_col:
        return generic_task(text_col, pair_col, label_col, labels, name=name or "generic")
    if not name or name == "generic":
        raise DataError("pass --task with a built-in task name, or --text-col (and --label-col) for your own file")
    return get_task(name)


def data_dir(task: TaskSpec, data: Path | str | None) -> Path:
    if data is not None:
        return Path(data)
    if task.default_data is not None:
        return task.default_data
    raise DataError(f"task '{task.name}' needs --data: the directory holding its train and dev files")
