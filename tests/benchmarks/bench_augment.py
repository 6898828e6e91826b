"""Augmentation benchmark: all of SST-2 train x 20 through `distill augment`, against a plain loop.

The plain loop is what a straightforward script does: one process, spaCy `nlp.pipe` tagging, then a per-token
Python loop with `random` for the three rules and a set for dedupe. Both run as whole processes in this run.
"""

from __future__ import annotations

import json
import os
import tempfile

from .conftest import PYTHON, save, shared_path, timed_process

LIMIT = int(os.environ.get("DISTILL_BENCH_AUGMENT_LIMIT", "0")) or None

PLAIN_LOOP = r'''
import random, sys, time
from augment.tagging import load_spacy
path, limit, n_iter = sys.argv[1], int(sys.argv[2]), 20
texts = [l.split("\t")[0] for l in open(path, encoding="utf-8").read().splitlines()[1:]]
texts = texts[:limit] if limit else texts
t0 = time.perf_counter()
nlp = load_spacy()
docs = [[(t.text, t.tag_, t.whitespace_) for t in d] for d in nlp.pipe(texts, batch_size=512)]
t1 = time.perf_counter()
by_tag = {}
for doc in docs:
    for w, tag, _ in doc:
        by_tag.setdefault(tag, {}).setdefault(w, 0)
        by_tag[tag][w] += 1
tables = {t: (list(c), list(c.values())) for t, c in by_tag.items()}
random.seed(0)
seen = set(texts)
rows = []
for doc in docs:
    for _ in range(n_iter):
        toks = []
        for w, tag, ws in doc:
            u = random.random()
            if u < 0.1:
                w = "<mask>"
            elif u < 0.2:
                words, counts = tables[tag]
                w = random.choices(words, weights=counts)[0]
            toks.append((w, ws))
        if random.random() < 0.25:
            n = min(random.randint(1, 5), len(toks))
            s = random.randint(0, len(toks) - n)
            toks = toks[s:s + n]
        text = "".join(w + ws for w, ws in toks)
        if text not in seen:
            seen.add(text)
            rows.append(text)
t2 = time.perf_counter()
print(f"TAG_S={t1 - t0:.3f} GEN_S={t2 - t1:.3f} SYNTHETIC={len(rows)} SENTENCES={len(texts)}")
'''


def bench_augment_sst2():
    sst2 = shared_path("data", "glue", "SST-2")
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "transfer")
        argv = [PYTHON, "-m", "pipelines.cli", "augment", "--task", "sst2", "--data", str(sst2), "--out", out,
                "--n-iter", "20"] + (["--limit", str(LIMIT)] if LIMIT else [])
        ours = timed_process(argv)
        stats = json.load(open(os.path.join(out, "stats.json")))
        timings = json.load(open(os.path.join(out, "manifest.json")))["timings_s"]
    plain = timed_process([PYTHON, "-c", PLAIN_LOOP, str(sst2 / "train.tsv"), str(LIMIT or 0)])
    p = dict(kv.split("=") for kv in plain["stdout"].split())
    results = {
        "task": "sst2 train", "originals": stats["originals"], "n_iter": 20,
        "distill_augment": {
            "wall_s": ours["wall_s"], "peak_rss_mb": ours["peak_rss_mb"],
            "synthetic_rows": stats["synthetic"], "tagging_sentences_per_s": stats["tagging_sentences_per_s"],
            "synthetic_rows_per_s": stats["synthetic_rows_per_s"], "workers": stats["workers"],
            "stage_timings_s": timings,
        },
        "plain_loop": {
            "wall_s": plain["wall_s"], "peak_rss_mb": plain["peak_rss_mb"], "synthetic_rows": int(p["SYNTHETIC"]),
            "tagging_sentences_per_s": round(int(p["SENTENCES"]) / float(p["TAG_S"]), 1),
            "synthetic_rows_per_s": round(int(p["SYNTHETIC"]) / float(p["GEN_S"]), 1),
        },
    }
    results["speedup_wall"] = round(plain["wall_s"] / ours["wall_s"], 2)
    save("augment", results)
    assert stats["synthetic"] > 0
