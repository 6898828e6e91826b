"""Tasks: the built-in GLUE tasks and the generic column-mapped formats, read into plain columns.

Every reader validates as it goes and stops at the first bad row with a `DataError` that names the file, the
line (1-based, counting the header) and the column. Readers never guess: GLUE TSV files are split on tabs with no
quoting (as GLUE ships them), CSV uses RFC 4180 quoting, JSONL is one object per line.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .errors import DataError

# The demo task the project ships (written by the project, see data/README.md).
DEMO_DIR = Path(__file__).resolve().parent.parent / "data" / "demo"
GENERIC_SUFFIXES = (".tsv", ".csv", ".jsonl", ".json", ".parquet", ".txt")


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
    it they are taken from the train split (sorted; integers 0..K-1 keep their own order)."""
    values = tuple(str(v) for v in labels) if labels else ()
    return TaskSpec(name, text_col, pair_col, label_col, values, values, metrics=_default_metrics(len(values)),
                    file_format="auto")


def _default_metrics(num_labels: int) -> tuple[str, ...]:
    return ("accuracy", "f1") if num_labels == 2 else ("accuracy",)


@dataclass
class Split:
    """One split of a task as plain columns. `labels` holds label ids (-1 where a row has none)."""

    path: str
    texts: list[str]
    text_pairs: list[str] | None = None
    labels: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.texts)


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


# ----------------------------------------------------------------------------------------------- locating files

def find_split_file(data: str | Path, split: str) -> Path:
    """`data` is a file (used as is) or a directory holding `<split>.<ext>` (or a datasets directory named so)."""
    data = Path(data)
    if data.is_file():
        return data
    if not data.is_dir():
        raise DataError(f"data path does not exist: {data}")
    candidates = [data / f"{split}{suffix}" for suffix in GENERIC_SUFFIXES] + [data / split]
    for c in candidates:
        if c.is_file() or (c.is_dir() and (c / "state.json").is_file()):
            return c
    raise DataError(
        f"{data}: no '{split}' split found; expected one of "
        + ", ".join(c.name for c in candidates)
        + " (a datasets directory for the last)"
    )


# ----------------------------------------------------------------------------------------------- raw rows

def _decode_lines(path: Path) -> list[str]:
    """The file's lines, decoded strictly as UTF-8 (a BOM is stripped), with the line of any bad byte named."""
    raw = path.read_bytes()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    if not raw.strip():
        raise DataError("the file is empty", str(path))
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        line = raw.count(b"\n", 0, e.start) + 1
        col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise DataError(f"invalid UTF-8 (byte 0x{raw[e.start]:02x} at byte column {col})", str(path), line) from None
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [ln[:-1] if ln.endswith("\r") else ln for ln in lines]


def _tsv_rows(path: Path, has_header: bool) -> tuple[list[str] | None, list[tuple[int, list[str]]]]:
    """GLUE TSV: split on tabs, no quoting; every row must have the header's number of fields."""
    lines = _decode_lines(path)
    header = lines[0].split("\t") if has_header else None
    start = 1 if has_header else 0
    width = len(header) if header is not None else None
    rows = []
    for i in range(start, len(lines)):
        fields = lines[i].split("\t")
        if width is None:
            width = len(fields)
        if len(fields) != width:
            raise DataError(f"expected {width} tab-separated fields, found {len(fields)}", str(path), i + 1)
        rows.append((i + 1, fields))
    if not rows:
        raise DataError("the file has a header but no rows", str(path))
    return header, rows


def _csv_rows(path: Path, delimiter: str) -> tuple[list[str], list[tuple[int, list[str]]]]:
    text = "\n".join(_decode_lines(path)) + "\n"
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    rows = []
    try:
        header = next(reader)
        for fields in reader:
            if len(fields) != len(header):
                raise DataError(f"expected {len(header)} fields, found {len(fields)}", str(path), reader.line_num)
            rows.append((reader.line_num, fields))
    except csv.Error as e:
        raise DataError(f"malformed CSV: {e}", str(path), reader.line_num) from None
    if not rows:
        raise DataError("the file has a header but no rows", str(path))
    return header, rows


def _jsonl_records(path: Path) -> list[tuple[int, dict]]:
    records = []
    for i, line in enumerate(_decode_lines(path), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"invalid JSON at column {e.colno}: {e.msg}", str(path), i) from None
        if not isinstance(obj, dict):
            raise DataError(f"expected a JSON object, found {type(obj).__name__}", str(path), i)
        records.append((i, obj))
    return records


def _table_records(path: Path) -> tuple[list[str], dict[str, list]]:
    """Parquet files and datasets directories: column lists (rows are numbered from 1, there are no lines)."""
    if path.is_dir():
        import datasets

        table = datasets.load_from_disk(str(path))
        if isinstance(table, datasets.DatasetDict):
            raise DataError("is a DatasetDict; pass the directory of one split", str(path))
        columns = table.column_names
        return columns, {c: table[c] for c in columns}
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises several types for corrupt files
        raise DataError(f"cannot read Parquet: {e}", str(path)) from None
    if table.num_rows == 0:
        raise DataError("the file has no rows", str(path))
    return table.column_names, table.to_pydict()


# ----------------------------------------------------------------------------------------------- reading a split

def _column_index(header: list[str] | None, col: str | int, path: Path, role: str) -> int:
    if isinstance(col, int):
        return col
    if header is None or col not in header:
        raise DataError(f"no {role} column '{col}'; the columns are: {', '.join(header or [])}", str(path), 1)
    return header.index(col)


