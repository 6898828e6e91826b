"""Shared fixtures: where the GLUE data and reference teacher live, and an offline, sandboxed environment."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(autouse=True)
def _offline_and_sandboxed(tmp_path_factory, monkeypatch):
    """No hub access, and every library cache inside pytest's temp dir (datasets' conftest does the same)."""
    cache = tmp_path_factory.getbasetemp() / "hf-cache"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(cache))
    monkeypatch.setenv("TOKENIZERS_PARALLELISM", "false")
    monkeypatch.setenv("DISTILL_CACHE", str(tmp_path_factory.getbasetemp() / "distill-cache"))


def _shared(*parts: str) -> Path:
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is not present (the shared GLUE data and teacher sit beside the repository in CI)")
    return path


@pytest.fixture(scope="session")
def sst2_dir() -> Path:
    return _shared("data", "glue", "SST-2")


@pytest.fixture(scope="session")
def mrpc_dir() -> Path:
    return _shared("data", "glue", "MRPC")


@pytest.fixture(scope="session")
def reference_teacher() -> Path:
    return _shared("teachers", "minilm-sst2")


@pytest.fixture(scope="session")
def demo_dir() -> Path:
    return REPO / "data" / "demo"


