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
from .errors import DiskFullError, DistillError  # noqa: E402

# The sub-commands, in pipeline order: name -> (module under pipelines.stages, one-line help). Each module's
# `add_arguments(parser)` adds its options, and its docstring is the command's description.
COMMANDS = {
    "init": ("init", "write a commented run config for a task of your own (reads its columns)"),
    "augment": ("augment", "build the transfer set (originals + synthetic rows) from a task's split"),
    "finetune-teacher": ("finetune", "fine-tune a transformers encoder into the task's teacher"),
    "score": ("score", "add a teacher's logits to every row of a transfer set"),
    "train": ("train", "train a student (BiLSTM or transformer) on a scored set"),
    "eval": ("evaluate", "evaluate a trained student on a task's dev split(s)"),
    "run": ("run", "run the whole pipeline from a config (built-in name or YAML file)"),
    "clean": ("clean", "remove the work that stopped runs left under a directory"),
}


def _command_in(argv: list[str]) -> str | None:
    """The sub-command an argument list names (the first argument that is not an option), if any."""
    return next((a for a in argv if not a.startswith("-")), None)


def build_parser(argv: list[str] | None = None) -> argparse.ArgumentParser:
    """The `distill` parser. Given the arguments, only the command they name is built in full: importing a stage
    module is what costs time, so `distill --help` imports none and `distill train --help` only train's (whose
    heavy libraries load when it runs). Without them every command is built."""
    parser = argparse.ArgumentParser(
        prog="distill",
        description="Distil a fine-tuned BERT-family teacher into tiny BiLSTM students (Tang et al. 2019).",
    )
    parser.add_argument("--version", action="version", version=f"distill-pipelines {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log more, and show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    wanted = _command_in(argv) if argv is not None else None
    for name, (module_name, help_text) in COMMANDS.items():
        if argv is not None and name != wanted:
            sub.add_parser(name, help=help_text)  # listed in `distill --help`; never parsed
            continue
        module = importlib.import_module(f"pipelines.stages.{module_name}")
        p = sub.add_parser(name, help=help_text, description=module.__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        module.add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(levelname)s %(name)s: %(message)s")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    try:
        result = args.func(args)
    except DistillError as e:
        if args.verbose:
            raise
        print(f"distill {args.command}: error: {e}", file=sys.stderr)
        return 3 if isinstance(e, DiskFullError) else 2
    except KeyboardInterrupt:
        print(f"distill {args.command}: interrupted", file=sys.stderr)
        return 130
    print(result.summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
