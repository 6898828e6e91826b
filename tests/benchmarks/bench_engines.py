"""Benchmarks of the engines and of scoring precisions (`make bench`; results in .bench/engines.json).

- Engines: `distill score` (reference teacher, float32, one torch thread per replica) and `distill augment` (the
  first BENCH_AUGMENT_ORIGINALS SST-2 train sentences, default 20,000; 0: all of them) on the local engine and on
  a local Ray instance, at 1 and 2 workers, as whole processes in one run; ratios to the local engine at the
  same worker count. BENCH_ENGINES_REPEATS=N (default 1) runs the whole set N times, interleaved, and gives the
  median of the paired ratios (machines whose speed drifts between runs need it). Ray's wall time includes
  starting its instance; augmentation's `stage_s` does not (the stage's own time, with its tagging and
  generation phases beside it).
- Precisions: rows/s of the reference teacher at float32, bf16 and int8 (2 threads) on the same SST-2 rows, with
  the argmax agreement and largest logit difference against float32.
- Students from each precision: the BiLSTM's SST-2 dev accuracy over three seeds from float32, bf16 and int8
  logits of the same transfer set.
- Memory: a 10M-row transfer set (SST-2 train, 320 draws a sentence: 10.2M rows kept; 150 draws keep only
  5.2M, the rest are duplicates or unchanged): peak RSS of `distill augment` (goal under 2 GB), and the same
  bytes with a 4x larger chunk size. Then peak RSS of `distill score` (a one-layer random-weight BERT with the
  reference teacher's vocabulary, so that the figure is the stage's own footprint, not a model's) and of `distill
  train` (one epoch of a small BiLSTM, and of the transformer student made from that one-layer teacher) on that
  set and on a 1M-row one (the first 10% of the sentences): how each stage's memory grows with the set.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import statistics
import time
from pathlib import Path

import pytest

from .bench_score import _random_bert
from .conftest import PYTHON, save, shared_path, timed_process

SCORE_ROWS_ORIGINALS = 400  # SST-2 train sentences whose transfer set is scored (~6,000 rows)
AUGMENT_ORIGINALS = int(os.environ.get("BENCH_AUGMENT_ORIGINALS", "20000"))  # 0: all 67,349 of SST-2 train
ENGINE_REPEATS = int(os.environ.get("BENCH_ENGINES_REPEATS", "1"))  # whole-process runs of each, interleaved


def distill(*args: str) -> list[str]:
    return [PYTHON, "-m", "pipelines.cli", *args]


def digest(out: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(out.glob("*.arrow")):
        h.update(p.read_bytes())
    return h.hexdigest()


def bench_engines(tmp_path):
    sst2 = shared_path("data", "glue", "SST-2")
    env = {"OMP_NUM_THREADS": "1", "TQDM_DISABLE": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    transfer = tmp_path / "transfer"
    timed_process(distill("augment", "--task", "sst2", "--data", str(sst2), "--limit", str(SCORE_ROWS_ORIGINALS),
                          "--n-iter", "15", "--out", str(transfer)), env)
    runs: dict = {"score": {}, "augment": {}}
    for repeat in range(ENGINE_REPEATS):  # interleaved, so that a slow spell of the machine hits both engines
        for workers in (1, 2):
            for engine in ("local", "ray"):
                key, out = f"{engine}-{workers}", tmp_path / f"{engine}{workers}-{repeat}"
                runs["score"].setdefault(key, []).append(_score_run(transfer, out / "s", engine, workers, env))
                runs["augment"].setdefault(key, []).append(_augment_run(sst2, out / "a", engine, workers, env))
                shutil.rmtree(out)  # a full task's transfer sets, once their digests are taken
    results = {"score_rows": json.loads((transfer / "stats.json").read_text())["rows"], "repeats": ENGINE_REPEATS,
               **{stage: _engine_summary(by_key) for stage, by_key in runs.items()}}
    save("engines", results)
    assert results["score"]["same bytes"] and results["augment"]["same bytes"]


def _score_run(transfer: Path, out: Path, engine: str, workers: int, env: dict) -> dict:
    run = timed_process(distill("score", "--teacher", str(shared_path("teachers", "minilm-sst2")), "--transfer",
                                str(transfer), "--out", str(out), "--dtype", "float32", "--shard-rows", "500",
                                "--engine", engine, "--workers", str(workers)), env)
    stats = json.loads((out / "stats.json").read_text())
    return {"wall_s": run["wall_s"], "score_s": stats["wall_s"], "rows_per_s": stats["rows_per_s"],
            "digest": digest(out)}


def _augment_run(sst2: Path, out: Path, engine: str, workers: int, env: dict) -> dict:
    limit = ["--limit", str(AUGMENT_ORIGINALS)] if AUGMENT_ORIGINALS else []
    run = timed_process(distill("augment", "--task", "sst2", "--data", str(sst2), *limit, "--out", str(out),
                                "--engine", engine, "--workers", str(workers)), env)
    manifest = json.loads((out / "manifest.json").read_text())  # its wall_s: the stage's own, Ray's start excluded
    return {"wall_s": run["wall_s"], "stage_s": manifest["wall_s"], **manifest["timings_s"],
            "rows": json.loads((out / "stats.json").read_text())["rows"], "digest": digest(out)}


def _engine_summary(by_key: dict[str, list[dict]]) -> dict:
    """One run per engine and worker count as it is; several: every run, the median wall time, and the ratios of
    paired runs (Ray's to the local engine's in the same repeat) with their median."""
    out: dict = {k: v[0] if len(v) == 1 else {"wall_s": statistics.median(r["wall_s"] for r in v), "runs": v}
                 for k, v in by_key.items()}
    for workers in (1, 2):
        pairs = zip(by_key[f"ray-{workers}"], by_key[f"local-{workers}"])
        ratios = [round(ray["wall_s"] / local["wall_s"], 3) for ray, local in pairs]
        out[f"ray/local wall, {workers} workers"] = round(statistics.median(ratios), 3)
        if len(ratios) > 1:
            out[f"ray/local wall, {workers} workers, each repeat"] = ratios
    out["same bytes"] = len({r["digest"] for v in by_key.values() for r in v}) == 1
    return out


def bench_precisions():
    """float32, bf16 and int8 scoring of the same 3,000 SST-2 train sentences, in this process, 2 threads."""
    import numpy as np

    from pipelines.tasks import TASKS, read_split
    from pipelines.teacher.scorer import TeacherScorer

    sst2 = shared_path("data", "glue", "SST-2")
    teacher = shared_path("teachers", "minilm-sst2")
    split, _ = read_split(TASKS["sst2"], sst2, "train", labelled=True, limit=3000)
    results, reference = {}, None
    for dtype in ("float32", "bf16", "int8"):
        scorer = TeacherScorer(str(teacher), device="cpu", dtype=dtype)
        enc = scorer.encode(split.texts[:200])
        scorer.score(enc)  # warm-up
        enc = scorer.encode(split.texts)
        t0 = time.perf_counter()
        logits = scorer.score(enc)
        seconds = time.perf_counter() - t0
        reference = logits if reference is None else reference
        results[dtype] = {"rows_per_s": round(len(split) / seconds, 1), "threads": scorer.threads,
                          "argmax_agreement_with_float32": float(np.mean(logits.argmax(1) == reference.argmax(1))),
                          "max_abs_logit_diff": float(np.abs(logits - reference).max())}
    for dtype in ("bf16", "int8"):
        results[dtype]["speed_vs_float32"] = round(results[dtype]["rows_per_s"] / results["float32"]["rows_per_s"], 2)
    save("precisions", results)


AGREEMENT_ORIGINALS = int(os.environ.get("BENCH_AGREEMENT_ORIGINALS", "5000"))  # 67349: all of SST-2 train


def bench_bf16_head_agreement(tmp_path):
    """Argmax agreement with float32 of bf16 scoring, the whole teacher cast (before) against its head and
    pooler kept in float32 (now), on a transfer set: the first AGREEMENT_ORIGINALS SST-2 training sentences x20
    draws, the reference teacher, 2 threads."""
    import numpy as np

    import pipelines.teacher.scorer as scorer_module
    from pipelines import store
    from pipelines.stages import augment
    from pipelines.stages.augment import AugmentConfig
    from pipelines.tasks import TASKS

    sst2, teacher = shared_path("data", "glue", "SST-2"), shared_path("teachers", "minilm-sst2")
    os.environ["TQDM_DISABLE"] = "1"
    out = augment.run(AugmentConfig(task=TASKS["sst2"], data=sst2, out=tmp_path / "t",
                                    limit=AGREEMENT_ORIGINALS)).out_dir
    texts = store.read_table(out, columns=["text"]).column("text").to_pylist()
    keep_head = scorer_module.keep_head_in_float32
    logits, results = {}, {"originals": AGREEMENT_ORIGINALS, "rows": len(texts)}
    for name, dtype, head in (("float32", "float32", keep_head), ("bf16, whole model cast", "bf16", lambda m: m),
                              ("bf16, head and pooler float32", "bf16", keep_head)):
        scorer_module.keep_head_in_float32 = head
        try:
            scorer = scorer_module.TeacherScorer(str(teacher), device="cpu", dtype=dtype)
            t0 = time.perf_counter()
            logits[name] = scorer.score(scorer.encode(texts))
            seconds = time.perf_counter() - t0
        finally:
            scorer_module.keep_head_in_float32 = keep_head
        agree = logits[name].argmax(1) == logits["float32"].argmax(1)
        results[name] = {"rows_per_s": round(len(texts) / seconds, 1), "argmax_agreement": float(agree.mean()),
                         "rows_that_disagree": int((~agree).sum()),
                         "max_abs_logit_diff": float(np.abs(logits[name] - logits["float32"]).max())}
    save("bf16-head", results)


PRECISION_ORIGINALS = int(os.environ.get("BENCH_PRECISION_ORIGINALS", "3000"))
PRECISION_SEEDS = (0, 1, 2)


def bench_students_from_each_precision(tmp_path):
    """Does a student lose anything when its teacher scored at bf16 or int8? The first PRECISION_ORIGINALS SST-2
    training sentences ×10 draws, scored by the reference teacher at float32, bf16 and int8 (2 threads); the
    default BiLSTM trained on each over three seeds; SST-2 dev accuracy (best epoch on the holdout) mean ± std and every
    run. `score.dtype: auto` may pick int8 only if its students lose nothing measurable against float32's."""
    import numpy as np

    from pipelines.stages import augment, score, train
    from pipelines.stages.augment import AugmentConfig, RecipeConfig
    from pipelines.stages.score import ScoreConfig
    from pipelines.stages.train import TrainConfig
    from pipelines.tasks import TASKS

    sst2, teacher = shared_path("data", "glue", "SST-2"), shared_path("teachers", "minilm-sst2")
    task = TASKS["sst2"]
    transfer = augment.run(AugmentConfig(task=task, data=sst2, out=tmp_path / "t", limit=PRECISION_ORIGINALS,
                                         recipe=RecipeConfig(n_iter=10))).out_dir
    results: dict = {"originals": PRECISION_ORIGINALS, "seeds": list(PRECISION_SEEDS)}
    for dtype in ("float32", "bf16", "int8"):
        scored = score.run(ScoreConfig(teacher=str(teacher), transfer=transfer, out=tmp_path / f"s-{dtype}",
                                       dtype=dtype)).out_dir
        stats = json.loads((scored / "stats.json").read_text())
        cfgs = [TrainConfig(scored=scored, task=task, data=sst2, out=tmp_path / f"{dtype}-{seed}", seed=seed,
                            export="none") for seed in PRECISION_SEEDS]
        runs = [round(100 * json.loads((r.out_dir / "metrics.json").read_text())["dev"]["dev"]["accuracy"], 2)
                for r in train.run_together(cfgs, [c.out.name for c in cfgs])]  # side by side, a CPU each
        results[dtype] = {"rows": stats["rows"], "score_rows_per_s": stats["rows_per_s"], "dev_accuracy": runs,
                          "mean": round(float(np.mean(runs)), 2), "std": round(float(np.std(runs, ddof=1)), 2)}
    for dtype in ("bf16", "int8"):
        results[dtype]["mean_minus_float32"] = round(results[dtype]["mean"] - results["float32"]["mean"], 2)
    save("precision-students", results)


