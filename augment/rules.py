"""The three rules of Tang et al. (2019) as pure functions over token-id arrays and a numpy Generator.

Arrays are [draws, tokens]: one example's n_iter draws are made in one vectorised call. Per token, one uniform
u decides the (mutually exclusive) rule: u < p_mask masks, p_mask <= u < p_mask + p_pos replaces the word by one
with the same POS tag. After that pass, with probability p_ng a draw keeps only a random n-gram (n uniform in
1..5, capped at the length) and drops the rest.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .pos_table import PosTable

KEEP, MASK, POS = 0, 1, 2
MAX_NGRAM = 5


def token_ops(shape: tuple[int, int], p_mask: float, p_pos: float, rng: np.random.Generator) -> np.ndarray:
    """Which rule each token gets: KEEP, MASK or POS (uint8 [draws, tokens]), from one uniform draw per token."""
    u = rng.random(shape)
    ops = np.zeros(shape, dtype=np.uint8)
    ops[u < p_mask + p_pos] = POS
    ops[u < p_mask] = MASK
    return ops


def apply_mask(word_ids: np.ndarray, ops: np.ndarray, mask_id: int) -> np.ndarray:
    """Replace the tokens marked MASK by `mask_id`."""
    return np.where(ops == MASK, mask_id, word_ids).astype(word_ids.dtype)


def apply_pos_replace(word_ids: np.ndarray, tag_ids: np.ndarray, ops: np.ndarray, table: PosTable,
                      rng: np.random.Generator) -> np.ndarray:
    """Replace the tokens marked POS by a word with the same tag, sampled from the tag's unigram distribution.
    `tag_ids` has the tokens' shape (or broadcasts to it)."""
    out = word_ids.copy()
    sel = ops == POS
    if sel.any():
        out[sel] = table.sample(np.broadcast_to(tag_ids, ops.shape)[sel], rng)
    return out


@dataclass(frozen=True)
class Windows:
    """The n-gram kept by each draw: tokens [start, end). Draws that keep everything have (0, length)."""

    start: np.ndarray  # int64 [draws]
    end: np.ndarray  # int64 [draws]


def ngram_windows(draws: int, length: int, p_ng: float, rng: np.random.Generator) -> Windows:
    """With probability p_ng per draw, a window of n ~ U{1..5} tokens (capped at `length`) at a uniform start;
    otherwise the whole sequence. Three draws per row are always consumed, so later draws do not shift."""
    take = rng.random(draws) < p_ng
    n = np.minimum(rng.integers(1, MAX_NGRAM + 1, draws), length)
    start = np.floor(rng.random(draws) * (length - n + 1)).astype(np.int64)
    start = np.where(take, start, 0)
    end = np.where(take, start + n, length)
    return Windows(start, end)
