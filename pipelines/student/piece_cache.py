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
from ..training.token_cache import ArrayWriter, TokenCache, cached, source_hash


def tokenizer_identity(tokenizer: Any) -> str:
    """A hash of everything the tokenizer computes with: the fast tokenizer's whole definition (normaliser,
    pre-tokeniser, model and vocabulary, post-processor), or its vocabulary when it has no fast backend."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None:
        text = json.dumps(sorted(tokenizer.get_vocab().items()))
    else:  # truncation and padding are a call's settings, which the backend keeps from its last call
        text = json.dumps({k: v for k, v in json.loads(backend.to_str()).items() if k not in ("truncation", "padding")},
                          sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def identity(tokenizer: Any, max_len: int, is_pair: bool, rows: int) -> dict:
    return {"kind": "pieces", "tokenizer": tokenizer_identity(tokenizer), "mask_token": tokenizer.mask_token,
            "types": "token_type_ids" in tokenizer.model_input_names, "max_len": max_len, "pair": is_pair,
            "code": source_hash(encoding), "rows": rows}


def piece_tokens(scored: Path, rows: SelectedRows, tokenizer: Any, max_len: int, is_pair: bool) -> TokenCache:
    """The entry of the scored set's rows (its first --limit), built when there is none."""
    sides = ["text", "text_pair"] if is_pair else ["text"]

    def build(folder: Path) -> dict:
        types = "token_type_ids" in tokenizer.model_input_names and is_pair
        ids, offsets = ArrayWriter(folder, "ids", "int32"), ArrayWriter(folder, "offsets", "int64")
        type_ids = ArrayWriter(folder, "types", "int8") if types else None
        offsets.append(np.zeros(1, np.int64))
        with progress(rows.source.num_rows, "tokenise (once: token cache)", unit="row") as bar:
            for piece in rows.pieces(sides, every_row=True):
                texts = render_masks(piece.column("text").to_pylist(), tokenizer.mask_token)
                pairs = render_masks(piece.column("text_pair").to_pylist(), tokenizer.mask_token) if is_pair else None
                enc = encode(tokenizer, texts, pairs, max_len)
                offsets.append(enc.offsets[1:] + ids.length)  # this piece's row ends, after the pieces before
                ids.append(enc.ids)
                if type_ids is not None:
                    type_ids.append(enc.types)
                bar.update(piece.num_rows)
        rows_written, tokens = offsets.length - 1, ids.length
        arrays = {**ids.close(), **offsets.close(), **(type_ids.close() if type_ids is not None else {})}
        return {"arrays": arrays, "rows": rows_written, "tokens": tokens}

    fingerprint = store.read_manifest(scored)["fingerprint"]
    return cached(fingerprint, identity(tokenizer, max_len, is_pair, rows.source.num_rows), build)


def kept_encoding(cache: TokenCache, kept: np.ndarray) -> Encoded:
    """The kept rows, read from the memory-mapped entry."""
    types = cache.array("types") if cache.has("types") else None
    return Encoded(cache.array("ids"), cache.array("offsets"), types).take(kept)
