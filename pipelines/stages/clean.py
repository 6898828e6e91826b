"""`distill clean DIR [--dry-run]`: remove the work that stopped runs left under DIR.

A stage stopped mid-way (killed, interrupted, out of disk) keeps its work beside its output, in a directory
named `.OUTPUT.partial-KEY` after the fingerprint of its settings, and a stage started again with other
settings keeps it too: it resumes when those settings come back. This command removes them: every such
directory under DIR (DIR itself included) that this tool made (it holds its marker or its manifest), and only
those, skipping any whose output a running stage holds the lock of. Finished outputs are never touched.
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from .. import store
from ..errors import DistillError
from . import StageResult


def work_dirs(root: Path) -> list[Path]:
    """This tool's work directories under `root` (and beside it, for `root`'s own output), not inside another."""
    stack = [root]
    candidates = store.other_work(root) if root.parent != root else []
    while stack:
        here = stack.pop()
        for child in sorted(here.iterdir()):
            if not child.is_dir() or child.is_symlink():
                continue
            (candidates if ".partial-" in child.name and child.name.startswith(".") else stack).append(child)
    return [w for w in sorted(candidates) if w.is_dir() and not w.is_symlink() and store.is_own_work(w)]


def clean(root: Path, dry_run: bool = False) -> tuple[list[Path], list[Path], int]:
    """Remove (or, with `dry_run`, list) the work directories under `root`: (removed, busy, bytes)."""
    if not root.is_dir():
        raise DistillError(f"{root}: no such directory")
    removed, busy, size = [], [], 0
    for w in work_dirs(root):
        try:
            with store.output_lock(store.output_of(w)):  # a stage writing that output holds its lock
                bytes_ = store.size_of(w)
                if not dry_run:
                    shutil.rmtree(w)
        except DistillError:
            busy.append(w)
            continue
        removed.append(w)
        size += bytes_
    return removed, busy, size


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("dir", type=Path, metavar="DIR", help="a run directory, a stage output, or a folder of them")
    p.add_argument("--dry-run", action="store_true", help="list what would be removed, remove nothing")
    p.set_defaults(func=_from_args)


def _from_args(args: argparse.Namespace) -> StageResult:
    removed, busy, size = clean(args.dir, args.dry_run)
    verb = "would remove" if args.dry_run else "removed"
    lines = [f"  {w}" for w in removed] + [f"  {w} (in use by a running stage: kept)" for w in busy]
    summary = (f"clean: {verb} {len(removed)} work director{'y' if len(removed) == 1 else 'ies'} of stopped runs "
               f"({size / 1e6:,.1f} MB) under {args.dir}" + (f"; {len(busy)} in use, kept" if busy else ""))
    return StageResult(args.dir, args.dry_run, "\n".join([*lines, summary]))
