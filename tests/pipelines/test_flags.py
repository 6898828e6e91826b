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
    actions = {a.dest: a for a in sub._actions}
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
