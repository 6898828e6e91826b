"""Token ids of text rows for a Hugging Face tokenizer, unpadded, and padded batches of them: shared by the
teacher's scorer and fine-tuning and by the transformer student, so every model of the family reads a row (its
masked words rendered as the model's own mask token) the same way."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from augment import MASK_SYMBOL


@dataclass
class Encoded:
    """Token ids of many rows, unpadded, in row order."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None  # only for pairs, and only for models that take them
    lengths: np.ndarray  # [n] int64

    def __len__(self) -> int:
        return len(self.input_ids)

    def take(self, rows: Sequence[int]) -> Encoded:
        """These rows only, in the order given."""
        types = [self.token_type_ids[i] for i in rows] if self.token_type_ids is not None else None
        return Encoded([self.input_ids[i] for i in rows], types, self.lengths[np.asarray(rows, dtype=np.int64)])


def render_masks(texts: Sequence[str], mask_token: str | None) -> list[str]:
    """Replace the neutral mask symbol by the model's own mask token (a plain string replace)."""
    if mask_token is None:
        return list(texts)
    return [t.replace(MASK_SYMBOL, mask_token) if MASK_SYMBOL in t else t for t in texts]


def encode(tokenizer: Any, texts: Sequence[str], pairs: Sequence[str] | None, max_length: int) -> Encoded:
    """Tokenise all rows in one bulk call to the fast tokenizer: no padding (batches pad later, each to its own
    longest row), truncated to `max_length` tokens."""
    if len(texts) == 0:
        return Encoded([], None, np.zeros(0, dtype=np.int64))
    types = pairs is not None and "token_type_ids" in tokenizer.model_input_names
    enc = tokenizer(list(texts), list(pairs) if pairs is not None else None, truncation=True,
                    max_length=max_length, padding=False, return_attention_mask=False,
                    return_token_type_ids=types)
    ids = enc["input_ids"]
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
    return Encoded(ids, enc["token_type_ids"] if types else None, lengths)


def collate(enc: Encoded, rows: np.ndarray, pad_id: int) -> dict[str, np.ndarray]:
    """Pad the given rows to their longest. The attention mask is left out when no row is padded (common
    after sorting by length), which lets SDPA take its unmasked kernels."""
    lens = enc.lengths[rows]
    width = int(lens.max())
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)  # [B, T]
    for j, r in enumerate(rows):
        ids[j, :lens[j]] = enc.input_ids[r]
    batch = {"input_ids": ids}
    if (lens < width).any():
        batch["attention_mask"] = (np.arange(width)[None, :] < lens[:, None]).astype(np.int64)  # [B, T]
    if enc.token_type_ids is not None:
        types = np.zeros((len(rows), width), dtype=np.int64)  # [B, T]
        for j, r in enumerate(rows):
            types[j, :lens[j]] = enc.token_type_ids[r]
        batch["token_type_ids"] = types
    return batch
