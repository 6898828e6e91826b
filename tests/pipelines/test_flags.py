"""Command-line flags come from the config dataclasses: one source for names, types, defaults and help."""

from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

import pytest

from pipelines.cli import COMMANDS, build_parser
from pipelines.flags import add_flags, from_flags, setting


@dataclasses.dataclass
class Inner:
    rate: float = setting(0.5, help="a rate")


@dataclasses.dataclass
class Toy:
    out: Path = setting(help="where")
    count: int = setting(3, help="how many")
    name: str | None = setting(None, help="a name")
    fast: bool = setting(False, help="go fast")
    tidy: bool = setting(True, help="tidy up")
    kind: str = setting("a", help="which", choices=("a", "b"))
    inner: Inner = dataclasses.field(default_factory=Inner)


def test_a_dataclass_field_is_a_flag_with_its_type_default_and_help():
    parser = argparse.ArgumentParser()
    add_flags(parser, Toy)
    args = parser.parse_args(["--out", "x", "--count", "7", "--fast", "--no-tidy", "--rate", "0.25"])
    toy = from_flags(Toy, args)
    assert toy == Toy(out=Path("x"), count=7, name=None, fast=True, tidy=False, kind="a", inner=Inner(0.25))
    assert from_flags(Toy, parser.parse_args(["--out", "y"])) == Toy(out=Path("y"))
    text = parser.format_help()
    assert "how many (default 3)" in text and "--no-tidy" in text and "{a,b}" in text
    with pytest.raises(SystemExit):
        parser.parse_args(["--count", "2"])  # --out has no default: required
    with pytest.raises(SystemExit):
        parser.parse_args(["--out", "x", "--kind", "c"])


CONFIGS = {"augment": "AugmentConfig", "finetune-teacher": "FinetuneConfig", "score": "ScoreConfig",
           "train": "TrainConfig", "eval": "EvalConfig"}


@pytest.mark.parametrize("command", list(CONFIGS))
def test_every_stage_setting_has_a_flag_with_help_and_the_dataclass_default(command):
    import importlib

    module = importlib.import_module(f"pipelines.stages.{COMMANDS[command][0]}")
    config = getattr(module, CONFIGS[command])
    parser = build_parser([command])
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
    actions = {a.dest: a for a in sub._actions if a.help != argparse.SUPPRESS}  # former names are hidden
    nested = [f for f in dataclasses.fields(config) if dataclasses.is_dataclass(f.default_factory)
              if f.default_factory is not dataclasses.MISSING]
    fields = [f for f in dataclasses.fields(config) if f.name not in ("task", "data") and f not in nested]
    for inner in nested:
        fields += dataclasses.fields(inner.default_factory)
    for f in fields:
        assert f.name in actions, f"{command}: no flag for {f.name}"
        assert f.metadata.get("help"), f"{command}: {f.name} has no help"
        if f.default is not dataclasses.MISSING and f.type != "bool":
            assert actions[f.name].default == f.default, f.name


def test_a_former_name_still_parses_as_the_new_one_hidden_and_warned_once(capsys):
    from pipelines import flags

    flags._WARNED.clear()
    parser = build_parser(["train"])
    args = parser.parse_args(["train", "--scored", "s", "--out", "o", "--max-len", "64", "--clip", "2.5",
                              "--warmup", "0.2", "--student", "transformer", "--max-len", "32"])
    assert (args.max_length, args.grad_clip, args.warmup_ratio, args.family) == (32, 2.5, 0.2, "transformer")
    err = capsys.readouterr().err
    assert err.count("--max-len is now --max-length") == 1 and "--clip is now --grad-clip" in err
    assert "--student is now --family" in err
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["train"]
    shown = sub.format_help()
    assert "--max-length" in shown and "--max-len " not in shown and "--clip " not in shown
    score = build_parser(["score"]).parse_args(["score", "--teacher", "t", "--out", "o", "--input", "x.csv",
                                                "--text-col", "body"])
    assert score.input_col == "body" and "--text-col is now --input-col" in capsys.readouterr().err


def test_one_name_per_setting_across_the_commands():
    """The settings shared by the teacher's fine-tune, scoring and the students have the same flag in each."""
    names = {}
    for command in ("finetune-teacher", "score", "train"):
        parser = build_parser([command])
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
        names[command] = {o for a in sub._actions if a.help != argparse.SUPPRESS for o in a.option_strings}
    for flag in ("--max-length", "--grad-clip", "--batch-size", "--seed", "--device"):
        assert all(flag in names[c] for c in ("finetune-teacher", "train")), flag
    assert "--max-length" in names["score"]
    assert "--warmup-ratio" in names["finetune-teacher"] and "--warmup-ratio" in names["train"]
    for former in ("--max-len", "--clip", "--warmup", "--student"):
        assert former not in names["train"]


def test_train_help_is_grouped_by_what_the_settings_are_for():
    parser = build_parser(["train"])
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["train"]
    groups = {g.title: {o for a in g._group_actions for o in a.option_strings} for g in sub._action_groups}
    assert "--layers" in groups["transformer only"] and "--hidden" in groups["BiLSTM only"]
    assert "--drop-rule" in groups["filters and ablations"] and "--select-on" in groups["selection of the best epoch"]
    assert "--task" in groups["task: read from --scored, give these only to check or move it"]
    assert {"--device", "--threads"} <= groups["runtime"] and "--family" in groups["student and loss"]
    titles = [g.title for g in sub._action_groups]
    assert titles.index("transformer only") < titles.index("runtime")


def test_seeds_are_a_list_and_a_bare_number_is_the_former_count(capsys):
    from pipelines import flags
    from pipelines.student.config import TrainConfig
    from pipelines.tasks import get_task

    flags._WARNED.clear()
    base = dict(scored=Path("s"), task=get_task("demo"), out=Path("o"), seed=3)
    assert TrainConfig(**base, seeds="0,1,2").seeds == (0, 1, 2)
    assert TrainConfig(**base, seeds="7,").seeds == (7,)
    assert TrainConfig(**base, seeds="2").seeds == (3, 4) and "--seeds 3,4" in capsys.readouterr().err
    with pytest.raises(Exception, match="seeds as 0,1,2"):
        TrainConfig(**base, seeds="a,b")
