"""The NLTK tagger path with a real PerceptronTagger trained in the test: no download, no NLTK data needed."""

from __future__ import annotations

import nltk
import numpy as np
import pytest
from nltk.tag.perceptron import PerceptronTagger

from augment.tagging import nltk_tagger_digest, nltk_tagger_files, tag_texts

from .nltk_fixtures import install_as_nltk_data, tagged_sentences, train_tagger


@pytest.fixture(scope="module")
def tagger():
    return train_tagger()


def held_out(n: int = 12) -> tuple[list[str], list[list[str]]]:
    """New sentences from the training lexicon (another seed), as text, and their gold tags."""
    sentences = tagged_sentences(n, seed=1)
    return [" ".join(w for w, _ in s) for s in sentences], [[t for _, t in s] for s in sentences]


def corpus_tags(corpus) -> list[list[str]]:
    return [[tag for _, tag, _ in corpus.tokens(i)] for i in range(len(corpus))]


def test_an_injected_tagger_tags_each_chunk_with_one_tag_sents_call(tagger, monkeypatch):
    calls = []
    tag_sents = tagger.tag_sents
    monkeypatch.setattr(tagger, "tag_sents", lambda sents: calls.append(len(sents)) or tag_sents(sents))
    texts, gold = held_out(12)
    corpus = tag_texts(texts, tagger="nltk", nltk_tagger=tagger, chunk_size=5)
    assert calls == [5, 5, 2]  # one batch call per chunk, not one call per sentence
    assert [corpus.text(i) for i in range(len(texts))] == texts  # spacing recovered from the token spans
    predicted = corpus_tags(corpus)
    right = sum(p == g for ps, gs in zip(predicted, gold) for p, g in zip(ps, gs))
    assert right / sum(map(len, gold)) >= 0.9


def test_worker_processes_each_get_the_tagger_and_agree(tagger):
    texts, _ = held_out(12)
    one = tag_texts(texts, tagger="nltk", nltk_tagger=tagger, workers=1, chunk_size=3)
    two = tag_texts(texts, tagger="nltk", nltk_tagger=tagger, workers=2, cpu_limit=2, chunk_size=3)
    assert one.words == two.words and one.tags == two.tags
    for a, b in ((one.word_ids, two.word_ids), (one.tag_ids, two.tag_ids), (one.space, two.space)):
        assert np.array_equal(a, b)


def test_the_default_tagger_loads_once_from_nltk_json_data(tagger, tmp_path, monkeypatch):
    install_as_nltk_data(tagger, tmp_path)
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    # NLTK 3.9.0/3.9.1's pos_tag built (so loaded) a new tagger on every call; later versions cache one. Undo the
    # cache, so that per-sentence pos_tag calls would show up as repeated loads.
    get_tagger = getattr(nltk.tag._get_tagger, "__wrapped__", nltk.tag._get_tagger)
    monkeypatch.setattr(nltk.tag, "_get_tagger", get_tagger)
    loads = []
    load_from_json = PerceptronTagger.load_from_json
    monkeypatch.setattr(PerceptronTagger, "load_from_json",
                        lambda self, *a, **k: loads.append(1) or load_from_json(self, *a, **k))
    texts, _ = held_out(12)
    corpus = tag_texts(texts, tagger="nltk", chunk_size=4)
    assert len(loads) == 1
    assert corpus_tags(corpus) == corpus_tags(tag_texts(texts, tagger="nltk", nltk_tagger=tagger))


def test_tagger_files_are_found_where_nltk_loads_them(tagger, tmp_path, monkeypatch):
    model_dir = install_as_nltk_data(tagger, tmp_path)
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path)])
    files = nltk_tagger_files()
    assert sorted(files) == sorted(model_dir.iterdir()) and len(files) == 3


def test_digest_identifies_the_tagger_weights(tagger):
    assert nltk_tagger_digest(train_tagger()) == nltk_tagger_digest(tagger)  # same data, same weights
    assert nltk_tagger_digest(train_tagger(n=30)) != nltk_tagger_digest(tagger)


def test_an_nltk_tagger_object_with_the_spacy_tagger_is_refused(tagger):
    with pytest.raises(ValueError, match="only used with tagger='nltk'"):
        tag_texts(["x"], tagger="spacy", nltk_tagger=tagger)
