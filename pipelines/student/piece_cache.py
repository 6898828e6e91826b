"""The transformer student's word pieces of a whole scored set, through the token cache (`training.token_cache`):
every row (both texts of a pair) tokenised by the teacher's fast tokenizer, masked words rendered as its mask
token and truncated to `max_len`, as `encoding.Encoded` arrays. Every seed, baseline, ablation, filter and
resume of a student with the same tokenizer reads them, memory-mapped, and takes its kept rows.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from .. import encoding, store
from ..encoding import Encoded, encode, render_masks
from ..progress import progress
from ..training.rows import SelectedRows
from ..training.token_cache import TokenCache, cached, source_hash


def tokenizer_identity(tokenizer: Any) -> str:
    """A hash of everything the tokenizer computes with: the fast tokenizer's whole definition (normaliser,
    pre-tokeniser, model and vocabulary, post-processor), or its vocabulary when it has no fast backend."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    text = backend.to_str() if backend is not None else json.dumps(sorted(tokenizer.get_vocab().items()))
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def identity(tokenizer: Any, max_len: int, is_pair: bool, rows: int) -> dict:
    return {"kind": "pieces", "tokenizer": tokenizer_identity(tokenizer), "mask_token": tokenizer.mask_token,
            "types": "token_type_ids" in tokenizer.model_input_names, "max_len": max_len, "pair": is_pair,
            "code": source_hash(encoding), "rows": rows}


def piece_tokens(scored: Path, rows: SelectedRows, tokenizer: Any, max_len: int, is_pair: bool) -> TokenCache:
    """The entry of the scored set's rows (its first --limit), built when there is none."""
    sides = ["text", "text_pair"] if is_pair else ["text"]

    def build(folder: Path) -> dict:
        parts: list[Encoded] = []
        with progress(rows.source.num_rows, "tokenise (once: token cache)", unit="row") as bar:
            for piece in rows.pieces(sides, every_row=True):
                texts = render_masks(piece.column("text").to_pylist(), tokenizer.mask_token)
                pairs = render_masks(piece.column("text_pair").to_pylist(), tokenizer.mask_token) if is_pair else None
                parts.append(encode(tokenizer, texts, pairs, max_len))
                bar.update(piece.num_rows)
        whole = concatenate(parts)
        np.save(folder / "ids.npy", whole.ids)
        np.save(folder / "offsets.npy", whole.offsets)
        if whole.types is not None:
            np.save(folder / "types.npy", whole.types)
        return {"rows": len(whole), "tokens": int(whole.offsets[-1])}

    fingerprint = store.read_manifest(scored)["fingerprint"]
    return cached(fingerprint, identity(tokenizer, max_len, is_pair, rows.source.num_rows), build)


def concatenate(parts: list[Encoded]) -> Encoded:
    """Encoded rows of several pieces, in order, as one."""
    if not parts:
        return Encoded(np.zeros(0, np.int32), np.zeros(1, np.int64))
    ids = np.concatenate([p.ids for p in parts])
    lengths = np.concatenate([p.lengths for p in parts])
    offsets = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    types = np.concatenate([p.types for p in parts]) if parts[0].types is not None else None
    return Encoded(ids, offsets, types)


def kept_encoding(cache: TokenCache, kept: np.ndarray) -> Encoded:
    """The kept rows, read from the memory-mapped entry."""
    types = cache.array("types") if (cache.path / "types.npy").is_file() else None
    return Encoded(cache.array("ids"), cache.array("offsets"), types).take(kept)
