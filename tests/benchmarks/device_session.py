"""The GPU checks of #12 and #13 as one prepared device session: pack here, run once on the lent machine.

The device machine (one H200, Python 3.12 with torch and transformers, no network, no spaCy) gets the repository
plus `.device/` (ignored by git), which `pack` fills here, within the device tool's 64 MiB a call:
  .device/whl/                          cp312 wheels the image lacks (datasets, dill, multiprocess)
  .device/shared/teachers/minilm-sst2/  the reference teacher (45 MB)
  .device/shared/data/glue/SST-2/       train.tsv and dev.tsv
  .device/transfer.tar.xz               the SST-2 x20 transfer set made here by `distill augment` (spaCy is not
                                        there; 88 MB of Arrow, about 11 MB compressed)

    .venv/bin/python tests/benchmarks/device_session.py pack          # here, about 3 minutes on 2 cores
    device run: command="python3 tests/benchmarks/device_session.py run", carry=[".device"], timeout_s=580

`run` does, in this order, each step within what is left of its time budget (DEVICE_BUDGET_S, default 540 s),
each step's result written to $OUT/results.json as soon as it ends:
  1. `distill score` of the whole transfer set with the reference teacher, dtype auto (bf16 on the GPU) and
     float32 (TF32), whole processes: rows/s, tokens/s, GPU utilisation sampled by nvidia-smi, and the two
     logit sets' agreement; both sets of logits to $OUT as .npy (float32, 7 MB each).
  2. `bench_score_gpu`: random-weight BERT-base and BERT-large teachers, tokens/s and the fraction of the measured
     bf16 matmul rate (goal of #12: at least 50% for BERT-large).
  3. The CUDA tests that need no spaCy (the OOM fault injection, the device and dtype choices).
  4. #13 at full scale: the 3-layer transformer student from the bf16 scored set, seed 0, its SST-2 dev accuracy.
  5. #12 at full scale: the BiLSTM student (seed 0, no word vectors: GloVe is not carried) from each scored set,
     its SST-2 dev accuracy from bf16 against float32 logits.

A rehearsal here, on the CPU and a small set: DEVICE_SESSION_LIMIT=200 (`pack`: the first 200 sentences) and
DEVICE_SESSION_DEVICE=cpu (`run`; scored sets and students in /tmp/device-session, results in its out/
without $OUT).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACK = REPO / ".device"
SHARED = REPO.parent / "shared"
WHEELS = ("datasets==5.2.0", "dill==0.4.1", "multiprocess==0.70.19")
DEVICE = os.environ.get("DEVICE_SESSION_DEVICE", "cuda")
LIMIT = os.environ.get("DEVICE_SESSION_LIMIT")
WORK = Path("/tmp/device-session")
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "any")


def pack() -> None:
    """Fill .device/ here: wheels, the reference teacher, SST-2's files and the compressed transfer set."""
    if PACK.exists():
        shutil.rmtree(PACK)  # .device/ is this script's own output, rebuilt whole
    (PACK / "whl").mkdir(parents=True)
    platforms = [a for p in PLATFORMS for a in ("--platform", p)]
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
                    "--python-version", "3.12", "--implementation", "cp", *platforms, "-d", str(PACK / "whl"),
                    *WHEELS], check=True)
    shutil.copytree(SHARED / "teachers" / "minilm-sst2", PACK / "shared" / "teachers" / "minilm-sst2")
    glue = PACK / "shared" / "data" / "glue" / "SST-2"
    glue.mkdir(parents=True)
    for name in ("train.tsv", "dev.tsv"):
        shutil.copyfile(SHARED / "data" / "glue" / "SST-2" / name, glue / name)
    transfer = PACK / "build" / "transfer"
    subprocess.run([str(REPO / ".venv" / "bin" / "distill"), "augment", "--task", "sst2", "--data", str(glue),
                    "--out", str(transfer), *(["--limit", LIMIT] if LIMIT else [])], check=True)
    with tarfile.open(PACK / "transfer.tar.xz", "w:xz", preset=6) as tar:
        tar.add(transfer, arcname="transfer")
    shutil.rmtree(PACK / "build")
    total = sum(f.stat().st_size for f in PACK.rglob("*") if f.is_file())
    print(f"{PACK}: {total / 2**20:.1f} MiB (the device tool carries at most 64 MiB a call, the repository included)")


