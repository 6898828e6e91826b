"""The POS table: for each tag, the training split's words with their counts.

POS-guided replacement (Tang et al. 2019) swaps a word for another word with the same tag, drawn from the
unigram distribution of that tag's words in the training set, so frequent words are proposed more often.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .tagging import TaggedCorpus


@dataclass
class PosTable:
    """Per tag id t: `word_ids[t]` (word ids seen with tag t), `counts[t]` (how often each was seen).

    For sampling, all tags' cumulative distributions are laid end to end in `cdf`, tag t's shifted by +t
    (so its values lie in (t, t + 1]): one `searchsorted` then serves a batch of tokens with mixed tags."""

    word_ids: list[np.ndarray]
    counts: list[np.ndarray]
    flat_words: np.ndarray  # int32: every tag's words, tag by tag
    cdf: np.ndarray  # float64: tag t's normalised cumulative counts + t
    seg_start: np.ndarray  # int64 [tags]: where tag t's entries begin in flat_words / cdf
    seg_end: np.ndarray  # int64 [tags]

    @classmethod
    def from_corpus(cls, corpus: TaggedCorpus) -> PosTable:
        n_tags = len(corpus.tags)
        # Whitespace tokens are not words: never offered as a replacement (a noun must not become a newline),
        # and never replaced (the recipe keeps them), so their tag's entry may stay empty.
        words = ~corpus.whitespace
        # Count (tag, word) pairs in one pass: encode each pair as one integer key.
        n_words = max(len(corpus.words), 1)
        keys = corpus.tag_ids[words].astype(np.int64) * n_words + corpus.word_ids[words]
        uniq, counts = np.unique(keys, return_counts=True)  # sorted by tag, then word
        tag_of, word_of = np.divmod(uniq, n_words)
        bounds = np.searchsorted(tag_of, np.arange(n_tags + 1))
        word_ids = [word_of[bounds[t]:bounds[t + 1]].astype(np.int32) for t in range(n_tags)]
        tag_counts = [counts[bounds[t]:bounds[t + 1]].astype(np.int64) for t in range(n_tags)]
        cdf = np.concatenate([np.cumsum(c) / c.sum() + t for t, c in enumerate(tag_counts)] or [np.zeros(0)])
        return cls(word_ids, tag_counts, word_of.astype(np.int32), cdf, bounds[:-1].astype(np.int64),
                   bounds[1:].astype(np.int64))

    def sample(self, tag_ids: np.ndarray, u: np.ndarray) -> np.ndarray:
        """One word id per entry of `tag_ids`, drawn from its tag's unigram distribution with the uniform `u`
        of the same entry (inverse-CDF sampling)."""
        tag_ids = np.asarray(tag_ids, dtype=np.int64)
        idx = np.searchsorted(self.cdf, tag_ids + np.asarray(u), side="right")
        # u + t may round up to exactly t + 1: clamp into the tag's own segment.
        idx = np.clip(idx, self.seg_start[tag_ids], self.seg_end[tag_ids] - 1)
        return self.flat_words[idx]

    def distribution(self, tag_id: int) -> dict[int, float]:
        """word id -> probability under tag `tag_id` (for tests and inspection)."""
        c = self.counts[tag_id]
        return dict(zip(self.word_ids[tag_id].tolist(), (c / c.sum()).tolist()))
