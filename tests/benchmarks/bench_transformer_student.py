"""The transformer student beside the BiLSTM on one scored set (`make bench`; results in .bench/students.json).

Reduced scale for a 2-core CPU (training 884k rows takes hours there): the first BENCH_STUDENT_ORIGINALS SST-2
training sentences (default 2,000) ×BENCH_STUDENT_DRAWS draws (default 10), scored by the reference teacher
(MiniLM-L6, dev 89.79); the transformer student with its defaults (layers 0, 2, 4 of the teacher's 6), the
distilled BiLSTM and the BiLSTM baseline (gold labels only) on the same scored set, BENCH_STUDENT_EPOCHS epochs
(default each family's), SST-2 dev accuracy (best epoch chosen by `distill train`'s default, the holdout; per
seed of BENCH_STUDENT_SEEDS, with mean and sample standard deviation) and CPU sentences/s of each (and of the teacher) on the dev sentences, 2
threads, batches of 32. With BENCH_STUDENT_DIR, `bench_transformer_student_speed_against_the_teacher` times a
student trained elsewhere (the full-set one) against the teacher the same way, batch by batch in turn.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest

from .conftest import save, shared_path

ORIGINALS = int(os.environ.get("BENCH_STUDENT_ORIGINALS", "2000"))
DRAWS = int(os.environ.get("BENCH_STUDENT_DRAWS", "10"))
EPOCHS = os.environ.get("BENCH_STUDENT_EPOCHS")  # unset: each family's default
SEEDS = [int(x) for x in os.environ.get("BENCH_STUDENT_SEEDS", "0").split(",")]  # e.g. 0,1,2: mean ± std
STUDENT_DIR = os.environ.get("BENCH_STUDENT_DIR")  # a trained transformer student: its speed against the teacher
REPEATS = int(os.environ.get("BENCH_STUDENT_REPEATS", "3"))


def hf_predictor(path):
    """A Hugging Face classifier directory as served on the CPU: float32, tokenizer included (torch's thread
    count is the caller's)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path).eval()

    def predict(batch):
        with torch.inference_mode():
            return model(**tok(batch, padding=True, truncation=True, max_length=128, return_tensors="pt")).logits

    return predict


def paired_sentences_per_s(predictors: dict, texts: list[str], batch: int = 32) -> dict[str, float]:
    """Sentences/s of each predictor over `texts`, timed batch by batch in turn (the order rotating each batch),
    so that a shared CPU's drifting speed falls on all of them alike."""
    names = list(predictors)
    spent = dict.fromkeys(names, 0.0)
    for name in names:
        predictors[name](texts[:batch])  # warm-up
    for k, i in enumerate(range(0, len(texts), batch)):
        for name in names[k % len(names):] + names[:k % len(names)]:
            t0 = time.perf_counter()
            predictors[name](texts[i:i + batch])
            spent[name] += time.perf_counter() - t0
    return {name: round(len(texts) / spent[name], 1) for name in names}


def train_one(scored, task, data, out, kind: str, seed: int, extra: dict) -> dict:
    from pipelines.stages import train
    from pipelines.stages.train import TrainConfig

    t0 = time.perf_counter()
    train.run(TrainConfig(scored=scored, task=task, data=data, out=out, family=kind, seed=seed, **extra))
    m = json.loads((out / "metrics.json").read_text())
    return {"seed": seed, "dev_accuracy": round(100 * m["dev"]["dev"]["accuracy"], 2), "best_epoch": m["best_epoch"],
            "train_s": round(time.perf_counter() - t0, 1), "params": json.loads((out / "stats.json").read_text())["params"]}


def bench_transformer_student_beside_the_bilstm(tmp_path):
    import torch

    from pipelines.stages import augment, score
    from pipelines.stages.augment import AugmentConfig, RecipeConfig
    from pipelines.stages.score import ScoreConfig
    from pipelines.tasks import TASKS, read_split

    sst2, teacher = shared_path("data", "glue", "SST-2"), shared_path("teachers", "minilm-sst2")
    task = TASKS["sst2"]
    os.environ["TQDM_DISABLE"] = "1"
    t = augment.run(AugmentConfig(task=task, data=sst2, out=tmp_path / "t", limit=ORIGINALS,
                                  recipe=RecipeConfig(n_iter=DRAWS))).out_dir
    t0 = time.perf_counter()
    scored = score.run(ScoreConfig(teacher=str(teacher), transfer=t, out=tmp_path / "s")).out_dir
    score_stats = json.loads((scored / "stats.json").read_text())
    results: dict = {"originals": ORIGINALS, "scored_rows": score_stats["rows"], "score_dtype": score_stats["dtype"],
                     "score_s": round(time.perf_counter() - t0, 1)}
    epochs = {"epochs": int(EPOCHS)} if EPOCHS else {}
    for name, kind, extra in (("transformer", "transformer", epochs), ("bilstm", "bilstm", epochs),
                              ("baseline", "bilstm", {"baseline": True})):
        runs = [train_one(scored, task, sst2, tmp_path / f"{name}-{seed}", kind, seed, extra) for seed in SEEDS]
        acc = [r["dev_accuracy"] for r in runs]
        results[name] = {"dev_accuracy": round(float(np.mean(acc)), 2),
                         "dev_accuracy_std": round(float(np.std(acc, ddof=1)), 2) if len(acc) > 1 else 0.0,
                         "seeds": SEEDS, "runs": runs, "params": runs[0]["params"]}
    dev, _ = read_split(task, sst2, "dev")
    torch.set_num_threads(2)
    speeds = paired_sentences_per_s({"teacher": hf_predictor(teacher),
                                     "transformer": hf_predictor(tmp_path / f"transformer-{SEEDS[0]}")}, dev.texts)
    for name, speed in speeds.items():
        results.setdefault(name, {})["cpu_sentences_per_s"] = speed
    results["teacher"]["dev_accuracy"] = 89.79
    results["transformer"]["speed_vs_teacher"] = round(results["transformer"]["cpu_sentences_per_s"]
                                                       / results["teacher"]["cpu_sentences_per_s"], 2)
    results["transformer"]["share_of_teacher_accuracy"] = round(results["transformer"]["dev_accuracy"] / 89.79, 4)
    save("students", results)
    assert np.isfinite(results["transformer"]["dev_accuracy"])


def bench_transformer_student_speed_against_the_teacher():
    """BENCH_STUDENT_DIR (a trained transformer student, e.g. the full-set one): its CPU sentences/s and the
    reference teacher's on the SST-2 dev sentences, 2 threads, batch by batch in turn (a shared CPU's speed
    drifts), BENCH_STUDENT_REPEATS passes; the median of each and of the passes' ratios."""
    if not STUDENT_DIR:
        pytest.skip("set BENCH_STUDENT_DIR to a `distill train --student transformer` output")
    import torch

    from pipelines.tasks import TASKS, read_split

    sst2, teacher = shared_path("data", "glue", "SST-2"), shared_path("teachers", "minilm-sst2")
    dev, _ = read_split(TASKS["sst2"], sst2, "dev")
    torch.set_num_threads(2)
    predictors = {"teacher": hf_predictor(teacher), "student": hf_predictor(STUDENT_DIR)}
    runs = [paired_sentences_per_s(predictors, dev.texts) for _ in range(REPEATS)]
    ratios = [r["student"] / r["teacher"] for r in runs]
    results = {"student": STUDENT_DIR, "runs": runs,
               "teacher_sentences_per_s": float(np.median([r["teacher"] for r in runs])),
               "student_sentences_per_s": float(np.median([r["student"] for r in runs])),
               "speed_vs_teacher": round(float(np.median(ratios)), 2),
               "speed_vs_teacher_range": [round(min(ratios), 2), round(max(ratios), 2)]}
    save("transformer_speed", results)
    assert all(r > 0 for r in ratios)