class Session:
    """The device run's clock, results file and the environment its processes see."""

    def __init__(self, out: Path, budget_s: float):
        self.out, self.deadline, self.results = out, time.monotonic() + budget_s, {}
        self.work = WORK  # outside .device/, which must stay as packed to fit the next call's carry
        self.env = {**os.environ, "PYTHONPATH": os.pathsep.join(["/tmp/site", str(REPO)]), "TQDM_MININTERVAL": "10"}

    def left(self) -> float:
        return self.deadline - time.monotonic()

    def save(self, key: str, value) -> None:
        self.results[key] = value
        (self.out / "results.json").write_text(json.dumps(self.results, indent=1) + "\n")
        print(f"[{key}] {json.dumps(value)[:2000]}", flush=True)

    def process(self, argv: list[str], log: str, limit: float) -> dict:
        """A whole process with a time limit; its wall seconds and exit status, its output in $OUT/log."""
        t0 = time.perf_counter()
        with open(self.out / log, "w") as f:
            try:
                rc = subprocess.run(argv, cwd=REPO, env=self.env, stdout=f, stderr=subprocess.STDOUT,
                                    timeout=max(1.0, limit)).returncode
            except subprocess.TimeoutExpired:
                rc = "timeout"
        return {"rc": rc, "process_s": round(time.perf_counter() - t0, 1)}

    def distill(self, *args: str) -> list[str]:
        return [sys.executable, "-m", "pipelines.cli", *args]


def _gpu_utilisation(stop: threading.Event, samples: list[int]) -> None:
    while shutil.which("nvidia-smi") and not stop.wait(0.5):
        q = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                           capture_output=True, text=True)
        if q.returncode == 0 and q.stdout.strip().isdigit():
            samples.append(int(q.stdout.strip()))


