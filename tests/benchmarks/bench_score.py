"""Benchmarks of `distill score` (run with `make bench`; results also go to .bench/score.json).

CPU: whole processes, model loading included, on the same ~5,000 transfer-set rows (the first 335 SST-2 train
sentences through `distill augment`): `distill score` in float32, `transformers.pipeline("text-classification")`
with batch_size=64, and `distill score --dtype bf16`. Target (DESIGN.md §6): at least 2x the pipeline's
sentences/s at float32.

GPU (skipped without CUDA): tokens/s of random-weight BERT-base and BERT-large sized teachers in bf16, and the
fraction of a measured bf16 matmul rate that their model FLOPs reach.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
BENCH_DIR = REPO / ".bench"
RESULTS = BENCH_DIR / "score.json"
REPEATS = int(os.environ.get("BENCH_REPEATS", "1"))  # best of N runs of each method (the machine may be shared)
SST2_ORIGINALS = 335  # the first SST-2 train sentences, augmented into the CPU transfer set (4,994 rows)

_PIPELINE_SCRIPT = """
import json, sys
from transformers import pipeline
texts = json.load(open(sys.argv[2], encoding="utf-8"))
classify = pipeline("text-classification", model=sys.argv[1], batch_size=64, device=-1)
out = classify(texts, batch_size=64, truncation=True, max_length=128)
assert len(out) == len(texts)
"""


def _save_results(key: str, value: dict) -> None:
    BENCH_DIR.mkdir(exist_ok=True)
    results = json.loads(RESULTS.read_text()) if RESULTS.is_file() else {}
    results[key] = value
    RESULTS.write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")


def _timed_process(argv: list[str]) -> float:
    """Wall seconds of a whole process: interpreter start, imports and model loading included."""
    env = {k: v for k, v in os.environ.items() if k != "OMP_NUM_THREADS"}  # each side picks its own threads
    t0 = time.perf_counter()
    proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr[-3000:]
    return seconds


def _transfer_set(sst2_dir: Path) -> Path:
    """The benchmark's transfer set, built once by the real augment stage (a no-op when it is up to date)."""
    from pipelines.stages.augment import AugmentConfig, RecipeConfig
    from pipelines.stages.augment import run as augment
    from pipelines.tasks import TASKS

    out = BENCH_DIR / "score" / "transfer"
    augment(AugmentConfig(task=TASKS["sst2"], data=sst2_dir, out=out, limit=SST2_ORIGINALS,
                          recipe=RecipeConfig(seed=0)))
    return out


def _row(name: str, seconds: float, rows: int, tokens: int) -> dict:
    return {"method": name, "seconds": round(seconds, 2), "sentences_per_s": round(rows / seconds, 1),
            "tokens_per_s": round(tokens / seconds, 1)}


def _print_table(title: str, rows: list[dict], columns: list[str]) -> None:
    print(f"\n{title}")
    widths = [max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True)))
    for r in rows:
        print("  ".join(str(r.get(c, "")).ljust(w) for c, w in zip(columns, widths, strict=True)))


def bench_score_cpu(sst2_dir, reference_teacher, tmp_path):
    from augment import MASK_SYMBOL
    from pipelines import store

    transfer = _transfer_set(sst2_dir)
    texts = [t.replace(MASK_SYMBOL, "[MASK]") for t in store.read_table(transfer, ["text"])["text"].to_pylist()]
    (tmp_path / "texts.json").write_text(json.dumps(texts), encoding="utf-8")
    score = [sys.executable, "-m", "pipelines.cli", "score", "--transfer", str(transfer), "--teacher",
             str(reference_teacher), "--device", "cpu"]

    commands = {  # name -> (command, its output directory)
        "distill score float32": ([*score, "--out", str(tmp_path / "f32")], tmp_path / "f32"),
        "transformers.pipeline bs=64": ([sys.executable, "-c", _PIPELINE_SCRIPT, str(reference_teacher),
                                         str(tmp_path / "texts.json")], None),
        "distill score bf16": ([*score, "--out", str(tmp_path / "bf16"), "--dtype", "bf16"], tmp_path / "bf16"),
    }
    load_before = os.getloadavg()[0]
    runs = {name: float("inf") for name in commands}
    for _ in range(REPEATS):
        for name, (argv, out) in commands.items():
            if out is not None and out.exists():
                shutil.rmtree(out)  # a fresh output each time, or the stage would be a no-op
            runs[name] = min(runs[name], _timed_process(argv))
    stats = {k: json.loads((tmp_path / d / "stats.json").read_text()) for k, d in
             (("float32", "f32"), ("bf16", "bf16"))}
    rows, tokens = len(texts), stats["float32"]["tokens"]
    table = [_row(name, s, rows, tokens) for name, s in runs.items()]
    base = runs["transformers.pipeline bs=64"]
    for r, s in zip(table, runs.values(), strict=True):
        r["speedup_vs_pipeline"] = round(base / s, 2)
    load = (load_before, os.getloadavg()[0])
    _print_table(f"score on CPU: {rows:,} SST-2 transfer-set rows, {tokens:,} tokens, whole processes, best of "
                 f"{REPEATS} ({os.cpu_count()} CPUs, OMP_WAIT_POLICY={os.environ.get('OMP_WAIT_POLICY', 'unset')}, "
                 f"load average {load[0]:.1f} before, {load[1]:.1f} after; "
                 f"teacher {reference_teacher.name})", table,
                 ["method", "seconds", "sentences_per_s", "tokens_per_s", "speedup_vs_pipeline"])
    print(f"in-stage scoring only (model loaded): float32 {stats['float32']['rows_per_s']:,} rows/s, "
          f"bf16 {stats['bf16']['rows_per_s']:,} rows/s")
    speedup = base / runs["distill score float32"]
    # OMP_WAIT_POLICY=PASSIVE (idle OpenMP threads sleep instead of spinning) changes a lot on a busy machine.
    policy = os.environ.get("OMP_WAIT_POLICY")
    _save_results(f"cpu_omp_{policy.lower()}" if policy else "cpu", {
        "rows": rows, "tokens": tokens, "runs": table, "in_stage": stats, "load_average": load, "repeats": REPEATS,
        "omp_wait_policy": policy, "speedup_float32": round(speedup, 2), "target_speedup": 2.0})
    if speedup < 2.0:
        print(f"WARNING: float32 speedup {speedup:.2f}x is below the 2x target (the machine may be busy)")


