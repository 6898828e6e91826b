"""One reader per input format, chosen by file suffix (GLUE tasks by their `file_format`), each turning a file
into `Rows`.

Every reader validates as it goes and stops at the first bad row with a `DataError` that names the file, the
line (1-based, counting the header) and the column. Readers never guess: GLUE TSV files are split on tabs with no
quoting (as GLUE ships them), CSV uses RFC 4180 quoting, JSONL is one object per line.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import replace
from pathlib import Path
from typing import Callable

from ..errors import DataError
from .registry import TaskSpec
from .rows import Rows

Reader = Callable[[Path, TaskSpec, bool], Rows]


# ----------------------------------------------------------------------------------------------- raw lines

def decode_lines(path: Path) -> list[str]:
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


def _column_index(header: list[str] | None, col: str | int, path: Path, role: str) -> int:
    if isinstance(col, int):
        return col
    if header is None or col not in header:
        raise DataError(f"no {role} column '{col}'; the columns are: {', '.join(header or [])}", str(path), 1)
    return header.index(col)


def _task_columns(task: TaskSpec) -> tuple[tuple[str, str | int | None], ...]:
    return (("text", task.text_col), ("text pair", task.pair_col), ("label", task.label_col))


# ----------------------------------------------------------------------------------------------- delimited text

def _field_rows(path: Path, task: TaskSpec, labelled: bool, header: list[str] | None,
                rows: list[tuple[int, list[str]]]) -> Rows:
    """Rows of split fields (TSV or CSV) mapped onto the task's columns, by name or by position."""
    idx = {role: _column_index(header, col, path, role) for role, col in _task_columns(task)
           if col is not None and (role != "label" or labelled or (header and col in header))}
    width = len(rows[0][1])
    for role, j in idx.items():
        if j >= width:
            raise DataError(f"no {role} column {j}: rows have {width} fields", str(path), rows[0][0])
    records = [(ln, {role: f[j] for role, j in idx.items()}) for ln, f in rows]
    return Rows(path, task, records, tuple(idx), labelled)


def _tsv_fields(path: Path, has_header: bool) -> tuple[list[str] | None, list[tuple[int, list[str]]]]:
    """GLUE TSV: split on tabs, no quoting; every row must have the header's number of fields."""
    lines = decode_lines(path)
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


def read_tsv(path: Path, task: TaskSpec, labelled: bool) -> Rows:
    """Tab-separated with a header row, as GLUE ships most tasks (and generic .tsv files)."""
    header, rows = _tsv_fields(path, has_header=True)
    return _field_rows(path, task, labelled, header, rows)


def read_tsv_noheader(path: Path, task: TaskSpec, labelled: bool) -> Rows:
    """Tab-separated without a header (CoLA): columns are positions."""
    header, rows = _tsv_fields(path, has_header=False)
    return _field_rows(path, task, labelled, header, rows)


def read_csv(path: Path, task: TaskSpec, labelled: bool) -> Rows:
    """Comma-separated with a header row and RFC 4180 quoting."""
    text = "\n".join(decode_lines(path)) + "\n"
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=",", strict=True)
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
    return _field_rows(path, task, labelled, header, rows)


# ----------------------------------------------------------------------------------------------- other formats

