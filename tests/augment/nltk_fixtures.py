"""A real NLTK `PerceptronTagger`, trained in the test on hand-tagged sentences: no download, no NLTK data.

`install_as_nltk_data` writes a trained tagger in the layout NLTK (>= 3.9) loads its pretrained English tagger
from (three JSON files under taggers/averaged_perceptron_tagger_eng/), so the default-loading path runs too.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np

# Penn Treebank tags of a small lexicon; sentences are built from tag templates, so every token is hand-tagged.
LEXICON = {
    "DT": ["the", "a", "this", "every"],
    "JJ": ["good", "bad", "funny", "long", "dull", "clever"],
    "NN": ["film", "movie", "plot", "actor", "story", "script"],
    "VBZ": ["is", "seems"],
    "RB": ["very", "too", "really"],
    "VBD": ["liked", "hated", "enjoyed"],
    "PRP": ["i", "we", "they"],
    "IN": ["of", "with"],
    ".": [".", "!"],
}
TEMPLATES = [
    ["DT", "NN", "VBZ", "RB", "JJ", "."],
    ["PRP", "VBD", "DT", "JJ", "NN", "."],
    ["DT", "NN", "IN", "DT", "NN", "VBZ", "JJ", "."],
]


def tagged_sentences(n: int = 48, seed: int = 0) -> list[list[tuple[str, str]]]:
    """`n` sentences of (word, tag), the templates in turn, words drawn from the lexicon."""
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        tags = TEMPLATES[k % len(TEMPLATES)]
        out.append([(str(rng.choice(LEXICON[t])), t) for t in tags])
    return out


def train_tagger(n: int = 48, seed: int = 0):
    """A PerceptronTagger trained for 5 iterations on `tagged_sentences(n, seed)`."""
    from nltk.tag.perceptron import PerceptronTagger

    # PerceptronTagger.train shuffles with the global `random` module: seed it so the weights are reproducible.
    random.seed(seed)
    tagger = PerceptronTagger(load=False)
    tagger.train(tagged_sentences(n, seed), nr_iter=5)
    return tagger


def install_as_nltk_data(tagger, data_root: Path) -> Path:
    """Write `tagger` where `PerceptronTagger()` looks for the English model under the NLTK data dir
    `data_root`; returns the model directory."""
    model_dir = data_root / "taggers" / "averaged_perceptron_tagger_eng"
    model_dir.mkdir(parents=True, exist_ok=True)
    weights, tagdict, classes = tagger.encode_json_obj()
    for param, name in zip((weights, tagdict, sorted(classes)), tagger.param_files("eng")):
        (model_dir / name).write_text(json.dumps(param), encoding="utf-8")
    return model_dir
