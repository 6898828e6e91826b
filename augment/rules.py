"""The three rules of Tang et al. (2019) as pure functions of token arrays and uniform random numbers.

The recipe draws the uniforms (from a numpy Generator per example) and hands them in, so every rule is a plain
array function that is easy to test and runs vectorised over many draws of many examples at once. Per token, one
uniform u decides the (mutually exclusive) rule: u < p_mask masks, p_mask <= u < p_mask + p_pos replaces the word
by one with the same POS tag. After that pass, with probability p_ng a draw keeps only a random n-gram (n uniform
in 1..5, capped at the length) and drops the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .pos_table import PosTable

KEEP, MASK, POS = 0, 1, 2
MAX_NGRAM = 5
NGRAM_UNIFORMS = 3  # uniforms per draw that `ngram_windows` consumes: take?, n, start


def token_ops(u: np.ndarray, p_mask: float, p_pos: float, frozen: np.ndarray | None = None) -> np.ndarray:
    """Which rule each token gets (KEEP, MASK or POS, uint8, shaped like `u`), from one uniform per token.
    Tokens marked in `frozen` (whitespace tokens) always KEEP; they still consume their uniform, so freezing a
    token does not shift the random draws of the others."""
    ops = np.zeros(u.shape, dtype=np.uint8)
    ops[u < p_mask + p_pos] = POS
    ops[u < p_mask] = MASK
    if frozen is not None:
        ops[np.broadcast_to(frozen, u.shape)] = KEEP
    return ops


def apply_mask(word_ids: np.ndarray, ops: np.ndarray, mask_id: int) -> np.ndarray:
    """Replace the tokens marked MASK by `mask_id`."""
    return np.where(ops == MASK, mask_id, word_ids).astype(word_ids.dtype)


def apply_pos_replace(word_ids: np.ndarray, tag_ids: np.ndarray, ops: np.ndarray, table: PosTable,
                      u: np.ndarray) -> np.ndarray:
    """Replace the tokens marked POS by a word with the same tag, drawn from the tag's unigram distribution
    with the uniform `u` of that token. `tag_ids` and `u` have the tokens' shape (or broadcast to it)."""
    out = np.array(word_ids, copy=True)
    sel = ops == POS
    if sel.any():
        out[sel] = table.sample(np.broadcast_to(tag_ids, ops.shape)[sel], np.broadcast_to(u, ops.shape)[sel])
    return out


@dataclass(frozen=True)
class Windows:
    """The n-gram kept by each draw: tokens [start, end). Draws that keep everything have (0, length)."""

    start: np.ndarray  # int64 [draws]
    end: np.ndarray  # int64 [draws]


def ngram_windows(u: np.ndarray, length: np.ndarray | int, p_ng: float) -> Windows:
    """From three uniforms per draw (`u` [draws, 3]): with probability p_ng a window of n ~ U{1..5} tokens
    (capped at the draw's `length`) at a uniform start; otherwise the whole sequence."""
    length = np.broadcast_to(np.asarray(length, dtype=np.int64), u.shape[:1])
    take = u[:, 0] < p_ng
    n = np.minimum(1 + np.floor(u[:, 1] * MAX_NGRAM).astype(np.int64), length)
    start = np.floor(u[:, 2] * (length - n + 1)).astype(np.int64)
    return Windows(np.where(take, start, 0), np.where(take, start + n, length))
