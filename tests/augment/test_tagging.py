"""Tagging: the real spaCy English pipeline on real text, worker invariance, and clear errors."""

from __future__ import annotations

import numpy as np
import pytest

from augment.tagging import TaggedCorpus, TaggerUnavailable, load_spacy, resolve_spacy_model, tag_texts

TEXTS = [
    "it 's a charming and often affecting journey . ",
    "unflinchingly bleak and desperate ",
    "The cats don't like the new sofa, do they?",
]


def test_spacy_tags_real_text_with_ptb_tags_and_whitespace():
    corpus = tag_texts(TEXTS)
    assert [corpus.text(i) for i in range(len(TEXTS))] == TEXTS  # spacing survives exactly
    first = corpus.tokens(0)
    assert [w for w, _, _ in first] == ["it", "'s", "a", "charming", "and", "often", "affecting", "journey", "."]
    tags = dict((w, t) for w, t, _ in first)
    assert tags["it"] == "PRP" and tags["journey"] == "NN" and tags["."] == "."
    third = dict((w, t) for w, t, _ in corpus.tokens(2))
    assert third["cats"] == "NNS" and third["n't"] == "RB"


def test_spacy_loads_only_what_tagging_needs():
    nlp = load_spacy()
    assert nlp.pipe_names == ["tok2vec", "tagger"]


def test_worker_processes_give_identical_corpus():
    texts = TEXTS * 5
    one = tag_texts(texts, workers=1, chunk_size=4)
    two = tag_texts(texts, workers=2, chunk_size=4)
    assert one.words == two.words and one.tags == two.tags
    for a, b in ((one.word_ids, two.word_ids), (one.tag_ids, two.tag_ids), (one.space, two.space),
                 (one.offsets, two.offsets)):
        assert np.array_equal(a, b)


def test_missing_spacy_model_says_how_to_install():
    with pytest.raises(TaggerUnavailable, match="is not installed"):
        resolve_spacy_model("en_core_web_nonexistent")


def test_nltk_tagger_without_its_data_raises_a_clear_error(monkeypatch, tmp_path):
    import nltk

    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    with pytest.raises(TaggerUnavailable, match="nltk.downloader"):
        tag_texts(["a small test ."], tagger="nltk")


def test_unknown_tagger_is_refused():
    with pytest.raises(ValueError, match="spacy, nltk"):
        tag_texts(["x"], tagger="stanza")


def test_corpus_interns_in_first_occurrence_order():
    c = TaggedCorpus.from_tokens([(["b", "a"], ["X", "Y"], [True, False]), (["a", "c"], ["Y", "X"], [True, False])])
    assert c.words == ["b", "a", "c"] and c.tags == ["X", "Y"]
    assert c.word_ids.tolist() == [0, 1, 1, 2] and c.offsets.tolist() == [0, 2, 4]
    assert c.text(1) == "a c"