def score_both(s: Session) -> None:
    import numpy as np

    transfer = s.work / "transfer"
    for dtype in ("auto", "float32"):
        if s.left() < 60:
            return s.save(f"score_{dtype}", "skipped: no time left")
        samples: list[int] = []
        stop = threading.Event()
        sampler = threading.Thread(target=_gpu_utilisation, args=(stop, samples), daemon=True)
        sampler.start()
        run = s.process(s.distill("score", "--teacher", str(PACK / "shared/teachers/minilm-sst2"), "--transfer",
                                  str(transfer), "--out", str(s.work / f"scored-{dtype}"), "--device", DEVICE,
                                  "--dtype", dtype), f"score_{dtype}.log", s.left() - 30)
        stop.set()
        sampler.join()
        stats_file = s.work / f"scored-{dtype}" / "stats.json"
        stats = json.loads(stats_file.read_text()) if stats_file.is_file() else {}
        busy = sorted(samples)
        s.save(f"score_{dtype}", {**run, **{k: stats.get(k) for k in ("rows_scored", "tokens", "rows_per_s",
                                                                       "tokens_per_s", "wall_s", "dtype", "device",
                                                                       "batch_tokens", "peak_memory_mb")},
                                  "gpu_util_median": busy[len(busy) // 2] if busy else None,
                                  "gpu_util_samples": len(busy)})
    logits = {}
    for dtype in ("auto", "float32"):
        import datasets

        ds = datasets.load_from_disk(str(s.work / f"scored-{dtype}"))
        logits[dtype] = np.asarray(ds.with_format("numpy")["teacher_logits"], dtype=np.float32)
        np.save(s.out / f"logits_{dtype}.npy", logits[dtype])
    a, b = logits["auto"], logits["float32"]
    s.save("score_agreement", {"rows": len(a), "argmax_agreement": float((a.argmax(1) == b.argmax(1)).mean()),
                               "max_abs_diff": float(np.abs(a - b).max())})


def bench_gpu(s: Session) -> None:
    if s.left() < 90:
        return s.save("bench_score_gpu", "skipped: no time left")
    run = s.process([sys.executable, "-m", "pytest", "-q", "-s", "tests/benchmarks/bench_score.py::bench_score_gpu",
                     "-p", "no:cacheprovider", "--override-ini=norecursedirs=", "-o", "python_files=bench_*.py",
                     "-o", "python_functions=bench_*"], "bench_score_gpu.log", min(240, s.left() - 30))
    score_json = REPO / ".bench" / "score.json"
    gpu = json.loads(score_json.read_text()).get("gpu") if score_json.is_file() else None
    s.save("bench_score_gpu", {**run, "gpu": gpu})


def cuda_tests(s: Session) -> None:
    if s.left() < 60:
        return s.save("cuda_tests", "skipped: no time left")
    run = s.process([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests/pipelines/test_teacher.py",
                     "tests/pipelines/test_devices.py", "-k", "oom or cuda or device"], "cuda_tests.log",
                    min(120, s.left() - 30))
    s.save("cuda_tests", {**run, "tail": (s.out / "cuda_tests.log").read_text()[-600:]})


def transformer_student(s: Session) -> None:
    if s.left() < 120:
        return s.save("transformer_student", "skipped: no time left")
    out = s.work / "student-transformer"
    run = s.process(s.distill("train", "--family", "transformer", "--task", "sst2", "--data",
                              str(PACK / "shared/data/glue/SST-2"), "--scored", str(s.work / "scored-auto"),
                              "--out", str(out), "--seed", "0", "--device", DEVICE),
                    "transformer_student.log", s.left() - 15)
    metrics = out / "metrics.json"
    s.save("transformer_student", {**run, "metrics": json.loads(metrics.read_text()) if metrics.is_file() else None})


def bilstm_from_each_precision(s: Session) -> None:
    for dtype in ("auto", "float32"):
        if s.left() < 60:
            return s.save(f"bilstm_{dtype}", "skipped: no time left")
        out = s.work / f"student-bilstm-{dtype}"
        run = s.process(s.distill("train", "--task", "sst2", "--data", str(PACK / "shared/data/glue/SST-2"),
                                  "--scored", str(s.work / f"scored-{dtype}"), "--out", str(out), "--seed", "0",
                                  "--vectors", "none", "--device", DEVICE), f"bilstm_{dtype}.log", s.left() - 10)
        metrics = out / "metrics.json"
        m = json.loads(metrics.read_text()) if metrics.is_file() else {}
        s.save(f"bilstm_{dtype}", {**run, "dev": m.get("dev"), "best_epoch": m.get("best_epoch")})


def run() -> None:
    out = Path(os.environ.get("OUT") or WORK / "out")
    out.mkdir(parents=True, exist_ok=True)
    s = Session(out, float(os.environ.get("DEVICE_BUDGET_S", "540")))
    if DEVICE != "cpu":  # a rehearsal here runs in the project's venv, which has them
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--no-compile",
                        "--target", "/tmp/site", *map(str, (PACK / "whl").glob("*.whl"))], check=True)
    if not SHARED.exists():
        SHARED.symlink_to(PACK / "shared")  # the tests' and benchmarks' ../shared
    s.work.mkdir(parents=True, exist_ok=True)
    with tarfile.open(PACK / "transfer.tar.xz") as tar:
        tar.extractall(s.work, filter="data")
    smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total", "--format=csv,noheader"],
                         capture_output=True, text=True).stdout.strip() if shutil.which("nvidia-smi") else None
    versions = subprocess.run([sys.executable, "-c", "import torch, transformers, datasets; print(torch.__version__,"
                               " transformers.__version__, datasets.__version__, torch.cuda.is_available())"],
                              env=s.env, capture_output=True, text=True)
    s.save("machine", {"gpu": smi, "versions": (versions.stdout or versions.stderr).strip()[-500:],
                       "python": sys.version.split()[0], "cpus": os.cpu_count()})
    for step in (score_both, bench_gpu, cuda_tests, transformer_student, bilstm_from_each_precision):
        try:
            step(s)
        except Exception as e:  # one step's failure must not cost the others their device time
            s.save(step.__name__, f"failed: {type(e).__name__}: {e}")


if __name__ == "__main__":
    {"pack": pack, "run": run}[sys.argv[1]]()
