"""Benchmarks (`make bench`): real data, whole processes, numbers printed and saved under .bench/."""

from __future__ import annotations

import json
import os
import subprocess
import sys
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
    """Run a whole process; its wall time and peak resident memory (children included, via GNU time)."""
    t0 = time.perf_counter()
    cmd = ["/usr/bin/time", "-f", "MAXRSS_KB=%M"] + argv if Path("/usr/bin/time").exists() else argv
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **(env or {})})
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(argv)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    rss = [line for line in proc.stderr.splitlines() if line.startswith("MAXRSS_KB=")]
    return {"wall_s": round(wall, 2), "peak_rss_mb": round(int(rss[-1].split("=")[1]) / 1024, 1) if rss else None,
            "stdout": proc.stdout}


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
