"""What hardware this process may use and how it is named: the CPUs it may run on (affinity and cgroup quota),
the CPU's vector extensions, the device and precision choices, and the torch side of those choices (resolving a
device name, autocast, CPU threads). No torch at import time: the CLI's help imports this, so the functions that
need torch import it where they run. Both the teacher and the student code use these helpers."""

from __future__ import annotations

import contextlib
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ConfigError

if TYPE_CHECKING:
    import torch

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


# ----------------------------------------------------------------------------------------------- torch devices

def resolve_device(name: str) -> torch.device:
    """The torch device for a --device name; `auto` is CUDA when torch sees a GPU."""
    import torch

    if name not in DEVICES:
        raise ConfigError(f"device must be one of {', '.join(DEVICES)}, got '{name}'")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device cuda, but torch {torch.__version__} sees no CUDA device; use --device cpu")
    return torch.device(name)


def default_batch_tokens(device: torch.device) -> int:
    return DEFAULT_BATCH_TOKENS.get(device.type, DEFAULT_BATCH_TOKENS["cpu"])


def torch_dtype(name: str) -> torch.dtype | None:
    """The autocast dtype of a --dtype name: None for float32 (no autocast), else bfloat16 or float16."""
    import torch

    dtypes = dict(zip(DTYPE_NAMES, (None, torch.bfloat16, torch.float16)))
    if name not in dtypes:
        raise ConfigError(f"dtype must be one of {', '.join(DTYPE_NAMES)}, got '{name}'")
    return dtypes[name]


def autocast_dtype(dtype: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for a --dtype name (None: plain float32). fp16 is a GPU format: on CPU it is slow."""
    amp_dtype = torch_dtype(dtype)
    if dtype == "fp16" and device.type != "cuda":
        raise ConfigError("dtype fp16 needs a CUDA device; on CPU use bf16 or float32")
    return amp_dtype


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    import torch

    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def set_cpu_threads() -> int:
    """One torch thread per physical core we may run on: hyper-threads only add contention to matmuls. A user
    who set OMP_NUM_THREADS (e.g. to share the machine) keeps that choice."""
    import psutil
    import torch

    if os.environ.get("OMP_NUM_THREADS", "").isdigit() and int(os.environ["OMP_NUM_THREADS"]) > 0:
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
        return torch.get_num_threads()
    cores = psutil.cpu_count(logical=False) or os.cpu_count() or 1
    with contextlib.suppress(AttributeError):
        cores = min(cores, len(os.sched_getaffinity(0)))
    torch.set_num_threads(max(1, cores))
    return torch.get_num_threads()


@contextlib.contextmanager
def torch_threads(n: int | None) -> Iterator[None]:
    """Run with `n` torch CPU threads (None: leave as is), restoring the previous count afterwards."""
    import torch

    before = torch.get_num_threads()
    if n:
        torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
