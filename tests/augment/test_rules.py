"""Property tests of the three rules over many draws."""

from __future__ import annotations

import numpy as np
import pytest

from augment.pos_table import PosTable
from augment.rules import KEEP, MASK, MAX_NGRAM, POS, apply_mask, apply_pos_replace, ngram_windows, token_ops
from augment.tagging import TaggedCorpus

# A hand-built training corpus: (word, tag) counts chosen so the unigram distributions are easy to check.
TRAIN = [
    (["the", "cat", "sat", "."], ["DT", "NN", "VBD", "."], [True, True, False, False]),
    (["the", "cat", "ran", "!"], ["DT", "NN", "VBD", "."], [True, True, False, False]),
    (["a", "dog", "sat", "."], ["DT", "NN", "VBD", "."], [True, True, False, False]),
    (["the", "cat", "slept", "."], ["DT", "NN", "VBD", "."], [True, True, False, False]),
]


@pytest.fixture
def corpus() -> TaggedCorpus:
    return TaggedCorpus.from_tokens(TRAIN)


@pytest.mark.parametrize("p_mask,p_pos", [(0.1, 0.1), (0.3, 0.0), (0.0, 0.5), (0.25, 0.6)])
def test_token_ops_rates_match_probabilities(p_mask, p_pos):
    rng = np.random.default_rng(0)
    ops = token_ops(rng.random((2000, 100)), p_mask, p_pos)
    n = ops.size
    for code, p in ((MASK, p_mask), (POS, p_pos), (KEEP, 1 - p_mask - p_pos)):
        rate = np.mean(ops == code)
        assert abs(rate - p) <= 5 * np.sqrt(p * (1 - p) / n) + 1e-12, (code, rate, p)


def test_token_ops_are_exclusive_per_token():
    # One uniform per token decides: with p_mask + p_pos = 1 every token gets exactly one of the two rules.
    ops = token_ops(np.random.default_rng(1).random((500, 40)), 0.4, 0.6)
    assert set(np.unique(ops)) <= {MASK, POS}
    assert np.isclose(np.mean(ops == MASK), 0.4, atol=0.02)


def test_apply_mask_only_touches_masked_tokens():
    ids = np.arange(12, dtype=np.int32).reshape(2, 6)
    ops = np.array([[MASK, KEEP, POS, MASK, KEEP, KEEP], [KEEP] * 6], dtype=np.uint8)
    out = apply_mask(ids, ops, mask_id=99)
    assert out.tolist() == [[99, 1, 2, 99, 4, 5], list(range(6, 12))]


def test_pos_replacements_keep_the_tag_and_follow_training_counts(corpus):
    table = PosTable.from_corpus(corpus)
    nn = corpus.tags.index("NN")
    # NN words in training: cat x3, dog x1.
    dist = {corpus.words[w]: p for w, p in table.distribution(nn).items()}
    assert dist == pytest.approx({"cat": 0.75, "dog": 0.25})

    # Replace every token of "the cat sat ." many times; check tags and frequencies per position.
    s, e = corpus.offsets[0], corpus.offsets[1]
    words, tags = corpus.word_ids[s:e], corpus.tag_ids[s:e]
    draws = 20000
    ops = np.full((draws, len(words)), POS, dtype=np.uint8)
    out = apply_pos_replace(np.broadcast_to(words, ops.shape), tags, ops, table,
                            np.random.default_rng(2).random(ops.shape))
    train_pairs = {(w, t) for w, t in zip(corpus.word_ids, corpus.tag_ids)}
    for pos in range(len(words)):
        col = out[:, pos]
        assert all((int(w), int(tags[pos])) in train_pairs for w in np.unique(col)), "replacement with another tag"
        expected = table.distribution(int(tags[pos]))
        for w, p in expected.items():
            freq = np.mean(col == w)
            assert abs(freq - p) < 5 * np.sqrt(p * (1 - p) / draws) + 1e-9, (corpus.words[w], freq, p)


def test_sampling_stays_inside_the_tag_even_at_u_near_one(corpus):
    table = PosTable.from_corpus(corpus)
    tags = np.arange(len(corpus.tags))
    for u in (0.0, 0.5, np.nextafter(1.0, 0.0)):
        words = table.sample(tags, np.full(len(tags), u))
        assert all(int(w) in table.distribution(int(t)) for w, t in zip(words, tags))


def test_pos_replace_leaves_other_tokens(corpus):
    table = PosTable.from_corpus(corpus)
    words = corpus.word_ids[:4]
    ops = np.array([[KEEP, POS, KEEP, KEEP]], dtype=np.uint8)
    out = apply_pos_replace(words[None, :], corpus.tag_ids[:4], ops, table, np.random.default_rng(3).random(ops.shape))
    assert out[0, [0, 2, 3]].tolist() == words[[0, 2, 3]].tolist()


@pytest.mark.parametrize("length", [1, 3, 5, 12])
def test_ngram_windows_are_contiguous_1_to_5_tokens(length):
    rng = np.random.default_rng(4)
    win = ngram_windows(rng.random((20000, 3)), length, 0.25)
    n = win.end - win.start
    cut = n < length
    assert np.all((win.start >= 0) & (win.end <= length) & (n >= 1))
    # Draws that kept everything are (0, length); the others are windows of 1..min(5, length) tokens.
    assert np.all(win.start[~cut] == 0) and np.all(win.end[~cut] == length)
    assert np.all(n[cut] <= MAX_NGRAM)
    if length > MAX_NGRAM:
        # Every window size 1..5 occurs, uniformly, and about p_ng of the draws are cut.
        assert np.mean(cut) == pytest.approx(0.25, abs=0.02)
        sizes = np.bincount(n[cut], minlength=6)[1:]
        assert np.all(np.abs(sizes / cut.sum() - 0.2) < 0.03)
        # Starts cover every legal position.
        assert set(np.unique(win.start[cut])) == set(range(length))
