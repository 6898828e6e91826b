"""Token ids of text rows for a Hugging Face tokenizer, unpadded, and padded batches of them: shared by the
teacher's scorer and fine-tuning and by the transformer student, so every model of the family reads a row (its
masked words rendered as the model's own mask token) the same way."""

from __future__ import annotations

from collections.abc import Sequence
import itertools
from dataclasses import dataclass
from typing import Any

import numpy as np

from augment import MASK_SYMBOL


@dataclass
class Encoded:
    """Token ids of many rows, unpadded, in row order, in CSR form: row i is `ids[offsets[i]:offsets[i + 1]]`
    (int32 ids, int64 offsets: flat arrays that a token cache memory-maps, where lists of lists of Python ints
    would take ten times the memory)."""

    ids: np.ndarray  # int32 [total tokens]
    offsets: np.ndarray  # int64 [rows + 1]
    types: np.ndarray | None = None  # int8 [total tokens]: token types, only for pairs and models that take them

    @classmethod
    def from_lists(cls, ids: Sequence[Sequence[int]], types: Sequence[Sequence[int]] | None = None) -> Encoded:
        lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
        offsets = np.zeros(len(ids) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        total = int(offsets[-1])
        flat = np.fromiter(itertools.chain.from_iterable(ids), dtype=np.int32, count=total)
        flat_types = (np.fromiter(itertools.chain.from_iterable(types), dtype=np.int8, count=total)
                      if types is not None else None)
        return cls(flat, offsets, flat_types)

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def row(self, i: int) -> list[int]:
        return self.ids[self.offsets[i]:self.offsets[i + 1]].tolist()

    def take(self, rows: Sequence[int] | np.ndarray) -> Encoded:
        """These rows only, in the order given, as new compact arrays."""
        rows = np.asarray(rows, dtype=np.int64)
        lens = self.lengths[rows]
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lens, out=offsets[1:])
        flat = token_positions(self.offsets[rows], lens)
        return Encoded(np.asarray(self.ids[flat]), offsets,
                       np.asarray(self.types[flat]) if self.types is not None else None)


def token_positions(starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """Concatenation of arange(s, s + n) for each (s, n), vectorised: where each row's tokens lie."""
    total = int(lens.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    ends = np.cumsum(lens)
    shift = np.repeat(starts - (ends - lens), lens)  # per-token start of its range minus its output position
    return np.arange(total, dtype=np.int64) + shift


def render_masks(texts: Sequence[str], mask_token: str | None) -> list[str]:
    """Replace the neutral mask symbol by the model's own mask token (a plain string replace)."""
    if mask_token is None:
        return list(texts)
    return [t.replace(MASK_SYMBOL, mask_token) if MASK_SYMBOL in t else t for t in texts]


def encode(tokenizer: Any, texts: Sequence[str], pairs: Sequence[str] | None, max_length: int) -> Encoded:
    """Tokenise all rows in one bulk call to the fast tokenizer: no padding (batches pad later, each to its own
    longest row), truncated to `max_length` tokens."""
    if len(texts) == 0:
        return Encoded(np.zeros(0, np.int32), np.zeros(1, np.int64))
    types = pairs is not None and "token_type_ids" in tokenizer.model_input_names
    enc = tokenizer(list(texts), list(pairs) if pairs is not None else None, truncation=True,
                    max_length=max_length, padding=False, return_attention_mask=False,
                    return_token_type_ids=types)
    return Encoded.from_lists(enc["input_ids"], enc["token_type_ids"] if types else None)


def collate(enc: Encoded, rows: np.ndarray, pad_id: int) -> dict[str, np.ndarray]:
    """Pad the given rows to their longest. The attention mask is left out when no row is padded (common
    after sorting by length), which lets SDPA take its unmasked kernels."""
    lens = enc.lengths[rows]
    width = int(lens.max())
    real = np.arange(width)[None, :] < lens[:, None]  # [B, T]: the rows' own tokens, row-major as in `ids`
    flat = token_positions(enc.offsets[rows], lens)
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)  # [B, T]
    ids[real] = enc.ids[flat]
    batch = {"input_ids": ids}
    if (lens < width).any():
        batch["attention_mask"] = real.astype(np.int64)  # [B, T]
    if enc.types is not None:
        types = np.zeros((len(rows), width), dtype=np.int64)  # [B, T]
        types[real] = enc.types[flat]
        batch["token_type_ids"] = types
    return batch
