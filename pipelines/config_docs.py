"""docs/configuration.md, generated from the config dataclasses (`python -m pipelines.config_docs > FILE`, or
`make docs`): every key of every section of a run config, with its command-line flag, default and meaning, from
the one source the flags and the YAML checker read. A test fails when the committed file is stale."""

from __future__ import annotations

import dataclasses
import json
import typing
from typing import Any

from . import config as run_config
from .flags import _flag_names, _plain_type

HEAD = """# Configuration reference

Generated from the config dataclasses by `make docs` (`python -m pipelines.config_docs`); do not edit by hand.
A run config (`distill run FILE`, started by `distill init`) has the top-level keys below and one section per
stage; each section's keys are the flags of that stage's command (`student.max_length` is `distill train
--max-length`). `--set section.key=value` overrides any of them. A default of "by family" or "by data size" is
resolved when the stage runs and recorded in its manifest.
"""
STAGE_OF = {"augment": "distill augment", "finetune": "distill finetune-teacher", "score": "distill score",
            "student": "distill train (the first family, bilstm by default)",
            "transformer": "distill train --family transformer"}


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _default(value: Any) -> str:
    """As YAML writes it (null: what the meaning says it resolves to)."""
    if value is dataclasses.MISSING:
        return "required"
    try:
        return f"`{json.dumps(value, ensure_ascii=False)}`"
    except TypeError:
        return f"`{value}`"


def key_rows(classes: tuple[type, ...]) -> list[tuple[str, str, str, str]]:
    """(key, flag, default, meaning) of every settable field of a section's dataclasses."""
    rows = []
    for cls in classes:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            tp = _plain_type(hints[f.name])
            if f.name in run_config.WIRED or dataclasses.is_dataclass(tp):
                continue
            flag = _flag_names(f, tp)[0]
            default = f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
            rows.append((f.name, flag, _default(default), f.metadata.get("help", "")))
    return rows


def _table(rows: list[tuple[str, ...]], header: tuple[str, ...]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    return out + ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]


def render() -> str:
    from .stages.run import SECTIONS

    lines = [HEAD, "## Top level", ""]
    top = [(f"`{k}`", _default(d), meaning) for k, (_, d, meaning) in run_config.TOP_LEVEL.items()]
    lines += _table(top, ("key", "default", "meaning")) + ["", "## `teacher`", ""]
    teacher = [(f"`{k}`", _default(d), meaning) for k, (_, d, meaning) in run_config.TEACHER_KEYS.items()]
    lines += _table(teacher, ("key", "default", "meaning"))
    for section, classes in SECTIONS.items():
        lines += ["", f"## `{section}`", "", f"The settings of `{STAGE_OF.get(section, section)}`.", ""]
        rows = [(f"`{k}`", f"`{flag}`", d, m) for k, flag, d, m in key_rows(classes)]
        lines += _table(rows, ("key", "flag", "default", "meaning"))
    renamed = {old: new for classes in SECTIONS.values() for cls in classes
               for old, new in run_config.renamed_keys(cls).items()} | run_config.TOP_LEVEL_RENAMED
    lines += ["", "## Former names", "", "Still read, with a warning; use the current name.", ""]
    lines += _table([(f"`{o}`", f"`{n}`") for o, n in sorted(renamed.items())], ("former", "current"))
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(render(), end="")