# ----------------------------------------------------------------------------------------------- GPU

BERT_SIZES = {"bert-base": (768, 12, 12, 3072), "bert-large": (1024, 24, 16, 4096),  # hidden, layers, heads, ffn
              "tiny": (32, 1, 2, 64)}  # memory benchmarks: the stage's own footprint, not the model's


def _matmul_tflops(n: int = 8192, reps: int = 20) -> float:
    """Achieved bf16 matmul rate of this GPU: the roofline our fractions are measured against."""
    import torch

    a = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(n, n, device="cuda", dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    torch.cuda.synchronize()
    return 2 * n**3 * reps / (time.perf_counter() - t0) / 1e12


def _random_bert(out: Path, tokenizer_dir: Path, size: str) -> Path:
    """A random-weight BERT classifier of a standard size (speed does not depend on the weights)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from pipelines import hub

    hidden, layers, heads, ffn = BERT_SIZES[size]
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(hidden_size=hidden, num_hidden_layers=layers,
                                                     num_attention_heads=heads, intermediate_size=ffn,
                                                     num_labels=2))
    hub.save_teacher(model, hub.load_tokenizer(tokenizer_dir), out)  # BERT's uncased WordPiece vocabulary
    return out


def _model_flops(model, lengths: np.ndarray) -> float:
    """Forward FLOPs over real (unpadded) tokens: 2 per weight per token in the encoder's and head's matmuls,
    plus attention's QK^T and AV (4·T·d per token per layer)."""
    cfg = model.config
    dense = sum(p.numel() for n, p in model.named_parameters() if p.ndim == 2 and "embeddings" not in n)
    tokens = float(lengths.sum())
    attention = 4.0 * cfg.num_hidden_layers * cfg.hidden_size * float((lengths.astype(np.float64) ** 2).sum())
    return 2.0 * dense * tokens + attention


def bench_score_gpu(sst2_dir, reference_teacher, tmp_path):
    import torch

    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    from pipelines.teacher.scorer import Encoded, TeacherScorer

    lines = (sst2_dir / "train.tsv").read_text(encoding="utf-8").splitlines()[1:]
    sentences = [line.split("\t")[0] for line in lines]
    workloads = {
        "sst2 (short)": sentences[:50_000],
        "128-token": [" ".join(sentences[i:i + 12]) for i in range(0, 12 * 8_000, 12)],
    }
    peak = _matmul_tflops()
    table = []
    for size in BERT_SIZES:
        model_dir = _random_bert(tmp_path / size, reference_teacher, size)
        scorer = TeacherScorer(model_dir, device="cuda", dtype="bf16", batch_tokens=65_536)
        for name, texts in workloads.items():
            enc = scorer.encode(texts)
            scorer.score(enc.take(np.arange(2000)))  # warm-up
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            scorer.score(enc)
            seconds = time.perf_counter() - t0
            tflops = _model_flops(scorer.model, enc.lengths) / seconds / 1e12
            table.append({"model": size, "workload": name, "rows": len(texts), "tokens": int(enc.lengths.sum()),
                          "tokens_per_s": round(float(enc.lengths.sum()) / seconds),
                          "model_tflops": round(tflops, 1), "fraction_of_matmul": round(tflops / peak, 3)})
        del scorer
        torch.cuda.empty_cache()
    _print_table(f"score on {torch.cuda.get_device_name()}: bf16, random weights; measured bf16 matmul "
                 f"{peak:.0f} TFLOP/s", table,
                 ["model", "workload", "rows", "tokens", "tokens_per_s", "model_tflops", "fraction_of_matmul"])
    _save_results("gpu", {"device": torch.cuda.get_device_name(), "matmul_bf16_tflops": round(peak, 1),
                          "runs": table})
