"""The BiLSTM's word tokens of a whole scored set, through the token cache (`training.token_cache`): the regex
tokeniser's tokens of every row (both sides of a pair) as ids into one token table, with the table. A student
takes its kept rows and builds its vocabulary from their counts alone, so the vocabulary, the ids and every bit
of training are those of tokenising the kept rows directly (`Vocab.build` orders by count, ties alphabetically,
whatever the table's order).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import store
from ..progress import progress
from ..training.rows import SelectedRows
from ..training.token_cache import ArrayWriter, TokenCache, cached, source_hash
from .tokenizer import Tokenizer
from .vocab import Corpus, CorpusBuilder, tokenize_corpus

TOKENS = "tokens.json"


def identity(tokenizer: Tokenizer, sides: list[str], rows: int) -> dict:
    """What decides the entry besides the scored set: the tokeniser's rules and setting, the sides, the rows."""
    return {"kind": "words", "code": source_hash(Tokenizer, tokenize_corpus, CorpusBuilder),
            "lowercase": tokenizer.lowercase, "sides": sides, "rows": rows}


def word_tokens(scored: Path, rows: SelectedRows, tokenizer: Tokenizer, sides: list[str]) -> TokenCache:
    """The entry of the scored set's rows (its first --limit), built when there is none."""
    def build(folder: Path) -> dict:
        builder = CorpusBuilder(tokenizer, len(sides))
        with progress(rows.source.num_rows, "tokenise (once: token cache)", unit="row") as bar:
            for piece in rows.pieces(sides, every_row=True):
                for side, column in enumerate(sides):
                    builder.add(piece.column(column), side)
                bar.update(piece.num_rows)
        table = builder.tokens
        identity_lut = np.arange(len(table), dtype=np.int32)
        arrays = {}
        for side, column in enumerate(sides):
            corpus = builder.corpus(identity_lut, side)
            for name, values, dtype in ((f"{column}_ids", corpus.ids, "int32"),
                                        (f"{column}_offsets", corpus.offsets, "int64")):
                writer = ArrayWriter(folder, name, dtype)
                writer.append(values)
                arrays.update(writer.close())
        (folder / TOKENS).write_text(json.dumps(table, ensure_ascii=False), "utf-8")
        return {"arrays": arrays, "rows": rows.source.num_rows, "tokens": len(table)}

    fingerprint = store.read_manifest(scored)["fingerprint"]
    return cached(fingerprint, identity(tokenizer, sides, rows.source.num_rows), build)


def kept_corpora(cache: TokenCache, sides: list[str], kept: np.ndarray) -> tuple[list[str], list[Corpus]]:
    """The token table and each side's kept rows (ids into the table), read from the memory-mapped entry."""
    table = json.loads((cache.path / TOKENS).read_text("utf-8"))
    corpora = [Corpus(cache.array(f"{c}_ids"), cache.array(f"{c}_offsets")).take(kept) for c in sides]
    return table, corpora
