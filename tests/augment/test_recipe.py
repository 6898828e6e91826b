"""The recipe: draws per example, exclusivity, n-gram windows, dataset-wide dedupe, pairs, determinism."""

from __future__ import annotations

import numpy as np
import pytest

from augment import MASK_SYMBOL
from augment.pos_table import PosTable
from augment.recipe import OP_MASK, OP_NGRAM, OP_POS, RecipeConfig, assemble, generate, generate_all
from augment.tagging import TaggedCorpus


def corpus_of(sentences: list[str]) -> TaggedCorpus:
    """Whitespace tokens; the tag of a word is its first letter upper-cased, so tags are predictable."""
    docs = []
    for s in sentences:
        words = s.split()
        docs.append((words, [w[0].upper() for w in words], [True] * (len(words) - 1) + [False]))
    return TaggedCorpus.from_tokens(docs)


SENTENCES = [
    "alpha bravo charlie delta echo foxtrot golf hotel india juliet",
    "kilo lima mike november oscar papa quebec romeo",
    "sierra tango uniform victor whiskey",
    "xray yankee",
    "zulu",
]


def run(sentences, cfg, pairs=None, workers=1, chunk_size=2):
    texts = sentences + (pairs or [])
    corpus = corpus_of(texts)
    table = PosTable.from_corpus(corpus)
    gen = generate_all(corpus, table, cfg, num_examples=len(sentences), is_pair=pairs is not None,
                       workers=workers, chunk_size=chunk_size)
    return assemble(sentences, pairs, gen)


def test_ngram_only_rows_are_contiguous_windows_of_1_to_5_tokens():
    rows = run(SENTENCES, RecipeConfig(p_mask=0, p_pos=0, p_ng=1.0, n_iter=50))
    for text, src, orig, ops in zip(rows.texts, rows.source_index, rows.is_original, rows.ops):
        if orig:
            continue
        original = SENTENCES[src].split()
        window = text.split()
        assert 1 <= len(window) <= 5 and len(window) < len(original)
        starts = [i for i in range(len(original)) if original[i:i + len(window)] == window]
        assert starts, f"{text!r} is not a contiguous window of {SENTENCES[src]!r}"
        assert ops == OP_NGRAM


def test_no_duplicates_and_no_copies_of_any_original():
    # Overlapping sentences make cross-example duplicates likely: "b c" can come from both examples.
    sentences = ["a b c d", "b c d e", "a b c d e f"]
    rows = run(sentences, RecipeConfig(p_mask=0.2, p_pos=0.2, p_ng=0.5, n_iter=40))
    synthetic = [t for t, o in zip(rows.texts, rows.is_original) if not o]
    assert len(synthetic) == len(set(synthetic))
    assert not set(synthetic) & set(sentences)
    assert rows.stats["dropped_duplicates"] > 0 and rows.stats["dropped_unchanged"] > 0
    assert rows.stats["synthetic"] == len(synthetic)


def test_every_draw_accounted_for():
    cfg = RecipeConfig(n_iter=20, seed=3)
    rows = run(SENTENCES, cfg)
    s = rows.stats
    assert s["synthetic"] + s["dropped_unchanged"] + s["dropped_duplicates"] == 20 * len(SENTENCES)
    assert s["originals"] == len(SENTENCES) and rows.is_original.sum() == len(SENTENCES)


def test_originals_come_first_then_their_synthetic_rows_in_order():
    rows = run(SENTENCES, RecipeConfig(n_iter=10, seed=1))
    assert np.all(np.diff(rows.source_index) >= 0)
    firsts = np.flatnonzero(rows.is_original)
    assert [rows.texts[i] for i in firsts] == SENTENCES
    assert np.all(rows.source_index[firsts] == np.arange(len(SENTENCES)))


def test_full_masking_leaves_one_row_per_example():
    rows = run(SENTENCES[:3], RecipeConfig(p_mask=1.0, p_pos=0.0, p_ng=0.0, n_iter=20))
    synthetic = [t for t, o in zip(rows.texts, rows.is_original) if not o]
    assert len(synthetic) == 3
    for t in synthetic:
        assert set(t.split()) == {MASK_SYMBOL}


