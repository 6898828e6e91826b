"""What hardware this process may use and how it is named: the CPUs it may run on (affinity and cgroup quota),
the CPU's vector extensions, the device and precision choices. No torch here: the CLI's help imports this."""

from __future__ import annotations

import math
import os
from pathlib import Path

CGROUP_ROOT = Path("/sys/fs/cgroup")
DEVICES = ("auto", "cpu", "cuda")  # --device choices
DTYPE_NAMES = ("float32", "bf16", "fp16")  # --dtype choices of scoring (autocast; logits are float32 either way)
# Padded tokens per inference batch when none is given: on CPU, batches of 512-2,048 tokens keep MiniLM's
# activations in cache and measured fastest; a GPU needs large batches to fill its cores.
DEFAULT_BATCH_TOKENS = {"cpu": 2048, "cuda": 32_768}


def _cgroup_quota_cpus(root: Path = CGROUP_ROOT) -> float | None:
    """The CPU quota of this process's cgroup, in CPUs (cgroup v2 `cpu.max`, or v1 `cpu.cfs_*`); None if unset."""
    try:
        text = (root / "cpu.max").read_text().split()
        if text and text[0] != "max":
            return int(text[0]) / int(text[1])
    except (OSError, ValueError, IndexError):
        pass
    try:
        quota = int((root / "cpu" / "cpu.cfs_quota_us").read_text())
        period = int((root / "cpu" / "cpu.cfs_period_us").read_text())
        if quota > 0 and period > 0:
            return quota / period
    except (OSError, ValueError):
        pass
    return None


def available_cpus(root: Path = CGROUP_ROOT) -> int:
    """CPUs this process may use: its affinity mask, capped by the cgroup CPU quota (rounded up), at least 1.
    In a 2-CPU container on a 64-core host this is 2, where `os.cpu_count()` says 64."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cpus = os.cpu_count() or 1
    quota = _cgroup_quota_cpus(root)
    if quota is not None:
        cpus = min(cpus, max(1, math.ceil(quota)))
    return max(1, cpus)


def cpu_description(cpuinfo: Path = Path("/proc/cpuinfo")) -> str:
    """The CPU's model name and its vector extensions that decide model speed (AVX2, AVX-512, bf16, AMX), for
    every figure the tool reports: the same code runs several times faster on one CPU than on another."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        import platform

        return platform.processor() or platform.machine()
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")),
                 "unknown CPU")
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
    return f"{model} ({', '.join(f for f in wanted if f in flags) or 'no AVX2'})"
