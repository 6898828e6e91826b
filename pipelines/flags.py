"""Command-line flags derived from the config dataclasses: one source for each setting's name, type, default and
help (a YAML key of `distill run`, a `--flag` of its stage command, and a field of the stage's config are the same
thing). A field's help is `field(metadata={"help": ...})`; adding a setting is one line in its dataclass.

- `--name-with-dashes` for `name_with_dashes`; `metadata["flags"]` gives other spellings (the first is used).
- `bool` fields: `--name` when the default is False, `--no-name` when it is True (its help says it turns off).
- A field without a default is a required flag; `X | None` takes an X or stays None.
- `metadata["choices"]` restricts the values; `metadata["exclusive"]` puts the flag in a mutually exclusive
  group of that name, one of which is required.
- A field holding a dataclass (a nested group of settings, such as the augmentation recipe) contributes the flags
  of its own fields.
"""

from __future__ import annotations

import argparse
import dataclasses
import types
import typing
from pathlib import Path
from typing import Any


def setting(default: Any = dataclasses.MISSING, help: str = "", **metadata: Any) -> Any:
    """A dataclass field with its help (and optional flags, choices, exclusive group) for the command line."""
    return dataclasses.field(default=default, metadata={"help": help, **metadata})


def _plain_type(tp: Any) -> Any:
    """`X | None` -> X; other annotations unchanged."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if len(args) == 1 else str
    return tp


def _kwargs(f: dataclasses.Field, tp: Any) -> dict[str, Any]:
    """argparse keyword arguments for one field."""
    meta, default = f.metadata, f.default
    help_text = meta.get("help", "")
    if tp is bool:  # a --no-X flag turns off what the help of X describes
        help_text = f"turn off (on by default): {help_text}" if default is True and help_text else help_text
        return {"action": "store_false" if default is True else "store_true", "help": help_text, "dest": f.name}
    kwargs: dict[str, Any] = {"type": tp if tp in (int, float, Path) else str, "dest": f.name}
    if meta.get("choices"):
        kwargs["choices"] = tuple(meta["choices"])
    if default is dataclasses.MISSING:
        kwargs["required"] = "exclusive" not in meta
    else:
        kwargs["default"] = default
        if default is not None and "(default" not in help_text:
            help_text = f"{help_text} (default {default})" if help_text else f"default {default}"
    kwargs["help"] = help_text
    return kwargs


def _flag_names(f: dataclasses.Field, tp: Any) -> list[str]:
    if f.metadata.get("flags"):
        return list(f.metadata["flags"])
    name = f.name.replace("_", "-")
    return [f"--no-{name}" if tp is bool and f.default is True else f"--{name}"]


def add_flags(parser: argparse.ArgumentParser, cls: type, skip: tuple[str, ...] = (),
              groups: dict[str, Any] | None = None) -> None:
    """Add a flag for every field of dataclass `cls` (and of the dataclasses nested in it) not in `skip`."""
    hints = typing.get_type_hints(cls)
    groups = {} if groups is None else groups
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        tp = _plain_type(hints[f.name])
        if dataclasses.is_dataclass(tp):
            add_flags(parser, tp, skip, groups)
            continue
        target = parser
        if "exclusive" in f.metadata:
            name = f.metadata["exclusive"]
            if name not in groups:
                groups[name] = parser.add_mutually_exclusive_group(required=True)
            target = groups[name]
        target.add_argument(*_flag_names(f, tp), **_kwargs(f, tp))


def from_flags(cls: type, args: argparse.Namespace, **given: Any) -> Any:
    """An instance of `cls` from parsed flags; `given` values (such as the task) win over flags."""
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        if f.name in given:
            values[f.name] = given[f.name]
        elif dataclasses.is_dataclass(_plain_type(hints[f.name])):
            values[f.name] = from_flags(_plain_type(hints[f.name]), args, **given)
        elif hasattr(args, f.name):
            values[f.name] = getattr(args, f.name)
    return cls(**values)
