"""Whitespace in the recipe: rows are compared as the models read them, and whitespace tokens are not words."""

from __future__ import annotations

import pytest

from augment import MASK_SYMBOL
from augment.pos_table import PosTable
from augment.recipe import RecipeConfig, assemble, dedupe_key, generate_all
from augment.tagging import TaggedCorpus, tag_texts


def run(corpus: TaggedCorpus, cfg: RecipeConfig, workers: int = 1, chunk_size: int = 2):
    texts = [corpus.text(i) for i in range(len(corpus))]
    gen = generate_all(corpus, PosTable.from_corpus(corpus), cfg, num_examples=len(texts), is_pair=False,
                       workers=workers, chunk_size=chunk_size)
    return texts, assemble(texts, None, gen)


def synthetic(rows) -> list[tuple[str, int]]:
    return [(t, int(s)) for t, s, o in zip(rows.texts, rows.source_index, rows.is_original) if not o]


def assert_one_row_per_key(rows) -> None:
    keys = [dedupe_key(t) for t in rows.texts]
    assert len(keys) == len(set(keys)), "two rows that read the same to a model"


def test_dedupe_key_collapses_whitespace():
    assert dedupe_key("  the\tcat \n sat ") == "the cat sat"
    assert dedupe_key("the cat") == dedupe_key("the cat ")


def test_an_ngram_keeps_no_trailing_space_and_is_deduped_against_the_original():
    # Example 0 is "the cat" (no trailing space); example 1 ends with a space, as SST-2 sentences do. A bigram of
    # example 1 used to render as "the cat " and survive beside example 0.
    corpus = TaggedCorpus.from_tokens([
        (["the", "cat"], ["DT", "NN"], [True, False]),
        (["the", "cat", "sat", "on", "the", "mat"], ["DT", "NN", "VBD", "IN", "DT", "NN"], [True] * 6),
    ])
    texts, rows = run(corpus, RecipeConfig(p_mask=0, p_pos=0, p_ng=1.0, n_iter=60))
    assert texts[1].endswith("mat ")
    rows_1 = [t for t, s in synthetic(rows) if s == 1]
    assert rows_1 and all(t == t.strip() for t in rows_1)
    assert "the cat" not in rows_1 and rows.stats["dropped_duplicates"] > 0
    assert_one_row_per_key(rows)
    assert [rows.texts[i] for i in range(len(rows.texts)) if rows.is_original[i]] == texts  # originals verbatim


def test_rows_differing_only_in_a_whitespace_run_are_one_row():
    # Example 1 holds a spaCy whitespace token: "good" + " " + "  " + "film" renders "good   film".
    corpus = TaggedCorpus.from_tokens([
        (["good", "film"], ["JJ", "NN"], [True, False]),
        (["good", "  ", "film", "."], ["JJ", "_SP", "NN", "."], [True, False, True, False]),
    ])
    _, rows = run(corpus, RecipeConfig(p_mask=0, p_pos=0, p_ng=1.0, n_iter=80))
    assert not any(dedupe_key(t) == "good film" for t, _ in synthetic(rows))
    assert_one_row_per_key(rows)


def test_whitespace_tokens_are_never_masked():
    corpus = TaggedCorpus.from_tokens([
        (["good", "  ", "film", "."], ["JJ", "_SP", "NN", "."], [True, False, True, False]),
    ])
    _, rows = run(corpus, RecipeConfig(p_mask=1.0, p_pos=0, p_ng=0, n_iter=5))
    # The mask symbol stands where words stood; the whitespace run between them is kept, not masked.
    assert [t for t, _ in synthetic(rows)] == [f"{MASK_SYMBOL}   {MASK_SYMBOL} {MASK_SYMBOL}"]


def test_whitespace_tokens_are_never_replaced_nor_offered_as_replacements():
    corpus = TaggedCorpus.from_tokens([
        (["good", "  ", "film"], ["JJ", "_SP", "NN"], [True, False, False]),
        (["bad", "\n", "movie"], ["JJ", "_SP", "NN"], [False, False, False]),
        (["nice", "\t", "plot"], ["JJ", "NN", "NN"], [False, False, False]),  # whitespace the tagger called NN
    ])
    table = PosTable.from_corpus(corpus)
    nn_words = {corpus.words[w] for w in table.distribution(corpus.tags.index("NN"))}
    assert nn_words == {"film", "movie", "plot"}
    _, rows = run(corpus, RecipeConfig(p_mask=0, p_pos=1.0, p_ng=0, n_iter=40))
    between_words = {0: "   ", 1: "\n", 2: "\t"}  # each example's own whitespace, untouched
    for text, src in synthetic(rows):
        first, *_, last = text.split() or ["", ""]
        assert len(text.split()) == 2 and text[len(first):-len(last)] == between_words[src], (text, src)


def test_ngram_windows_count_words_not_whitespace_tokens():
    words = ["a", "\n", "b", "\n\n", "c", "d", " ", "e", "f", "g", "\n"]
    tags = ["X" if not w.isspace() else "_SP" for w in words]
    corpus = TaggedCorpus.from_tokens([(words, tags, [not w.isspace() for w in words])])
    _, rows = run(corpus, RecipeConfig(p_mask=0, p_pos=0, p_ng=1.0, n_iter=200))
    original = [w for w in words if not w.isspace()]
    for text, _ in synthetic(rows):
        window = text.split()
        assert text == text.strip() and 1 <= len(window) <= 5, repr(text)
        assert any(original[i:i + len(window)] == window for i in range(len(original))), repr(text)


def test_whitespace_handling_keeps_the_rows_independent_of_workers():
    corpus = TaggedCorpus.from_tokens([
        (["good", "  ", "film", "."], ["JJ", "_SP", "NN", "."], [True, False, True, True]),
        (["a", "\n", "dull", "plot"], ["DT", "_SP", "JJ", "NN"], [True, False, True, False]),
        (["bad", "movie", " "], ["JJ", "NN", "_SP"], [True, False, False]),
    ])
    cfg = RecipeConfig(n_iter=30, seed=4)
    _, one = run(corpus, cfg, workers=1, chunk_size=3)
    _, two = run(corpus, cfg, workers=2, chunk_size=1)
    assert one.texts == two.texts and one.ops.tolist() == two.ops.tolist()


@pytest.mark.slow
def test_real_spacy_whitespace_tokens_end_to_end():
    texts = ["a  charming   and often affecting journey . ", "good\n\nfilm .  ", "a charming journey"]
    corpus = tag_texts(texts)
    assert "_SP" in corpus.tags
    _, rows = run(corpus, RecipeConfig(p_mask=0.3, p_pos=0.3, p_ng=0.25, n_iter=60, seed=1))
    for text, _ in synthetic(rows):
        assert text == text.strip()
        # A mask stands for a word: it is never glued to another word, as masking a whitespace token would do.
        assert all(piece == MASK_SYMBOL or MASK_SYMBOL not in piece for piece in text.split()), repr(text)
    assert_one_row_per_key(rows)
