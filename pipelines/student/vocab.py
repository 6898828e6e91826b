"""Vocabulary and encoded text: a column of texts -> rows of token ids (`Corpus`, CSR form) -> padded batches.

- `tokenize_corpus`: the tokeniser over a whole Arrow column, vectorised: texts are split on whitespace in Arrow,
  only the distinct whitespace chunks go through the regex, and the rows are assembled with numpy.
- `Vocab`: rows PAD=0, UNK=1, MASK=2, then the corpus tokens by count.
- `encode_texts` (texts -> vocabulary ids) and `pad_batch` (rows -> the model's padded inputs).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from augment import MASK_SYMBOL

from ..encoding import token_positions
from ..errors import DataError
from .tokenizer import Tokenizer

PAD, UNK, MASK = 0, 1, 2
SPECIALS = ("<pad>", "<unk>", MASK_SYMBOL)


@dataclass
class Corpus:
    """Rows of token ids in CSR form: row i is `ids[offsets[i]:offsets[i + 1]]`."""

    ids: np.ndarray  # int32 [total tokens]
    offsets: np.ndarray  # int64 [rows + 1]

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def lengths(self) -> np.ndarray:
        return np.diff(self.offsets)

    def take(self, rows: np.ndarray) -> Corpus:
        """The given rows (in that order), as a new compact corpus."""
        rows = np.asarray(rows, dtype=np.int64)
        starts, lens = self.offsets[rows], self.lengths[rows]
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lens, out=offsets[1:])
        return Corpus(self.ids[token_positions(starts, lens)], offsets)


def tokenize_corpus(texts: pa.Array | pa.ChunkedArray | list[str], tokenizer: Tokenizer
                    ) -> tuple[Corpus, list[str], np.ndarray]:
    """Tokenise a column. Returns the rows as ids into a corpus-local token table, that table, and each token's
    count. Equal to calling `tokenizer` on every text, but the regex only sees each distinct whitespace chunk once
    (SST-2 ×20 has ~28M chunks but ~20k distinct ones), and everything else runs in Arrow and numpy."""
    arr = texts if isinstance(texts, (pa.Array, pa.ChunkedArray)) else pa.array(texts, pa.string())
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks else pa.array([], pa.string())
    if arr.type in (pa.large_string(), pa.string_view()):
        arr = arr.cast(pa.string())
    arr = arr.fill_null("")
    split = pc.utf8_split_whitespace(arr)  # list<string> [rows]
    chunks_per_row = pc.list_value_length(split).to_numpy(zero_copy_only=False).astype(np.int64)
    flat = pc.list_flatten(split)
    enc = pc.dictionary_encode(flat)
    chunk_idx = enc.indices.to_numpy(zero_copy_only=False).astype(np.int64)  # [chunks] -> distinct chunk
    distinct = enc.dictionary.to_pylist()

    # The regex over distinct chunks only: chunk c's tokens are tok_ids[tok_off[c]:tok_off[c + 1]].
    table: dict[str, int] = {}
    tok_ids: list[int] = []
    tok_len = np.zeros(len(distinct), dtype=np.int64)
    for c, text in enumerate(distinct):
        toks = tokenizer.chunk(text)
        tok_len[c] = len(toks)
        tok_ids.extend(table.setdefault(t, len(table)) for t in toks)
    tok_off = np.zeros(len(distinct) + 1, dtype=np.int64)
    np.cumsum(tok_len, out=tok_off[1:])
    tok_ids_arr = np.asarray(tok_ids, dtype=np.int32)

    # Expand every chunk occurrence into its tokens, then cut the flat stream into rows.
    n = tok_len[chunk_idx]  # tokens of each chunk occurrence
    ids = tok_ids_arr[token_positions(tok_off[chunk_idx], n)]
    chunk_row_off = np.zeros(len(chunks_per_row) + 1, dtype=np.int64)
    np.cumsum(chunks_per_row, out=chunk_row_off[1:])
    tok_cum = np.zeros(len(n) + 1, dtype=np.int64)
    np.cumsum(n, out=tok_cum[1:])
    offsets = tok_cum[chunk_row_off]
    counts = np.bincount(ids, minlength=len(table)).astype(np.int64)
    return Corpus(ids, offsets), list(table), counts


class CorpusBuilder:
    """`tokenize_corpus` over columns that arrive in pieces (Arrow slices of a memory-mapped scored set), so that
    only one piece's intermediate arrays exist at a time. Rows are kept as int32 ids into one token table, with
    each token's count, shared by every side (both texts of a pair: one vocabulary); `corpus(lut, side)` maps
    a side's rows to vocabulary rows. Equal to one `tokenize_corpus` call over the whole column, whatever the
    pieces (a test checks it)."""

    def __init__(self, tokenizer: Tokenizer, sides: int = 1):
        self.tokenizer = tokenizer
        self.index: dict[str, int] = {}
        self.counts = np.zeros(0, dtype=np.int64)
        self.ids: list[list[np.ndarray]] = [[] for _ in range(sides)]  # int32 per piece, ids into self.index
        self.lengths: list[list[np.ndarray]] = [[] for _ in range(sides)]  # int64 per piece

    def add(self, texts: pa.Array | pa.ChunkedArray | list[str], side: int = 0) -> None:
        corpus, tokens, counts = tokenize_corpus(texts, self.tokenizer)
        to_shared = np.fromiter((self.index.setdefault(t, len(self.index)) for t in tokens), dtype=np.int32,
                                count=len(tokens))
        if len(self.index) > len(self.counts):
            self.counts = np.concatenate([self.counts, np.zeros(len(self.index) - len(self.counts), np.int64)])
        self.counts[to_shared] += counts  # a piece's tokens are distinct
        self.ids[side].append(to_shared[corpus.ids] if len(to_shared) else corpus.ids)
        self.lengths[side].append(corpus.lengths)

    @property
    def tokens(self) -> list[str]:
        return list(self.index)

    def corpus(self, lut: np.ndarray, side: int = 0) -> Corpus:
        """A side's rows as vocabulary rows (`lut`: `Vocab.lookup_table(self.tokens)`), once: its pieces are let
        go as they are copied."""
        parts, lengths = self.ids[side], self.lengths[side]
        ids = np.empty(sum(len(part) for part in parts), dtype=np.int32)
        at = 0
        while parts:  # each piece is dropped once copied: memory holds the ids once, plus one piece
            part = parts.pop(0)
            ids[at:at + len(part)] = lut[part] if len(part) else part
            at += len(part)
        lens = np.concatenate(lengths) if lengths else np.zeros(0, dtype=np.int64)
        self.lengths[side] = []
        offsets = np.zeros(len(lens) + 1, dtype=np.int64)
        np.cumsum(lens, out=offsets[1:])
        return Corpus(ids, offsets)


class Vocab:
    """Token <-> row. Rows 0..2 are PAD, UNK and MASK (the transfer set's mask symbol gets its own row)."""

    def __init__(self, tokens: list[str]):
        if tuple(tokens[:3]) != SPECIALS:
            raise DataError(f"a vocabulary must start with {list(SPECIALS)}, found {tokens[:3]}")
        self.tokens = list(tokens)
        self.index = {t: i for i, t in enumerate(self.tokens)}
        if len(self.index) != len(self.tokens):
            raise DataError("the vocabulary lists a token twice")

    @classmethod
    def build(cls, tokens: list[str], counts: np.ndarray, min_count: int = 1, max_size: int | None = None) -> Vocab:
        """Tokens with at least `min_count` occurrences, most frequent first (ties alphabetical), at most
        `max_size` rows in all (specials included)."""
        order = sorted((i for i in range(len(tokens)) if counts[i] >= min_count and tokens[i] not in SPECIALS),
                       key=lambda i: (-int(counts[i]), tokens[i]))
        if max_size is not None:
            order = order[:max(0, max_size - len(SPECIALS))]
        return cls([*SPECIALS, *(tokens[i] for i in order)])

    def __len__(self) -> int:
        return len(self.tokens)

    def lookup_table(self, tokens: list[str]) -> np.ndarray:
        """int32 row of each of `tokens` (UNK when absent): maps a corpus-local token table to the vocabulary."""
        return np.asarray([self.index.get(t, UNK) for t in tokens], dtype=np.int32)

    def encode(self, tokens: list[str]) -> list[int]:
        return [self.index.get(t, UNK) for t in tokens]

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps({"tokens": self.tokens}, ensure_ascii=False), "utf-8")

    @classmethod
    def load(cls, path: str | Path) -> Vocab:
        return cls(json.loads(Path(path).read_text("utf-8"))["tokens"])


def encode_texts(texts: pa.Array | list[str], tokenizer: Tokenizer, vocab: Vocab) -> Corpus:
    """Rows of vocabulary ids for a column of texts."""
    corpus, table, _ = tokenize_corpus(texts, tokenizer)
    lut = vocab.lookup_table(table)
    return Corpus(lut[corpus.ids] if len(lut) else corpus.ids, corpus.offsets)


def pad_batch(corpus: Corpus, rows: np.ndarray, max_len: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Padded ids [B, T] (int64, PAD=0) and lengths [B] of the given rows; rows are cut to `max_len` tokens, and
    an empty row becomes a single PAD token (every row needs a last position to read its state at)."""
    starts = corpus.offsets[rows]
    lens = np.minimum(corpus.offsets[rows + 1] - starts, max_len)
    t = max(1, int(lens.max()) if len(lens) else 1)
    pos = np.arange(t)[None, :]  # [1, T]
    mask = pos < lens[:, None]  # [B, T]
    flat = np.where(mask, starts[:, None] + pos, 0)
    ids = np.where(mask, corpus.ids[flat] if len(corpus.ids) else 0, PAD)
    return torch.from_numpy(ids.astype(np.int64)), torch.from_numpy(np.maximum(lens, 1).astype(np.int64))
