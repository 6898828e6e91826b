"""The `distill` command: one sub-command per stage (see DESIGN.md §5).

Every command prints a one-line summary at the end; a user error (bad data, bad config, a teacher that does
not fit the task, a missing model package) is printed as one clear line and exits with status 2.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import sys

# Before torch is imported (by the stage modules): OpenMP threads that spin while waiting burn the cores that
# other work on a shared batch machine needs; measured here, they made bf16 scoring up to 8x slower under
# load. A user's own setting wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from . import __version__  # noqa: E402
from .errors import DistillError  # noqa: E402

# Stage modules, in pipeline order; each adds its own sub-command.
STAGES = ("augment", "finetune", "score", "train", "evaluate", "run")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="distill",
        description="Distil a fine-tuned BERT-family teacher into tiny BiLSTM students (Tang et al. 2019).",
    )
    parser.add_argument("--version", action="version", version=f"distill-pipelines {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more, and show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in STAGES:
        importlib.import_module(f"pipelines.stages.{name}").add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        result = args.func(args)
    except DistillError as e:
        if args.verbose:
            raise
        print(f"distill {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"distill {args.command}: interrupted", file=sys.stderr)
        return 130
    print(result.summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
