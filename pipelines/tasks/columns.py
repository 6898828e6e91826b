"""What a task file of one's own holds, for `distill init`: every column of a split file, and the text, pair and
label columns they most likely are (a proposal the user checks; the readers themselves never guess)."""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DataError
from .readers import decode_lines, table_columns

# Column names that usually hold the label, in the order they are preferred.
LABEL_NAMES = ("label", "labels", "gold_label", "class", "category", "target", "sentiment", "stars", "rating",
               "quality", "y")
MAX_LABELS = 50  # a column with more distinct values than this is not proposed as the label


@dataclass
class Proposal:
    """The proposed columns of one split file and what they hold."""

    text_col: str
    pair_col: str | None
    label_col: str | None
    rows: int
    label_counts: dict[str, int] = field(default_factory=dict)  # label value -> rows, in sorted value order
    mean_chars: dict[str, float] = field(default_factory=dict)  # text column -> mean length in characters


def read_columns(path: Path) -> dict[str, list]:
    """Every column of a split file (CSV, TSV with a header, JSONL, Parquet, datasets directory, TXT)."""
    if path.is_dir() or path.suffix.lower() == ".parquet":
        header, columns = table_columns(path)
        return {c: columns[c] for c in header}
    suffix = path.suffix.lower()
    if suffix == ".txt":
        return {"text": decode_lines(path)}
    if suffix in (".jsonl", ".json"):
        return _jsonl_columns(path)
    if suffix in (".csv", ".tsv"):
        text = "\n".join(decode_lines(path)) + "\n"
        reader = csv.reader(io.StringIO(text, newline=""), delimiter="," if suffix == ".csv" else "\t",
                            quoting=csv.QUOTE_MINIMAL if suffix == ".csv" else csv.QUOTE_NONE)
        header = next(reader)
        rows = [r for r in reader if r]
        return {name: [r[i] if i < len(r) else None for r in rows] for i, name in enumerate(header)}
    raise DataError(f"unsupported file type '{suffix}'", str(path))


def _jsonl_columns(path: Path) -> dict[str, list]:
    objects = []
    for i, line in enumerate(decode_lines(path), start=1):
        if line.strip():
            try:
                objects.append(json.loads(line))
            except json.JSONDecodeError as e:
                raise DataError(f"invalid JSON at column {e.colno}: {e.msg}", str(path), i) from None
    keys = list(dict.fromkeys(k for o in objects if isinstance(o, dict) for k in o))
    return {k: [o.get(k) if isinstance(o, dict) else None for o in objects] for k in keys}


def propose_columns(columns: dict[str, list], where: str) -> Proposal:
    """The label column (a usual name, else the column with fewest distinct values), then the text columns:
    those whose values are mostly phrases (with spaces, 10 characters or more on average), first one the text
    and a second one the pair."""
    if not columns:
        raise DataError("no columns found", where)
    rows = len(next(iter(columns.values())))
    label = _label_column(columns, rows)
    lengths = {c: _mean_chars(v) for c, v in columns.items() if c != label}
    texty = [c for c in lengths if lengths[c] >= 10 and _spaced(columns[c]) >= 0.5]
    if not texty:
        if not lengths:
            raise DataError("no column besides the label to read text from", where)
        texty = [max(lengths, key=lengths.get)]
    counts = Counter(str(v) for v in columns[label]) if label else Counter()
    return Proposal(texty[0], texty[1] if len(texty) > 1 else None, label, rows, dict(sorted(counts.items())),
                    {c: round(lengths[c], 1) for c in texty[:2]})


def _label_column(columns: dict[str, list], rows: int) -> str | None:
    named = [c for name in LABEL_NAMES for c in columns if c.strip().lower() == name]
    if named:
        return named[0]
    distinct = {c: len({str(v) for v in vals}) for c, vals in columns.items()}
    few = [c for c, n in distinct.items() if 1 < n <= min(MAX_LABELS, max(2, rows // 2))]
    return min(few, key=lambda c: distinct[c]) if few else None


def _mean_chars(values: list) -> float:
    texts = [v for v in values if isinstance(v, str)]
    return sum(len(t) for t in texts) / len(texts) if texts else 0.0


def _spaced(values: list) -> float:
    texts = [v for v in values if isinstance(v, str)]
    return sum(" " in t.strip() for t in texts) / len(texts) if texts else 0.0
