"""Tokenisation once per tokenizer (`make bench`; results in .bench/token_cache.json): the students a `distill
run` with `seeds: [0, 1, 2]`, `baseline: true` and `ablate: [rules]` trains on one scored set (3 distilled, 3
baselines and 9 rule ablations, BiLSTMs; plus 3 transformer seeds), each set up as `distill train` sets it up
(rows, then their tokens) with a fresh token cache: the first of each tokenizer builds the entry, the others
read it. The figure to compare is the seconds spent getting tokens, summed over the students; before the cache
each student tokenised its own rows (about an entry's build each).

BENCH_TOKEN_SCORED names a scored set (default: the first BENCH_TOKEN_ORIGINALS SST-2 sentences, default
10,000, x10 draws, scored here by the reference teacher).
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path

from .conftest import save, shared_path

ORIGINALS = int(os.environ.get("BENCH_TOKEN_ORIGINALS", "10000"))
RULES = ("mask", "pos", "ngram")


def scored_set(tmp_path: Path) -> Path:
    if os.environ.get("BENCH_TOKEN_SCORED"):
        return Path(os.environ["BENCH_TOKEN_SCORED"])
    from pipelines.stages import augment, score
    from pipelines.stages.augment import AugmentConfig, RecipeConfig
    from pipelines.stages.score import ScoreConfig
    from pipelines.tasks import TASKS

    sst2, teacher = shared_path("data", "glue", "SST-2"), shared_path("teachers", "minilm-sst2")
    t = augment.run(AugmentConfig(task=TASKS["sst2"], data=sst2, out=tmp_path / "t", limit=ORIGINALS,
                                  recipe=RecipeConfig(n_iter=10))).out_dir
    return score.run(ScoreConfig(teacher=str(teacher), transfer=t, out=tmp_path / "s")).out_dir


def run_students(scored: Path, data: Path) -> list:
    from pipelines.stages.train import TrainConfig
    from pipelines.tasks import TASKS

    base = TrainConfig(scored=scored, task=TASKS["sst2"], data=data, out=Path("unused"))
    bilstms = [replace(base, seed=s) for s in range(3)] + [replace(base, seed=s, baseline=True) for s in range(3)]
    bilstms += [replace(base, seed=s, drop_rule=r) for r in RULES for s in range(3)]
    return [c.resolved() for c in bilstms], [replace(base, family="transformer", seed=s).resolved() for s in range(3)]


def bench_tokenisation_once_per_tokenizer(tmp_path, monkeypatch):
    from pipelines.hub import load_tokenizer
    from pipelines.student.bilstm_training import load_train_data
    from pipelines.student.tokenizer import Tokenizer
    from pipelines.student.transformer_training import load_rows

    os.environ["TQDM_DISABLE"] = "1"
    monkeypatch.setenv("DISTILL_CACHE", str(tmp_path / "cache"))
    data = shared_path("data", "glue", "SST-2")
    scored = scored_set(tmp_path)
    bilstms, transformers = run_students(scored, data)
    teacher_tok = load_tokenizer(shared_path("teachers", "minilm-sst2"))
    results: dict = {"scored": str(scored), "students": {}}
    for family, cfgs, load in (("bilstm", bilstms, lambda c: load_train_data(c, c.task, Tokenizer())),
                               ("transformer", transformers, lambda c: load_rows(c, c.task, teacher_tok))):
        runs = []
        for cfg in cfgs:
            t0 = time.perf_counter()
            counts = load(cfg).counts
            runs.append({"seconds": round(time.perf_counter() - t0, 2), **counts["token_cache"],
                         "rows": counts["rows"]})
        results["students"][family] = {"students": len(runs), "builds": sum(not r["hit"] for r in runs),
                                       "build_s": sum(r["build_s"] for r in runs),
                                       "setup_s": round(sum(r["seconds"] for r in runs), 2), "runs": runs}
    save("token_cache", results)
    assert all(v["builds"] == 1 for v in results["students"].values())
