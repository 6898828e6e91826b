"""The `distill` command itself: help answers without loading the heavy libraries; every command is listed."""

from __future__ import annotations

import subprocess
import sys

import pytest

from pipelines.cli import COMMANDS, build_parser

HEAVY = ("torch", "transformers", "spacy", "datasets", "nltk", "onnxruntime")
_PROBE = """
import sys
from pipelines.cli import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print("LOADED:" + ",".join(sorted(m for m in {heavy!r} if m in sys.modules)))
"""


@pytest.mark.parametrize("argv", [["--help"], *([name, "--help"] for name in COMMANDS)])
def test_help_imports_no_heavy_library(argv):
    probe = _PROBE.format(heavy=HEAVY)
    out = subprocess.run([sys.executable, "-c", probe, *argv], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    loaded = out.stdout.strip().splitlines()[-1]
    assert loaded == "LOADED:", f"`distill {' '.join(argv)}` imported {loaded}"


def test_top_level_help_lists_every_command(capsys):
    with pytest.raises(SystemExit):
        build_parser(["--help"]).parse_args(["--help"])
    text = capsys.readouterr().out
    for name, (_, help_text) in COMMANDS.items():
        assert name in text and help_text[:30] in text


def test_a_command_is_parsed_in_full_only_when_named():
    args = build_parser(["train", "--scored", "s", "--out", "o", "--task", "sst2"]).parse_args(
        ["train", "--scored", "s", "--out", "o", "--task", "sst2"])
    # batch_size None: the family's default (64 for a BiLSTM, 32 for a transformer), resolved by the stage
    assert args.command == "train" and args.batch_size is None and args.hard_labels == "gold"


@pytest.mark.parametrize("command", ["augment", "finetune-teacher", "score", "train", "eval", "run"])
def test_help_says_what_a_left_out_setting_means_and_what_a_no_flag_turns_off(command, capsys):
    with pytest.raises(SystemExit):
        build_parser([command, "--help"]).parse_args([command, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "None:" not in text  # a value nobody can type
    if command == "train":
        assert "--no-lowercase turn off (on by default): lower-case text before tokenising" in text
