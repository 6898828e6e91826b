"""One module per stage. Each exposes `add_arguments(parser)` for its `distill` sub-command (pipelines.cli names
the commands) and a `run(config)` function that writes one output directory and returns a `StageResult`. A stage
module imports torch, transformers and spaCy inside the functions that run, so `--help` answers at once."""

from __future__ import annotations


from dataclasses import dataclass
from pathlib import Path


@dataclass
class StageResult:
    """What a stage did: where its output is, whether it was a cache hit, and the one-line summary it prints."""

    out_dir: Path
    skipped: bool
    summary: str
