"""What hardware this process may use and how it is named: the CPUs it may run on (affinity and cgroup quota),
the CPU's vector extensions, the device and precision choices, and the torch side of those choices (resolving a
device name, autocast, CPU threads). No torch at import time: the CLI's help imports this, so the functions that
need torch import it where they run. Both the teacher and the student code use these helpers."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ConfigError

log = logging.getLogger(__name__)

if TYPE_CHECKING:
    import torch

CGROUP_ROOT = Path("/sys/fs/cgroup")
DEVICES = ("auto", "cpu", "cuda")  # --device choices
# Compute precisions of scoring (logits are float32 either way): bf16 and fp16 by autocast over weights cast once,
# int8 by dynamically quantised linear layers (CPU only).
DTYPE_NAMES = ("float32", "bf16", "fp16", "int8")
DTYPE_CHOICES = ("auto", *DTYPE_NAMES)  # --dtype: auto picks one per device (resolve_dtype)
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


CPUINFO = Path("/proc/cpuinfo")
NATIVE_BF16_FLAGS = ("avx512_bf16", "amx_bf16")  # CPU instructions that compute bf16 matmuls natively


def _cpuinfo_field(name: str, cpuinfo: Path) -> str | None:
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return None
    return next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith(name)), None)


def cpu_flags(cpuinfo: Path = CPUINFO) -> frozenset[str]:
    """The CPU's feature flags (empty where /proc/cpuinfo cannot be read)."""
    return frozenset((_cpuinfo_field("flags", cpuinfo) or "").split())


def cpu_description(cpuinfo: Path = CPUINFO) -> str:
    """The CPU's model name and its vector extensions that decide model speed (AVX2, AVX-512, bf16, AMX), for
    every figure the tool reports: the same code runs several times faster on one CPU than on another."""
    model = _cpuinfo_field("model name", cpuinfo)
    if model is None:
        import platform

        return platform.processor() or platform.machine()
    flags = cpu_flags(cpuinfo)
    wanted = ("avx2", "avx512f", "avx512_bf16", "amx_bf16")
    return f"{model} ({', '.join(f for f in wanted if f in flags) or 'no AVX2'})"


_warned: set[str] = set()


def resolve_dtype(name: str, device_type: str, *, flags: frozenset[str] | None = None,
                  cuda_bf16: bool | None = None) -> str:
    """The compute precision a --dtype name means on this device. `auto`: bf16 on CUDA devices that support it
    (fp16 on older ones); on a CPU bf16 only with native bf16 instructions (AVX512-BF16 or AMX), float32
    otherwise: on an AVX2-only CPU bf16 is emulated, and scoring ran about 5x slower than float32. An explicit
    bf16 there is honoured, with one warning saying why it is slow."""
    if name not in DTYPE_CHOICES:
        raise ConfigError(f"dtype must be one of auto, {', '.join(DTYPE_NAMES)}, got '{name}'")
    if device_type == "cuda":
        if name == "int8":
            raise ConfigError("dtype int8 (dynamically quantised linear layers) is a CPU path; on a GPU use auto, "
                              "bf16 or fp16")
        if name != "auto":
            return name
        if cuda_bf16 is None:
            import torch

            cuda_bf16 = torch.cuda.is_bf16_supported()
        return "bf16" if cuda_bf16 else "fp16"
    native = any(f in (cpu_flags() if flags is None else flags) for f in NATIVE_BF16_FLAGS)
    if name == "auto":
        return "bf16" if native else "float32"
    if name == "bf16" and not native and "bf16" not in _warned:
        _warned.add("bf16")
        log.warning("--dtype bf16 on a CPU without native bf16 instructions (%s): bf16 is emulated there and "
                    "runs several times slower than float32; --dtype auto picks float32 on this CPU",
                    cpu_description())
    return name


# ----------------------------------------------------------------------------------------------- torch devices

def resolve_device(name: str) -> torch.device:
    """The torch device for a --device name; `auto` is CUDA when torch sees a GPU."""
    import torch

    if name not in DEVICES and not re.fullmatch(r"cuda:\d+", name):  # cuda:N: one of several GPUs
        raise ConfigError(f"device must be one of {', '.join(DEVICES)}, got '{name}'")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device cuda, but torch {torch.__version__} sees no CUDA device; use --device cpu")
    return torch.device(name)


def default_batch_tokens(device: torch.device) -> int:
    return DEFAULT_BATCH_TOKENS.get(device.type, DEFAULT_BATCH_TOKENS["cpu"])


def torch_dtype(name: str) -> torch.dtype | None:
    """The autocast dtype of a --dtype name: None for float32 and int8 (no autocast), else bfloat16 or float16."""
    import torch

    dtypes = dict(zip(DTYPE_NAMES, (None, torch.bfloat16, torch.float16, None)))
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


def set_cpu_threads(threads: int | None = None) -> int:
    """`threads` torch threads when given (a share of the cores, for one of several processes); else one per
    physical core we may run on: hyper-threads only add contention to matmuls. A user who set OMP_NUM_THREADS
    (e.g. to share the machine) keeps that choice."""
    import psutil
    import torch

    if threads:
        torch.set_num_threads(threads)
        return torch.get_num_threads()
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
