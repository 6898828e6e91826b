"""Command-line flags derived from the config dataclasses: one source for each setting's name, type, default and
help (a YAML key of `distill run`, a `--flag` of its stage command, and a field of the stage's config are the same
thing). A field's help is `field(metadata={"help": ...})`; adding a setting is one line in its dataclass.

- `--name-with-dashes` for `name_with_dashes`; `metadata["flags"]` gives other spellings (the first is used).
- `bool` fields: `--name` when the default is False, `--no-name` when it is True (its help says it turns off).
- A field without a default is a required flag; `X | None` takes an X or stays None.
- `metadata["choices"]` restricts the values; `metadata["exclusive"]` puts the flag in a mutually exclusive
  group of that name, one of which is required; `metadata["group"]` lists it under that heading in `--help`
  (a class's `HELP_GROUPS` orders the headings).
- `metadata["renamed"]` gives a setting's former names (as config keys: `max_len`): their flags (`--max-len`)
  and YAML keys still work, hidden from `--help`, with one warning naming the new name (`renamed_keys`).
- A field holding a dataclass (a nested group of settings, such as the augmentation recipe) contributes the flags
  of its own fields.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
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


_WARNED: set[str] = set()


def warn_renamed(old: str, new: str) -> None:
    """Say once per process that a former name of a setting was used."""
    if old not in _WARNED:
        _WARNED.add(old)
        print(f"distill: warning: {old} is now {new}; the old name still works but will be removed",
              file=sys.stderr)


class _FormerFlag(argparse.Action):
    """A setting's former flag: parsed as the new one (hidden from --help), with one warning."""

    def __init__(self, option_strings: list[str], dest: str, new: str = "", **kwargs: Any):
        super().__init__(option_strings, dest, **kwargs)
        self.new = new

    def __call__(self, parser, namespace, values, option_string=None) -> None:
        warn_renamed(option_string or self.option_strings[0], self.new)
        setattr(namespace, self.dest, values)


def renamed_keys(cls: type) -> dict[str, str]:
    """Former config keys of `cls`'s settings (nested dataclasses included) -> their current names."""
    hints = typing.get_type_hints(cls)
    out: dict[str, str] = {}
    for f in dataclasses.fields(cls):
        if dataclasses.is_dataclass(_plain_type(hints[f.name])):
            out.update(renamed_keys(_plain_type(hints[f.name])))
        out.update({old: f.name for old in f.metadata.get("renamed", ())})
    return out


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
    for title in getattr(cls, "HELP_GROUPS", ()):  # the headings in this order, whatever the fields' order
        _heading(parser, title, groups)
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        tp = _plain_type(hints[f.name])
        if dataclasses.is_dataclass(tp):
            add_flags(parser, tp, skip, groups)
            continue
        target = _group_of(parser, f, groups)
        names, kwargs = _flag_names(f, tp), _kwargs(f, tp)
        target.add_argument(*names, **kwargs)
        for old in f.metadata.get("renamed", ()):
            assert tp is not bool, f"{f.name}: a former name of a switch is not supported"
            former = {k: v for k, v in kwargs.items() if k in ("type", "choices", "dest")}
            parser.add_argument(f"--{old.replace('_', '-')}", action=_FormerFlag, new=names[0],
                                help=argparse.SUPPRESS, default=argparse.SUPPRESS, **former)


def _group_of(parser: argparse.ArgumentParser, f: dataclasses.Field, groups: dict[str, Any]) -> Any:
    """Where a field's flag goes: its mutually exclusive group, its `--help` heading, or the parser."""
    if "exclusive" in f.metadata:
        name = f.metadata["exclusive"]
        if name not in groups:
            groups[name] = parser.add_mutually_exclusive_group(required=True)
        return groups[name]
    if "group" in f.metadata:
        return _heading(parser, f.metadata["group"], groups)
    return parser


def _heading(parser: argparse.ArgumentParser, title: str, groups: dict[Any, Any]) -> Any:
    """The `--help` heading `title`, made the first time it is asked for."""
    if ("group", title) not in groups:
        groups[("group", title)] = parser.add_argument_group(title)
    return groups[("group", title)]


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
