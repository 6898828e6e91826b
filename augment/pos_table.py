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
    """Per tag id t: `word_ids[t]` (sorted word ids seen with tag t), `counts[t]` (how often each was seen),
    and `cdf[t]`, the normalised cumulative counts that sampling searches."""

    word_ids: list[np.ndarray]
    counts: list[np.ndarray]
    cdf: list[np.ndarray]

    @classmethod
    def from_corpus(cls, corpus: TaggedCorpus) -> PosTable:
        n_tags = len(corpus.tags)
        # Count (tag, word) pairs in one pass: encode each pair as one integer key.
        n_words = max(len(corpus.words), 1)
        keys = corpus.tag_ids.astype(np.int64) * n_words + corpus.word_ids
        uniq, counts = np.unique(keys, return_counts=True)
        tag_of, word_of = np.divmod(uniq, n_words)
        bounds = np.searchsorted(tag_of, np.arange(n_tags + 1))
        word_ids, tag_counts, cdf = [], [], []
        for t in range(n_tags):
            w = word_of[bounds[t]:bounds[t + 1]].astype(np.int32)
            c = counts[bounds[t]:bounds[t + 1]].astype(np.int64)
            word_ids.append(w)
            tag_counts.append(c)
            cdf.append(np.cumsum(c) / c.sum() if len(c) else np.zeros(0))
        return cls(word_ids, tag_counts, cdf)

    def sample(self, tag_ids: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """One word id per entry of `tag_ids`, each drawn from its tag's unigram distribution.

        One uniform draw per entry, consumed in entry order, so the result depends only on the generator."""
        tag_ids = np.asarray(tag_ids)
        u = rng.random(tag_ids.shape)
        out = np.empty(tag_ids.shape, dtype=np.int32)
        for t in np.unique(tag_ids):
            sel = tag_ids == t
            idx = np.searchsorted(self.cdf[t], u[sel], side="right")
            out[sel] = self.word_ids[t][np.minimum(idx, len(self.word_ids[t]) - 1)]
        return out

    def distribution(self, tag_id: int) -> dict[int, float]:
        """word id -> probability under tag `tag_id` (for tests and inspection)."""
        c = self.counts[tag_id]
        return dict(zip(self.word_ids[tag_id].tolist(), (c / c.sum()).tolist()))
