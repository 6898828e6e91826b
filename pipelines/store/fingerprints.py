"""Fingerprints: the hashes that say which inputs and settings made a stage output.

Fingerprints hash declared data (canonical JSON of configs, file hashes), never live Python objects, so the same
inputs give the same fingerprint in any process, on any machine.
"""

from __future__ import annotations

import hashlib
import json
from importlib import metadata
from pathlib import Path
from typing import Any


def canonical_json(obj: Any) -> str:
    """JSON with sorted keys and no whitespace: the one byte form of a config that fingerprints hash."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=json_default)


def json_default(obj: Any) -> Any:
    """What JSON makes of the values a config may hold beyond its own types (paths, numpy scalars); anything
    else is refused, so a live object never slips into a fingerprint."""
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    raise TypeError(f"cannot fingerprint a {type(obj).__name__}: pass declared data (str, int, float, lists, dicts)")


def fingerprint(*parts: Any) -> str:
    """sha256 over the canonical JSON of the parts; 64 hex characters."""
    return hashlib.sha256(canonical_json(list(parts)).encode("utf-8")).hexdigest()


def hash_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def hash_files(paths: list[str | Path], root: str | Path | None = None) -> str:
    """One sha256 over several files: each file's relative name and content hash, in sorted name order."""
    entries = []
    for p in paths:
        name = str(Path(p).relative_to(root)) if root is not None else Path(p).name
        entries.append((name, hash_file(p)))
    return fingerprint(sorted(entries))


def hash_path(path: str | Path) -> str:
    """sha256 of a file, or of every file under a directory (names and contents)."""
    path = Path(path)
    if path.is_dir():
        return hash_files(sorted(p for p in path.rglob("*") if p.is_file()), root=path)
    return hash_file(path)


# Packages whose versions change a model stage's numbers (kernels, tokenisation): part of those fingerprints.
RESULT_PACKAGES = ("torch", "transformers", "tokenizers")


def result_versions(names: tuple[str, ...] = RESULT_PACKAGES) -> dict[str, str | None]:
    """Installed versions of `names` (None where one is missing), for a stage's fingerprint: a finished output
    made with another torch or tokenizers is not reused, as its numbers may differ."""
    versions: dict[str, str | None] = {}
    for name in names:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions
