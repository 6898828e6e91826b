"""A stage's output is cached by a fingerprint of its inputs and settings; code enters it only through the
stage's version, bumped by hand. This test lists the constants and the pure functions that shape each stage's
output and fails when one changes while its stage's version stays the same: bump the version (the outputs it
made are then made again, never reused with other bytes) and record the new values here, or undo the change.

A function is pinned by a hash of its source (formatting and comments included: a change to a pinned
function is a moment to ask whether its results change)."""

from __future__ import annotations

import hashlib
import inspect

import pytest

from augment import MASK_SYMBOL, recipe, rules
from pipelines import batching, encoding, holdout
from pipelines.stages import augment, finetune, score, train
from pipelines.student import tokenizer
from pipelines.teacher import scorer
from pipelines.training import filters, token_cache


def source_sha(*objects) -> str:
    """The first 16 hex digits of the sha256 of the objects' source, in order."""
    h = hashlib.sha256()
    for obj in objects:
        h.update(inspect.getsource(obj).encode("utf-8"))
    return h.hexdigest()[:16]


def shaping() -> dict[str, dict]:
    """Each stage (and the token cache): its version, and what shapes its output besides its settings."""
    held = {"fraction": holdout.HOLDOUT_FRACTION, "max": holdout.HOLDOUT_MAX, "seed": holdout.HOLDOUT_SEED,
            "code": source_sha(holdout.holdout_size, holdout.holdout_examples, holdout.class_quotas,
                               holdout.text_keys, holdout.twins)}
    return {
        "augment": {"version": augment.STAGE_VERSION, "mask_symbol": MASK_SYMBOL, "max_ngram": rules.MAX_NGRAM,
                    "rules": source_sha(rules), "dedupe": source_sha(recipe.dedupe_key, recipe.row_hashes)},
        "finetune-teacher": {"version": finetune.STAGE_VERSION, "holdout": held,
                             "refit_max_examples": finetune.REFIT_MAX_EXAMPLES,
                             "lr_search_rows": finetune.LR_SEARCH_ROWS, "hold_out": source_sha(finetune.hold_out)},
        "score": {"version": (score.STAGE_VERSION, score.REDUCED_PRECISION_VERSION), "mask_symbol": MASK_SYMBOL,
                  "inference": source_sha(scorer.prepare_for_inference, scorer.predict_logits, encoding.encode,
                                          encoding.render_masks, encoding.collate)},
        "train": {"version": train.STAGE_VERSION, "holdout": held, "filter_seed": filters.FILTER_SEED,
                  "group_rows": batching.GROUP_ROWS, "transformer_loop": train.TRANSFORMER_LOOP,
                  "batching": source_sha(batching.sort_by_length, batching.cut_by_tokens, batching.cut_by_rows,
                                         batching.shuffle_batches, batching.by_tokens, batching.by_rows),
                  "filters": source_sha(filters.steer, filters.surplus_rows)},
        "token cache": {"version": token_cache.CACHE_VERSION, "tokenizer": source_sha(tokenizer)},
    }


# What each stage's version was made with. A failure names the stage: bump its version, then paste the new
# values the failure prints.
PINNED = {'augment': {'version': 3,
             'mask_symbol': '⟨mask⟩',
             'max_ngram': 5,
             'rules': '97c22eb308126ea9',
             'dedupe': 'bd7de592ce506d10'},
 'finetune-teacher': {'version': 4,
                      'holdout': {'fraction': 0.05, 'max': 2000, 'seed': 0, 'code': '9254840cbc66d13d'},
                      'refit_max_examples': 10000,
                      'lr_search_rows': 2000,
                      'hold_out': '986a69cb55f8b21f'},
 'score': {'version': (1, 2), 'mask_symbol': '⟨mask⟩', 'inference': 'bd642496ab9ef8d8'},
 'train': {'version': 4,
           'holdout': {'fraction': 0.05, 'max': 2000, 'seed': 0, 'code': '9254840cbc66d13d'},
           'filter_seed': 0,
           'group_rows': 2048,
           'transformer_loop': 2,
           'batching': '2ea7a3e3da73f2bc',
           'filters': '0b5ef675424b18df'},
 'token cache': {'version': 2, 'tokenizer': '4e4ceb7ca89c2f61'}}


@pytest.mark.parametrize("stage", list(shaping()))
def test_what_shapes_a_stage_changes_only_with_its_version(stage):
    now = shaping()[stage]
    pinned = PINNED.get(stage)
    assert pinned is not None, f"{stage!r}: pin it: {now!r}"
    if now != pinned:
        same_version = now["version"] == pinned["version"]
        assert not same_version, (f"{stage!r}: what shapes its output changed, its version did not: bump it (the "
                                  f"outputs it made are made again), then pin {now!r}")
        pytest.fail(f"{stage!r}: version bumped: pin its new values {now!r}")
