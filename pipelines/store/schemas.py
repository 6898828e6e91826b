"""The schemas of the transfer and scored sets (DESIGN.md §4), declared here, once."""

from __future__ import annotations

import pyarrow as pa


def transfer_schema(is_pair: bool) -> pa.Schema:
    """The transfer-set contract (DESIGN.md §4): the one place it is declared."""
    fields = [pa.field("text", pa.string(), nullable=False)]
    if is_pair:
        fields.append(pa.field("text_pair", pa.string(), nullable=False))
    fields += [
        pa.field("label", pa.int64()),  # gold label id of originals; null for synthetic rows
        pa.field("source_index", pa.int64(), nullable=False),  # row of the original in the split
        pa.field("draw", pa.int32()),  # the draw (0 .. n_iter - 1) that made a synthetic row; null for originals
        pa.field("is_original", pa.bool_(), nullable=False),
        pa.field("ops", pa.list_(pa.string()), nullable=False),  # rules that changed the row: mask, pos, ngram
    ]
    return pa.schema(fields)


def scored_schema(source: pa.Schema, num_labels: int) -> pa.Schema:
    """The scored-set contract (DESIGN.md §4): the input's columns, then one float32 logit per class."""
    return source.append(pa.field("teacher_logits", pa.list_(pa.float32(), num_labels), nullable=False))
