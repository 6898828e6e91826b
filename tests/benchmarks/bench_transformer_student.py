"""The transformer student beside the BiLSTM on one scored set (`make bench`; results in .bench/students.json).

Reduced scale for a 2-core CPU (training 884k rows takes hours there): the first BENCH_STUDENT_ORIGINALS SST-2
training sentences (default 2,000) ×10 draws, scored by the reference teacher (MiniLM-L6, dev 89.79); a 3-layer
student made from it (layers 0, 2, 4), the BiLSTM with the project's defaults on the same scored set, SST-2 dev
accuracy (best epoch chosen by `distill train`'s default, the holdout; per seed of BENCH_STUDENT_SEEDS, with
mean and standard deviation) and CPU sentences/s of each (and of the teacher) on the dev sentences, 2
threads, batches of 32.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

from .conftest import save, shared_path

ORIGINALS = int(os.environ.get("BENCH_STUDENT_ORIGINALS", "2000"))
SEEDS = [int(x) for x in os.environ.get("BENCH_STUDENT_SEEDS", "0").split(",")]  # e.g. 0,1,2: mean ± std


def sentences_per_s(predict, texts: list[str], batch: int = 32) -> float:
    predict(texts[:batch])  # warm-up
    t0 = time.perf_counter()
    for i in range(0, len(texts), batch):
        predict(texts[i:i + batch])
    return round(len(texts) / (time.perf_counter() - t0), 1)


def train_one(scored, task, data, out, kind: str, seed: int, extra: dict) -> dict:
    from pipelines.stages import train
    from pipelines.stages.train import TrainConfig

    t0 = time.perf_counter()
    train.run(TrainConfig(scored=scored, task=task, data=data, out=out, student=kind, seed=seed, **extra))
    m = json.loads((out / "metrics.json").read_text())
    return {"seed": seed, "dev_accuracy": round(100 * m["dev"]["dev"]["accuracy"], 2), "best_epoch": m["best_epoch"],
            "train_s": round(time.perf_counter() - t0, 1), "params": json.loads((out / "stats.json").read_text())["params"]}


def bench_transformer_student_beside_the_bilstm(tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from pipelines.stages import augment, score
    from pipelines.stages.augment import AugmentConfig, RecipeConfig
    from pipelines.stages.score import ScoreConfig
    from pipelines.tasks import TASKS, read_split

    sst2, teacher = shared_path("data", "glue", "SST-2"), shared_path("teachers", "minilm-sst2")
    task = TASKS["sst2"]
    os.environ["TQDM_DISABLE"] = "1"
    t = augment.run(AugmentConfig(task=task, data=sst2, out=tmp_path / "t", limit=ORIGINALS,
                                  recipe=RecipeConfig(n_iter=10))).out_dir
    t0 = time.perf_counter()
    scored = score.run(ScoreConfig(teacher=str(teacher), transfer=t, out=tmp_path / "s")).out_dir
    score_stats = json.loads((scored / "stats.json").read_text())
    results: dict = {"originals": ORIGINALS, "scored_rows": score_stats["rows"], "score_dtype": score_stats["dtype"],
                     "score_s": round(time.perf_counter() - t0, 1)}
    for kind, extra in (("transformer", {"layers": "0,2,4", "epochs": 3}), ("bilstm", {})):
        runs = [train_one(scored, task, sst2, tmp_path / f"{kind}-{seed}", kind, seed, extra) for seed in SEEDS]
        acc = [r["dev_accuracy"] for r in runs]
        results[kind] = {"dev_accuracy": round(float(np.mean(acc)), 2), "dev_accuracy_std": round(float(np.std(acc)), 2),
                         "seeds": SEEDS, "runs": runs, "params": runs[0]["params"]}
    dev, _ = read_split(task, sst2, "dev")
    torch.set_num_threads(2)
    for name, path in (("teacher", teacher), ("transformer", tmp_path / f"transformer-{SEEDS[0]}")):
        tok = AutoTokenizer.from_pretrained(path)
        model = AutoModelForSequenceClassification.from_pretrained(path).eval()

        def predict(texts, tok=tok, model=model):
            with torch.inference_mode():
                return model(**tok(texts, padding=True, truncation=True, max_length=128,
                                   return_tensors="pt")).logits.numpy()

        results.setdefault(name, {})["cpu_sentences_per_s"] = sentences_per_s(predict, dev.texts)
    results["teacher"]["dev_accuracy"] = 89.79
    results["transformer"]["speed_vs_teacher"] = round(results["transformer"]["cpu_sentences_per_s"]
                                                       / results["teacher"]["cpu_sentences_per_s"], 2)
    results["transformer"]["share_of_teacher_accuracy"] = round(results["transformer"]["dev_accuracy"] / 89.79, 4)
    save("students", results)
    assert np.isfinite(results["transformer"]["dev_accuracy"])
