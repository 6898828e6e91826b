"""`distill init [TEMPLATE] [--data DIR] [--out FILE]`: a commented run config to start a task of one's own from.

As `spacy init config` does: the template (the custom-template by default, or any built-in config or YAML file),
and for a data directory the text, pair and label columns proposed from its train split (the header and the
values), with its rows and labels counted in a comment. Settings whose default depends on the data (the
teacher's epochs, the draws per example) stay out, so that the defaults size them. The config is checked as
`distill run` checks it before it is written, to stdout or to --out FILE (never over an existing file).
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

from .. import config as run_config
from ..errors import ConfigError
from ..store import replacing
from ..tasks import TASKS, find_split_file
from ..tasks.columns import Proposal, propose_columns, read_columns
from . import StageResult

DEFAULT_TEMPLATE = "custom-template"


def set_key(text: str, key: str, value: str) -> str:
    """The top-level `key:` line of a YAML text with its value replaced, its comment kept (a no-op without it)."""
    pattern = re.compile(rf"^{re.escape(key)}:([ \t]*[^#\n]*?)([ \t]*)(#.*)?$", re.MULTILINE)

    def line(m: re.Match) -> str:  # the comment stays in its column where the new value leaves room
        if not m.group(3):
            return f"{key}: {value}"
        width = len(key) + 1 + len(m.group(1)) + len(m.group(2))
        return f"{key}: {value}".ljust(width - 1) + " " + m.group(3)

    return pattern.sub(line, text, count=1)


def task_name(data: Path) -> str:
    """A task name from the data directory's name (never one of the built-in tasks')."""
    name = re.sub(r"[^a-z0-9]+", "-", data.resolve().name.lower()).strip("-") or "my-task"
    return f"{name}-task" if name in TASKS else name


def data_settings(data: Path) -> tuple[dict[str, str], list[str]]:
    """The top-level settings proposed for a data directory, and the comment lines that say what was found."""
    train = find_split_file(data, "train")
    p: Proposal = propose_columns(read_columns(train), str(train))
    name = task_name(data)
    values = {"task": name, "data": json.dumps(str(data)), "text_col": json.dumps(p.text_col),
              "text_pair_col": json.dumps(p.pair_col) if p.pair_col else "null",
              "label_col": json.dumps(p.label_col) if p.label_col else "null",
              "labels": "[" + ", ".join(json.dumps(v) for v in p.label_counts) + "]" if p.label_counts else "null",
              "out": json.dumps(f"runs/{name}")}
    texts = " and ".join(f"'{c}' ({n:g} characters on average)" for c, n in p.mean_chars.items())
    found = [f"{train.name}: {p.rows:,} rows; text {texts}",
             f"label column '{p.label_col}', {len(p.label_counts)} values: "
             + ", ".join(f"{v} ({n:,})" for v, n in p.label_counts.items()) if p.label_col else
             "no label column found: set label_col"]
    try:
        dev = find_split_file(data, "dev")
        found.append(f"{dev.name}: {len(next(iter(read_columns(dev).values()), [])):,} rows (the dev split)")
    except Exception as e:  # noqa: BLE001 - said in the config, not raised: init only proposes
        found.append(f"no dev split: {e}")
    if len(p.label_counts) == 1:
        found.append("only one label value in train: a classifier needs two or more")
    return values, found


def render(template: str, data: Path | None) -> str:
    """The config text: the template with the data's settings and a comment of what was found."""
    text = template
    if data is None:
        return text
    values, found = data_settings(data)
    for key, value in values.items():
        text = set_key(text, key, value)
    head = [f"# Made by `distill init --data {data}`: check the proposed columns below, then run it with", "#",
            "#   distill run THIS_FILE", "#", "# What the data holds:"] + [f"#   {line}" for line in found]
    body = text.split("\n")
    while body and body[0].startswith("#"):  # the template's own introduction: replaced by what was found
        body.pop(0)
    return "\n".join(head) + "\n" + "\n".join(body)


def check(text: str, name: str) -> None:
    """Validate as `distill run` would (every problem at once), so init never writes a config run refuses."""
    import yaml

    from .run import SECTIONS

    run_config.validate(yaml.safe_load(text) or {}, name, SECTIONS)


def run(template: str, data: Path | None, out: Path | None) -> StageResult:
    text = render(run_config.find_config(template).read_text("utf-8"), data)
    check(text, out.stem if out else "init")
    if out is None:
        return StageResult(Path("-"), False, text.rstrip("\n"))
    if out.exists():
        raise ConfigError(f"[out] {out} exists; init never writes over a file: pass another --out, or delete it")
    out.parent.mkdir(parents=True, exist_ok=True)
    with replacing(out) as tmp:
        tmp.write_text(text, "utf-8")
    return StageResult(out, False, f"init: wrote {out}; check its columns, then: distill run {out}")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("template", nargs="?", default=DEFAULT_TEMPLATE, metavar="TEMPLATE",
                   help=f"a built-in config ({', '.join(run_config.builtin_configs())}) or a YAML file "
                        f"(default {DEFAULT_TEMPLATE})")
    p.add_argument("--data", type=Path, default=None, metavar="DIR",
                   help="your task's directory (train.* and dev.* files): its columns, rows and labels fill in "
                        "the task settings")
    p.add_argument("--out", type=Path, default=None, metavar="FILE", help="write here (default: standard output)")
    p.set_defaults(func=lambda args: run(args.template, args.data, args.out))
