"""The transformer student beside the BiLSTM on one scored set (`make bench`; results in .bench/students.json).

Reduced scale for a 2-core CPU (training 884k rows takes hours there): the first BENCH_STUDENT_ORIGINALS SST-2
training sentences (default 2,000) ×10 draws, scored by the reference teacher (MiniLM-L6, dev 89.79); a 3-layer
student made from it (layers 0, 2, 4), the BiLSTM with the project's defaults on the same scored set, SST-2 dev
accuracy (best epoch, chosen on dev as every figure of this project so far) and CPU sentences/s of each (and of
the teacher) on the dev sentences, 2 threads, batches of 32.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

from .conftest import save, shared_path

ORIGINALS = int(os.environ.get("BENCH_STUDENT_ORIGINALS", "2000"))


def sentences_per_s(predict, texts: list[str], batch: int = 32) -> float:
    predict(texts[:batch])  # warm-up
    t0 = time.perf_counter()
    for i in range(0, len(texts), batch):
        predict(texts[i:i + batch])
    return round(len(texts) / (time.perf_counter() - t0), 1)


def bench_transformer_student_beside_the_bilstm(tmp_path):
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from pipelines.stages import augment, score, train
    from pipelines.stages.augment import AugmentConfig, RecipeConfig
    from pipelines.stages.score import ScoreConfig
    from pipelines.stages.train import TrainConfig
    from pipelines.tasks import TASKS, read_split

    sst2, teacher = shared_path("data", "glue", "SST-2"), shared_path("teachers", "minilm-sst2")
    task = TASKS["sst2"]
    os.environ["TQDM_DISABLE"] = "1"
    t = augment.run(AugmentConfig(task=task, data=sst2, out=tmp_path / "t", limit=ORIGINALS,
                                  recipe=RecipeConfig(n_iter=10))).out_dir
    scored = score.run(ScoreConfig(teacher=str(teacher), transfer=t, out=tmp_path / "s")).out_dir
    rows = json.loads((scored / "stats.json").read_text())["rows"]
    results: dict = {"originals": ORIGINALS, "scored_rows": rows}
    for kind, extra in (("transformer", {"layers": "0,2,4", "epochs": 3}), ("bilstm", {})):
        t0 = time.perf_counter()
        out = train.run(TrainConfig(scored=scored, task=task, data=sst2, out=tmp_path / kind, student=kind,
                                    **extra)).out_dir
        m = json.loads((out / "metrics.json").read_text())
        results[kind] = {"dev_accuracy": round(100 * m["dev"]["dev"]["accuracy"], 2), "best_epoch": m["best_epoch"],
                         "train_s": round(time.perf_counter() - t0, 1),
                         "params": json.loads((out / "stats.json").read_text())["params"]}
    dev, _ = read_split(task, sst2, "dev")
    torch.set_num_threads(2)
    for name, path in (("teacher", teacher), ("transformer", tmp_path / "transformer")):
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
