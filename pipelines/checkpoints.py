"""Resumable training: one checkpoint file per stage work directory, written atomically, tied to the stage's
fingerprint, holding the caller's state (weights, optimiser, schedule, counters) and every RNG, so a killed run
continues as if it had not stopped. Shared by the training loop (`training.resume`) and the teacher fine-tune."""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import DataError
from .store import replacing


def save(path: Path, fp: str, state: dict[str, Any], rng: np.random.Generator | None = None) -> None:
    """`state` and the RNGs (torch, CUDA, Python, and `rng`) under fingerprint `fp`; written to a temp file,
    fsynced and renamed, so the file is never half-written."""
    ckpt = {**state, "fingerprint": fp,
            "rng": {"torch": torch.get_rng_state(), "python": random.getstate(),
                    "numpy": rng.bit_generator.state if rng is not None else None,
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else None}}
    for stale in path.parent.glob(f".{path.name}.tmp-*"):  # a killed save's (the stage's lock keeps others out)
        stale.unlink(missing_ok=True)
    with replacing(path) as tmp:
        torch.save(ckpt, tmp)
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())


def load(path: Path, fp: str, rng: np.random.Generator | None = None) -> dict[str, Any]:
    """The state saved by `save` under fingerprint `fp`, with every RNG restored; a truncated, foreign or
    other configuration's file stops with its path and how to start over."""
    ckpt = read(path, fp)
    restore_rngs(ckpt, rng)
    return ckpt


def read(path: Path, fp: str) -> dict[str, Any]:
    """The state saved by `save` under fingerprint `fp`, RNGs not restored (`restore_rngs`), so that a caller can
    look at it first; stops as `load` does."""
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:
        raise DataError(f"cannot read the checkpoint ({e}); delete it to train from scratch", str(path)) from e
    if ckpt.get("fingerprint") != fp:
        raise DataError("the checkpoint belongs to another configuration; delete it to train from scratch",
                        str(path))
    return ckpt


def restore_rngs(ckpt: dict[str, Any], rng: np.random.Generator | None = None) -> None:
    """Set torch's, CUDA's, Python's and `rng`'s states to those `ckpt` saved."""
    saved = ckpt["rng"]
    torch.set_rng_state(saved["torch"])
    if saved.get("cuda") is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(saved["cuda"])
    if rng is not None and saved.get("numpy") is not None:
        rng.bit_generator.state = saved["numpy"]
    py = saved["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