def read_split(task: TaskSpec, data: str | Path, split: str, *, labelled: bool = True,
               limit: int | None = None) -> tuple[Split, TaskSpec]:
    """Read one split of a task. Returns the split and the task, whose label list is filled in for generic tasks
    that had none. With `labelled=False` the label column may be absent (rows then get label -1)."""
    path = find_split_file(data, split)
    suffix = path.suffix.lower()
    if path.is_dir():
        fmt = "table"
    elif task.file_format.startswith("glue") and suffix == ".tsv":
        fmt = task.file_format
    else:
        fmt = {".tsv": "tsv", ".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "table",
               ".txt": "txt"}.get(suffix)
        if fmt is None:
            raise DataError(f"unsupported file type '{suffix}'; use one of {', '.join(GENERIC_SUFFIXES)}", str(path))

    # Each format yields (line, get(col) -> raw value or None).
    if fmt == "txt":
        lines = _decode_lines(path)
        records = [(i + 1, {"text": ln}) for i, ln in enumerate(lines)]
        task = replace(task, text_col="text", pair_col=None) if task.file_format == "auto" else task
        cols = ["text"]
        labelled = False
    elif fmt in ("glue-tsv", "glue-tsv-noheader", "tsv", "csv"):
        if fmt == "csv":
            header, rows = _csv_rows(path, ",")
        else:
            header, rows = _tsv_rows(path, has_header=(fmt != "glue-tsv-noheader"))
        idx = {role: _column_index(header, col, path, role) for role, col in
               (("text", task.text_col), ("text pair", task.pair_col), ("label", task.label_col))
               if col is not None and (role != "label" or labelled or (header and col in header))}
        width = len(rows[0][1])
        for role, j in idx.items():
            if j >= width:
                raise DataError(f"no {role} column {j}: rows have {width} fields", str(path), rows[0][0])
        records = [(ln, {role: f[j] for role, j in idx.items()}) for ln, f in rows]
        cols = list(idx)
    elif fmt == "jsonl":
        raw = _jsonl_records(path)
        if not raw:
            raise DataError("the file has no records", str(path))
        names = {"text": task.text_col, "text pair": task.pair_col, "label": task.label_col}
        records = []
        for ln, obj in raw:
            rec = {}
            for role, col in names.items():
                if col is None or (role == "label" and not labelled and col not in obj):
                    continue
                if col not in obj:
                    raise DataError(f"missing key '{col}' ({role})", str(path), ln)
                rec[role] = obj[col]
            records.append((ln, rec))
        cols = list(records[0][1])
    else:  # parquet / datasets directory
        header, columns = _table_records(path)
        roles = {}
        for role, col in (("text", task.text_col), ("text pair", task.pair_col), ("label", task.label_col)):
            if col is None or (role == "label" and not labelled and col not in header):
                continue
            roles[role] = columns[header[_column_index(header, col, path, role)]]
        n = len(next(iter(roles.values())))
        records = [(i + 1, {role: vals[i] for role, vals in roles.items()}) for i in range(n)]
        cols = list(roles)

    if limit is not None:
        records = records[:limit]
    texts: list[str] = []
    pairs: list[str] | None = [] if "text pair" in cols else None
    raw_labels: list[tuple[int, str]] = []
    for ln, rec in records:
        for role in ("text", "text pair"):
            if role not in cols:
                continue
            value = rec.get(role)
            if value is None or not isinstance(value, str) or not value.strip():
                col = task.text_col if role == "text" else task.pair_col
                kind = "missing" if value is None or (isinstance(value, str) and not value.strip()) else \
                    f"not a string ({type(value).__name__})"
                raise DataError(f"{role} is {kind}", str(path), ln, col)
            (texts if role == "text" else pairs).append(value)
        if "label" in cols:
            raw_labels.append((ln, rec.get("label")))

    labels = None
    if "label" in cols:
        task = _with_labels(task, raw_labels, path, split)
        lookup = {v: i for i, v in enumerate(task.label_values)}
        labels = np.empty(len(raw_labels), dtype=np.int64)
        for k, (ln, value) in enumerate(raw_labels):
            key = _label_key(value)
            if key not in lookup:
                raise DataError(f"unknown label {value!r}; expected one of {', '.join(task.label_values)}",
                                str(path), ln, task.label_col)
            labels[k] = lookup[key]
    elif labelled:
        raise DataError(f"no label column '{task.label_col}'", str(path), 1)
    return Split(str(path), texts, pairs, labels), task


def _label_key(value: object) -> str:
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return "" if value is None else str(value).strip()


def _with_labels(task: TaskSpec, raw_labels: list[tuple[int, object]], path: Path, split: str) -> TaskSpec:
    """Generic tasks without a label list take theirs from the first labelled split read (normally train)."""
    if task.label_values:
        return task
    values = sorted({_label_key(v) for _, v in raw_labels if _label_key(v) != ""})
    if all(v.lstrip("-").isdigit() for v in values):
        ints = sorted(int(v) for v in values)
        if ints == list(range(len(ints))):
            values = [str(i) for i in ints]
    if len(values) < 2:
        raise DataError(f"the {split} split has fewer than 2 distinct labels ({values}); pass --labels", str(path))
    return replace(task, label_names=tuple(values), label_values=tuple(values), metrics=_default_metrics(len(values)))
