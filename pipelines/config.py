"""Run configs: YAML (safe loader only) → validated, typed settings for every stage of `distill run`.

A config names the task and data, then one section per stage whose keys are exactly the fields of that stage's
config dataclass (so the CLI flags, the YAML keys and the manifests share one vocabulary). `--set a.b=value`
overrides any key; values are parsed as YAML scalars. Unknown keys and wrong types are all reported at once,
each with its key path.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError
from .flags import renamed_keys, warn_renamed

BUILTIN_DIR = Path(__file__).resolve().parent / "configs"

# Top-level keys: name -> (type, default, meaning).
TOP_LEVEL: dict[str, tuple[Any, Any, str]] = {
    "task": (str, None, "built-in task name, or a name for a generic task (with text_col)"),
    "data": (str | None, None, "directory with the task's train and dev files"),
    "text_col": (str | None, None, "generic tasks: text column"),
    "text_pair_col": (str | None, None, "generic tasks: second text column of pairs"),
    "label_col": (str, "label", "generic tasks: label column"),
    "labels": (list[str] | None, None, "generic tasks: label values in id order"),
    "out": (str | None, None, "run directory (default runs/<config name>)"),
    "unlabelled": (str | None, None, "unlabelled in-domain text augmented beside the training split (a text per "
                                     "line, or the input_col column of a CSV/TSV/JSONL/Parquet file)"),
    "input_col": (str, "text", "unlabelled: the column holding the text"),
    "seed": (int, 0, "seed of every stage"),
    "seeds": (list[int] | None, None, "the students' seeds: a student of each family (and a baseline) per seed, "
                                      "side by side where they fit; the report gives mean ± sample std; default "
                                      "[seed]"),
    "baseline": (bool, True, "also train the student without distillation, for the report"),
    "select_on": (str, "holdout", "where every student's best epoch and the fine-tuned teacher's best checkpoint "
                                  "are chosen: holdout (one in 20 training examples, left out of training) or dev"),
    "ablate": (list[str], [], "ablations trained from the one scored set (the first family, distilled, every seed): "
                              "rules (without each rule's rows; originals only) and/or size (1, 5, 10, 20 draws)"),
    "students": (list[str], ["bilstm"], "student families to train: bilstm, transformer (the transformer section)"),
    "engine": (str, "local", "where augmentation and scoring run: local or ray"),
    "ray_address": (str | None, None, "engine ray: the running cluster to join (HOST:PORT); default a local instance"),
    "workers": (int, 0, "worker processes or Ray actors of augmentation and scoring; 0: the stage's default"),
}
RENAMED = object()  # the type slot of a former key in a section's schema (`_fields`)
TOP_LEVEL_RENAMED = {"unlabelled_col": "input_col"}
# Fields of the stage configs that the runner wires itself (inputs and outputs), not settable in a section.
WIRED = {"task", "out", "data", "transfer", "scored", "input", "teacher", "model", "seed", "text_col",
         "text_pair_col", "label_col", "labels", "baseline", "engine", "ray_address", "workers", "student",
         "select_on", "seeds", "input_col"}


# A run config's stage sections: section name -> the config dataclasses whose fields it sets. The run stage
# (pipelines/stages/run.py) passes its own table, so this module knows no stage.
Sections = dict[str, tuple[type, ...]]


# The teacher section: a fine-tuned model to use as is, or a backbone to fine-tune first.
TEACHER_KEYS: dict[str, tuple[Any, Any, str]] = {
    "model": (str | None, None, "fine-tuned teacher directory or hub id; with finetune: true, the backbone"),
    "finetune": (bool, False, "fine-tune `model` (default: the MiniLM-L6 package) on the task first"),
    "force": (bool, False, "score and distil a fine-tuned teacher even when it learnt nothing (its holdout "
                           "metric no better than predicting one class, or Matthews correlation about 0)"),
}


def _type_name(tp: Any) -> str:
    if isinstance(tp, type):
        return tp.__name__
    return str(tp).replace("typing.", "").replace("pathlib.", "")


def _check(value: Any, tp: Any, path: str, problems: list[str]) -> Any:
    """`value` checked (and lightly coerced: int → float, str → Path) against the annotation `tp`."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return _check_union(value, tp, path, problems)
    if origin is list:
        (item,) = typing.get_args(tp) or (Any,)
        if not isinstance(value, list):
            problems.append(f"[{path}] expected a list, got {value!r}")
            return value
        return [_check(v, item, f"{path}[{i}]", problems) for i, v in enumerate(value)]
    return _check_scalar(value, tp, path, problems)


def _check_union(value: Any, tp: Any, path: str, problems: list[str]) -> Any:
    """`X | None` takes None or an X (with X's own problems); a wider union takes the first that fits."""
    args = typing.get_args(tp)
    if value is None and type(None) in args:
        return None
    options = [arg for arg in args if arg is not type(None)]
    if len(options) == 1:
        return _check(value, options[0], path, problems)
    for arg in options:
        sub: list[str] = []
        out = _check(value, arg, path, sub)
        if not sub:
            return out
    problems.append(f"[{path}] expected {_type_name(tp)}, got {value!r}")
    return value