def test_ops_bits_describe_the_changes():
    rows = run(SENTENCES, RecipeConfig(n_iter=30, seed=5))
    for text, src, orig, ops in zip(rows.texts, rows.source_index, rows.is_original, rows.ops):
        if orig:
            assert ops == 0
            continue
        assert ops != 0
        assert bool(ops & OP_MASK) == (MASK_SYMBOL in text)
        if not ops & OP_NGRAM:
            assert len(text.split()) == len(SENTENCES[src].split())
            changed = [a != b for a, b in zip(text.split(), SENTENCES[src].split())]
            masks = [w == MASK_SYMBOL for w in text.split()]
            assert bool(ops & OP_POS) == any(c and not m for c, m in zip(changed, masks))


def test_pos_replacement_uses_same_tag_words():
    # Tag = first letter; with these sentences only "alpha"/"apple"/"avocado" share tag A, etc.
    sentences = ["alpha bravo", "apple banana", "avocado berry"]
    rows = run(sentences, RecipeConfig(p_mask=0, p_pos=1.0, p_ng=0, n_iter=30))
    for text, orig in zip(rows.texts, rows.is_original):
        a, b = text.split()
        assert a.startswith("a") and b.startswith("b")
    assert len(rows.texts) == 9  # all 3 x 3 combinations, each once


@pytest.mark.parametrize("workers,chunk_size", [(1, 1), (2, 1), (2, 3), (1, 100)])
def test_same_seed_same_rows_whatever_the_workers(workers, chunk_size):
    cfg = RecipeConfig(n_iter=15, seed=7)
    reference = run(SENTENCES, cfg, workers=1, chunk_size=2)
    other = run(SENTENCES, cfg, workers=workers, chunk_size=chunk_size)
    assert other.texts == reference.texts
    assert np.array_equal(other.ops, reference.ops)


def test_another_seed_gives_other_rows():
    a = run(SENTENCES, RecipeConfig(n_iter=15, seed=1))
    b = run(SENTENCES, RecipeConfig(n_iter=15, seed=2))
    assert a.texts != b.texts


def test_pairs_perturb_a_b_or_both_and_dedupe_on_the_pair():
    a_side = ["one two three four", "five six seven eight"]
    b_side = ["nine ten eleven twelve", "thirteen fourteen fifteen sixteen"]
    cfg = RecipeConfig(p_mask=0.5, p_pos=0.0, p_ng=0.0, n_iter=300)
    rows = run(a_side, cfg, pairs=b_side)
    sides = {"a": 0, "b": 0, "both": 0}
    for text, pair, src, orig in zip(rows.texts, rows.pairs, rows.source_index, rows.is_original):
        if orig:
            assert (text, pair) == (a_side[src], b_side[src])
            continue
        changed_a, changed_b = text != a_side[src], pair != b_side[src]
        assert changed_a or changed_b
        sides["both" if changed_a and changed_b else "a" if changed_a else "b"] += 1
    keys = [(t, p) for t, p in zip(rows.texts, rows.pairs)]
    assert len(keys) == len(set(keys))
    # With 4 tokens, A-only has at most 15 masked variants per example, B-only too; "both" has 225.
    assert sides["a"] > 0 and sides["b"] > 0 and sides["both"] > sides["a"]


def test_pair_default_is_ten_draws_single_twenty():
    assert RecipeConfig().draws(is_pair=True) == 10
    assert RecipeConfig().draws(is_pair=False) == 20


@pytest.mark.parametrize("bad,message", [
    (dict(p_mask=1.5), "p_mask must be in [0, 1]"),
    (dict(p_mask=0.6, p_pos=0.6), "p_mask + p_pos"),
    (dict(n_iter=-1), "n_iter"),
])
def test_recipe_config_problems(bad, message):
    assert any(message in p for p in RecipeConfig(**bad).problems())


def test_generate_is_a_pure_function_of_seed_and_index():
    corpus = corpus_of(SENTENCES)
    table = PosTable.from_corpus(corpus)
    cfg = RecipeConfig(n_iter=10, seed=11)
    whole = generate(corpus, table, cfg, range(0, 5), num_examples=5, is_pair=False)
    last = generate(corpus, table, cfg, range(3, 5), num_examples=5, is_pair=False)
    tail = [t for t, i in zip(whole.texts, whole.source_index) if i >= 3]
    assert last.texts == tail