def read_jsonl(path: Path, task: TaskSpec, labelled: bool) -> Rows:
    """One JSON object per line (blank lines skipped); the task's columns are keys."""
    objects = []
    for i, line in enumerate(decode_lines(path), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise DataError(f"invalid JSON at column {e.colno}: {e.msg}", str(path), i) from None
        if not isinstance(obj, dict):
            raise DataError(f"expected a JSON object, found {type(obj).__name__}", str(path), i)
        objects.append((i, obj))
    if not objects:
        raise DataError("the file has no records", str(path))
    records = []
    for ln, obj in objects:
        rec = {}
        for role, col in _task_columns(task):
            if col is None or (role == "label" and not labelled and col not in obj):
                continue
            if col not in obj:
                raise DataError(f"missing key '{col}' ({role})", str(path), ln)
            rec[role] = obj[col]
        records.append((ln, rec))
    return Rows(path, task, records, tuple(records[0][1]), labelled)


def table_columns(path: Path) -> tuple[list[str], dict[str, list]]:
    """Parquet files and datasets directories as column lists."""
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


def read_table(path: Path, task: TaskSpec, labelled: bool) -> Rows:
    """A Parquet file or a datasets directory (`save_to_disk`); rows are numbered from 1, there are no lines."""
    header, columns = table_columns(path)
    values = {}
    for role, col in _task_columns(task):
        if col is None or (role == "label" and not labelled and col not in header):
            continue
        values[role] = columns[header[_column_index(header, col, path, role)]]
    n = len(next(iter(values.values())))
    records = [(i + 1, {role: vals[i] for role, vals in values.items()}) for i in range(n)]
    return Rows(path, task, records, tuple(values), labelled)


def read_txt(path: Path, task: TaskSpec, labelled: bool) -> Rows:
    """Plain text, one unlabelled text per line; a generic task reads it as its single column 'text'."""
    records = [(i + 1, {"text": ln}) for i, ln in enumerate(decode_lines(path))]
    task = replace(task, text_col="text", pair_col=None) if task.file_format == "auto" else task
    return Rows(path, task, records, ("text",), labelled=False)


# ----------------------------------------------------------------------------------------------- choosing one

# By file suffix, in the order `find_split_file` looks for `<split>.<suffix>`.
READERS: dict[str, Reader] = {
    ".tsv": read_tsv, ".csv": read_csv, ".jsonl": read_jsonl, ".json": read_jsonl, ".parquet": read_table,
    ".txt": read_txt,
}
# A GLUE task's .tsv files by the task's `file_format`.
GLUE_READERS: dict[str, Reader] = {"glue-tsv": read_tsv, "glue-tsv-noheader": read_tsv_noheader}
GENERIC_SUFFIXES = tuple(READERS)


def reader_for(task: TaskSpec, path: Path) -> Reader:
    """The reader of one split file: datasets directories, then a GLUE task's own TSV layout, then by suffix."""
    suffix = path.suffix.lower()
    if path.is_dir():
        return read_table
    if suffix == ".tsv" and task.file_format in GLUE_READERS:
        return GLUE_READERS[task.file_format]
    if suffix not in READERS:
        raise DataError(f"unsupported file type '{suffix}'; use one of {', '.join(GENERIC_SUFFIXES)}", str(path))
    return READERS[suffix]


# The Hugging Face names of the dev splits (`validation`, MNLI's `validation_matched`), read where no file has ours.
SPLIT_ALIASES = {"dev": ("validation",), "dev_matched": ("validation_matched",),
                 "dev_mismatched": ("validation_mismatched",)}


def find_split_file(data: str | Path, split: str) -> Path:
    """`data` is a file (used as is) or a directory holding `<split>.<ext>` (or a datasets directory named so),
    or the split's Hugging Face name (`validation.csv` for `dev`)."""
    data = Path(data)
    if data.is_file():
        return data
    if not data.is_dir():
        raise DataError(f"data path does not exist: {data}")
    candidates = [data / f"{name}{suffix}" for name in (split, *SPLIT_ALIASES.get(split, ()))
                  for suffix in (*GENERIC_SUFFIXES, "")]
    for c in candidates:
        if c.is_file() or (c.is_dir() and (c / "state.json").is_file()):
            return c
    raise DataError(
        f"{data}: no '{split}' split found; expected one of "
        + ", ".join(c.name for c in candidates)
        + " (a datasets directory for a name without a suffix)"
    )


def read_rows(task: TaskSpec, data: str | Path, split: str, *, labelled: bool = True,
              limit: int | None = None) -> Rows:
    """The raw rows of one split (the first `limit` of them), unvalidated beyond what the format itself checks."""
    path = find_split_file(data, split)
    rows = reader_for(task, path)(path, task, labelled)
    records = rows.records if limit is None else rows.records[:limit]
    return replace(rows, records=records, split=split)