def _check_scalar(value: Any, tp: Any, path: str, problems: list[str]) -> Any:
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            problems.append(f"[{path}] expected true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            problems.append(f"[{path}] expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 3e-5 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            problems.append(f"[{path}] expected a number, got {value!r}")
            return value
        return float(value)
    if tp is str:
        if isinstance(value, bool):
            problems.append(f"[{path}] expected a string, got {value!r} (YAML reads unquoted yes/no/on/off as "
                            "true/false: quote the value)")
        elif not isinstance(value, str):
            problems.append(f"[{path}] expected a string, got {value!r}")
        return value
    if tp is Path:
        if not isinstance(value, (str, Path)):
            problems.append(f"[{path}] expected a path, got {value!r}")
            return value
        return Path(value)
    if dataclasses.is_dataclass(tp):
        problems.append(f"[{path}] is set through its own section")
        return value
    return value


def _fields(*classes: type) -> dict[str, tuple[Any, Any, str]]:
    """The settable fields of the given config dataclasses: name -> (type, default, ''); a renamed setting's
    former key -> (RENAMED, its current name, '')."""
    out: dict[str, tuple[Any, Any, str]] = {}
    for cls in classes:
        out.update({old: (RENAMED, new, "") for old, new in renamed_keys(cls).items() if new not in WIRED})
    for cls in classes:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            if f.name in WIRED or dataclasses.is_dataclass(hints[f.name]):
                continue
            default = f.default if f.default is not dataclasses.MISSING else None
            out[f.name] = (hints[f.name], default, "")
    return out


def _validate_section(values: Any, schema: dict[str, tuple[Any, Any, str]], path: str,
                      problems: list[str]) -> dict[str, Any]:
    if values is None:
        return {}
    if not isinstance(values, dict):
        problems.append(f"[{path}] expected a mapping of settings, got {values!r}")
        return {}
    out = {}
    for key, value in values.items():
        where = f"{path}.{key}" if path else str(key)
        if key in schema and schema[key][0] is RENAMED:  # a former name: read as the current one, with a warning
            new = schema[key][1]
            warn_renamed(f"[{where}]", f"[{path + '.' if path else ''}{new}]")
            key, where = new, f"{path}.{new}" if path else new
        if key not in schema:
            current = sorted(k for k, v in schema.items() if v[0] is not RENAMED)
            close = [k for k in current if k.startswith(str(key)[:3])]
            hint = f"; did you mean {', '.join(close)}?" if close else f"; known keys: {', '.join(current)}"
            problems.append(f"[{where}] unknown key{hint}")
            continue
        out[key] = _check(value, schema[key][0], where, problems)
    return out


@dataclasses.dataclass
class RunConfig:
    """A validated run config: top-level settings plus one dict of overrides per stage section."""

    name: str
    top: dict[str, Any]
    teacher: dict[str, Any]
    sections: dict[str, dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        return {**self.top, "teacher": self.teacher, **self.sections}


def validate(raw: Any, name: str, sections: Sections) -> RunConfig:
    """Check a parsed config against the top-level keys, the teacher keys and `sections`; raise one
    ConfigError listing every problem."""
    problems: list[str] = []
    if not isinstance(raw, dict):
        raise ConfigError(f"the config must be a mapping of settings, got {type(raw).__name__}")
    known = set(TOP_LEVEL) | set(TOP_LEVEL_RENAMED) | {"teacher"} | set(sections)
    for key in raw:
        if key not in known:
            problems.append(f"[{key}] unknown key; known keys: {', '.join(sorted(known))}")
    top_schema = TOP_LEVEL | {old: (RENAMED, new, "") for old, new in TOP_LEVEL_RENAMED.items()}
    top = _validate_section({k: v for k, v in raw.items() if k in top_schema}, top_schema, "", problems)
    top = {k: top.get(k, default) for k, (_, default, _) in TOP_LEVEL.items()}
    if not top.get("task"):
        problems.append("[task] is required: a built-in task name (sst2, mrpc, …) or a name with text_col set")
    teacher = _validate_section(raw.get("teacher"), TEACHER_KEYS, "teacher", problems)
    teacher = {k: teacher.get(k, default) for k, (_, default, _) in TEACHER_KEYS.items()}
    parsed = {s: _validate_section(raw.get(s), _fields(*cls), s, problems) for s, cls in sections.items()}
    if problems:
        raise ConfigError(problems)
    return RunConfig(name, top, teacher, parsed)


def apply_overrides(raw: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """`key.path=value` strings applied onto the raw config; values parsed as YAML scalars ('3' → 3)."""
    problems = []
    for item in overrides:
        key, sep, text = item.partition("=")
        if not sep or not key:
            problems.append(f"--set {item!r}: expected key=value, e.g. student.epochs=3")
            continue
        try:
            value = yaml.safe_load(text) if text != "" else ""
        except yaml.YAMLError as e:
            problems.append(f"--set {item!r}: value is not valid YAML ({e.__class__.__name__})")
            continue
        node = raw
        parts = key.split(".")
        for part in parts[:-1]:
            if node.get(part) is None:
                node[part] = {}
            if not isinstance(node[part], dict):
                problems.append(f"--set {item!r}: '{part}' is not a section")
                break
            node = node[part]
        else:
            node[parts[-1]] = value
    if problems:
        raise ConfigError(problems)
    return raw


def builtin_configs() -> list[str]:
    return sorted(p.stem for p in BUILTIN_DIR.glob("*.yaml"))


def find_config(name_or_path: str) -> Path:
    """A YAML file, or the built-in config of that name (`demo`, `sst2`, `mrpc`, `custom-template`)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    builtin = BUILTIN_DIR / f"{name_or_path}.yaml"
    if not builtin.is_file():
        raise ConfigError(f"no config file '{name_or_path}', and no built-in config of that name; built-in "
                          f"configs: {', '.join(builtin_configs())}")
    return builtin


def load(name_or_path: str, overrides: list[str] | None, sections: Sections) -> RunConfig:
    """A built-in config by name or a YAML file (`find_config`), with overrides."""
    path = find_config(name_or_path)
    try:
        raw = yaml.safe_load(path.read_text("utf-8")) or {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        raise ConfigError(f"{where}: not valid YAML: {getattr(e, 'problem', e)}") from None
    raw = apply_overrides(raw, overrides or [])
    return validate(raw, path.stem, sections)
