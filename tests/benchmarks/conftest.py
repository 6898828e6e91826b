"""Benchmarks (`make bench`): real data, whole processes, numbers printed and saved under .bench/."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SHARED = REPO.parent / "shared"
BENCH_DIR = REPO / ".bench"


def shared_path(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is not present")
    return path


def timed_process(argv: list[str], env: dict | None = None) -> dict:
    """Run a whole process; its wall time, peak resident memory (children included, via GNU time) and the peak of
    its anonymous memory (`peak_anon_mb`: heap and arrays, sampled from /proc every 50 ms over the process tree):
    resident memory also counts the pages of memory-mapped input files, which the kernel drops under pressure."""
    t0 = time.perf_counter()
    cmd = ["/usr/bin/time", "-f", "MAXRSS_KB=%M"] + argv if Path("/usr/bin/time").exists() else argv
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    sampler = AnonSampler(proc.pid)
    sampler.start()
    stdout, stderr = proc.communicate()
    sampler.stop()
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({proc.returncode}):\n{stderr[-3000:]}")
    rss = [line for line in stderr.splitlines() if line.startswith("MAXRSS_KB=")]
    return {"wall_s": round(wall, 2), "peak_rss_mb": round(int(rss[-1].split("=")[1]) / 1024, 1) if rss else None,
            "peak_anon_mb": sampler.peak_mb(), "stdout": stdout}


class AnonSampler(threading.Thread):
    """The peak, over time, of the summed RssAnon of a process and its descendants (Linux /proc)."""

    def __init__(self, pid: int, every_s: float = 0.05):
        super().__init__(daemon=True)
        self.pid, self.every_s, self.peak_kb, self.done = pid, every_s, 0, threading.Event()

    def run(self) -> None:
        while not self.done.wait(self.every_s):
            self.peak_kb = max(self.peak_kb, sum(_anon_kb(p) for p in _tree(self.pid)))

    def stop(self) -> None:
        self.done.set()
        self.join()

    def peak_mb(self) -> float | None:
        return round(self.peak_kb / 1024, 1) if Path("/proc/self/status").exists() else None


def _tree(pid: int) -> list[int]:
    """pid and every descendant, from /proc/PID/task/*/children."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        for children in Path(f"/proc/{p}/task").glob("*/children"):
            try:
                todo.extend(int(c) for c in children.read_text().split())
            except OSError:
                pass
    return out


def _anon_kb(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def save(name: str, results: dict) -> None:
    BENCH_DIR.mkdir(exist_ok=True)
    results = {"machine": machine(), **results}
    (BENCH_DIR / f"{name}.json").write_text(json.dumps(results, indent=1) + "\n")
    print(f"\n[{name}] " + json.dumps(results, indent=1))


def machine() -> str:
    """The CPU model with its vector extensions (AVX2, AVX-512, bf16, AMX: bf16 speed depends on them), the CPUs
    this process may use, and Python: printed beside every benchmark figure."""
    import platform

    from pipelines.devices import available_cpus, cpu_description

    return f"{available_cpus()} CPUs of {os.cpu_count()}, {cpu_description()}, Python {platform.python_version()}"


PYTHON = sys.executable
