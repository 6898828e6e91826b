"""Worker counts: the CPUs this process may use (affinity, or the caller's cap), never the host's core count."""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor

import pytest

from augment import workers
from augment.pos_table import PosTable
from augment.recipe import RecipeConfig, assemble, generate_all
from augment.tagging import TaggedCorpus, tag_texts
from augment.workers import worker_count

from .nltk_fixtures import train_tagger


@pytest.fixture
def two_cpus_on_a_64_core_host(monkeypatch):
    """A container allowed 2 CPUs of a 64-core host: os.cpu_count() says 64, the affinity mask holds 2."""
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1}, raising=False)


def recording_pool(monkeypatch, module) -> list[int]:
    """Replace `module`'s ProcessPoolExecutor by one that records how many workers it was asked for."""
    sizes: list[int] = []

    class Recording(ProcessPoolExecutor):
        def __init__(self, max_workers=None, **kwargs):
            sizes.append(max_workers)
            super().__init__(max_workers, **kwargs)

    monkeypatch.setattr(module, "ProcessPoolExecutor", Recording)
    return sizes


@pytest.mark.parametrize("requested,tasks,cpu_limit,expected", [
    (None, 10, 2, 2),  # one per CPU
    (8, 10, 2, 2),  # never more than the CPUs
    (None, 1, 4, 1),  # never more than the work
    (3, 10, 4, 3),
    (0, 10, 4, 1),
])
def test_worker_count(requested, tasks, cpu_limit, expected):
    assert worker_count(requested, tasks, cpu_limit) == expected


def test_worker_count_defaults_to_the_affinity_mask(two_cpus_on_a_64_core_host):
    assert worker_count(None, 100) == 2


def test_generate_all_uses_one_worker_per_allowed_cpu(two_cpus_on_a_64_core_host, monkeypatch):
    sizes = recording_pool(monkeypatch, workers)
    sentences = ["alpha bravo charlie delta", "echo foxtrot golf", "hotel india", "juliet kilo lima mike"]
    corpus = TaggedCorpus.from_tokens((s.split(), [w[0] for w in s.split()], [True] * len(s.split()))
                                      for s in sentences)
    table, cfg = PosTable.from_corpus(corpus), RecipeConfig(n_iter=10, seed=2)
    kwargs = dict(num_examples=len(sentences), is_pair=False, chunk_size=1)
    pooled = generate_all(corpus, table, cfg, workers=None, **kwargs)
    assert sizes == [2]
    alone = generate_all(corpus, table, cfg, workers=1, **kwargs)
    assert assemble(sentences, None, pooled).texts == assemble(sentences, None, alone).texts


def test_an_explicit_cpu_limit_caps_the_workers(monkeypatch):
    sizes = recording_pool(monkeypatch, workers)
    texts = ["the film is good .", "i liked a dull movie .", "the plot is too long .", "we hated the script !"]
    tag_texts(texts, tagger="nltk", nltk_tagger=train_tagger(), workers=None, cpu_limit=2, chunk_size=1)
    assert sizes == [2]