@pytest.mark.skipif(os.environ.get("BENCH_10M") != "1", reason="set BENCH_10M=1: two ~10M-row runs, minutes")
def bench_ten_million_rows_in_bounded_memory(tmp_path):
    sst2 = shared_path("data", "glue", "SST-2")
    results = {}
    for chunk in (0, 500):  # 0: the default, 125 examples a chunk at 320 draws
        out = tmp_path / f"t{chunk}"
        run = timed_process(distill("augment", "--task", "sst2", "--data", str(sst2), "--n-iter", "320",
                                    "--chunk-size", str(chunk), "--out", str(out)), {"TQDM_DISABLE": "1"})
        stats = json.loads((out / "stats.json").read_text())
        results[f"chunk {chunk}"] = {"rows": stats["rows"], "wall_s": run["wall_s"],
                                     "peak_rss_mb": run["peak_rss_mb"], "peak_anon_mb": run["peak_anon_mb"], "digest": digest(out)}
    results["same bytes"] = results["chunk 0"]["digest"] == results["chunk 500"]["digest"]
    small = tmp_path / "t-1m"
    timed_process(distill("augment", "--task", "sst2", "--data", str(sst2), "--n-iter", "320", "--limit", "6735",
                          "--out", str(small)), {"TQDM_DISABLE": "1"})
    teacher = _random_bert(tmp_path / "tiny-teacher", shared_path("teachers", "minilm-sst2"), "tiny")
    for name, transfer in (("1M", small), ("10M", tmp_path / "t0")):
        results[f"score+train {name}"] = score_and_train_memory(transfer, teacher, sst2, tmp_path / name)
    save("augment-10m", results)
    assert results["same bytes"]


def score_and_train_memory(transfer: Path, teacher: Path, sst2: Path, out: Path) -> dict:
    """Peak RSS and wall time of `distill score` and one epoch of `distill train` on a transfer set."""
    env = {"TQDM_DISABLE": "1"}
    scored = timed_process(distill("score", "--teacher", str(teacher), "--transfer", str(transfer), "--out",
                                   str(out / "scored"), "--dtype", "float32"), env)
    common = ("train", "--scored", str(out / "scored"), "--task", "sst2", "--data", str(sst2), "--epochs", "1",
              "--batch-size", "512", "--export", "none")
    bilstm = timed_process(distill(*common, "--out", str(out / "student"), "--vectors", "none", "--hidden", "16",
                                   "--fc", "16", "--embed-dim", "16"), env)
    # The transformer student made from the one-layer teacher: the figure is the loop's and the token cache's.
    transformer = timed_process(distill(*common, "--out", str(out / "student-transformer"), "--family",
                                        "transformer", "--layers", "0"), env)
    rows = json.loads((out / "scored" / "stats.json").read_text())["rows"]
    keep = ("wall_s", "peak_rss_mb", "peak_anon_mb")
    return {"rows": rows, "score": {k: scored[k] for k in keep}, "train": {k: bilstm[k] for k in keep},
            "train transformer": {k: transformer[k] for k in keep}}
