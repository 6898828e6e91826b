"""`distill run NAME_OR_PATH [--data DIR] [--teacher DIR_OR_ID] [--out DIR] [--set key=value ...]`: the whole
pipeline from one config.

augment → (finetune-teacher) → score → train (distilled) → train (baseline) → report, each stage in its own
directory under the run directory. Every stage is cached by fingerprint, and each fingerprint chains its inputs',
so after a change only the stages downstream of it run again, and a run interrupted anywhere resumes where it
stopped (scoring and training resume inside the stage too). `run.json` in the run directory lists each stage's
output and status as the run goes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from augment.recipe import RecipeConfig

from .. import config as run_config
from .. import store
from ..errors import ConfigError, DistillError
from ..settings import TrainSettings
from ..holdout import SELECT_ON
from ..tasks import TaskSpec, data_dir, find_split_file, read_split, resolve_task, with_test_split
from . import StageResult
from .augment import AugmentConfig
from .finetune import METRICS_FILE as TEACHER_METRICS, FinetuneConfig
from .score import ScoreConfig
from ..student.config import STUDENT_KINDS
from .train import TrainConfig, resolve_labels

# Layout of a run directory.
TRANSFER, TEACHER, SCORED, STUDENT, BASELINE = "transfer", "teacher", "scored", "student", "baseline"
# Per student family: its run-config section, the suffix of its stage names and directories, its report title.
FAMILIES = {"bilstm": ("student", "", "BiLSTM"), "transformer": ("transformer", "-transformer", "Transformer")}
RUN_JSON = "run.json"
SPEED_ROWS = 872  # dev sentences timed for the students' speed (all of SST-2 dev: well under a second each)
# The teacher is timed on a sample only: 3 passes (warm-up and best of 2) over all of SST-2 dev take minutes for
# a BERT-large teacher on a CPU, and 256 sentences already give a steady sentences/s figure.
TEACHER_SPEED_ROWS = 256
TEACHER_EVAL = "teacher-eval.json"  # the teacher's dev metrics, cached by fingerprint between runs
ABLATIONS = ("rules", "size")
ABLATION_DRAWS = (1, 5, 10, 20)  # the size ablation's draws per example (those below the recipe's n_iter)
RULE_NAMES = {"mask": "masking", "pos": "POS replacement", "ngram": "n-gram sampling"}


# The stage sections of a run config and the config dataclasses whose fields each one sets.
SECTIONS: run_config.Sections = {"augment": (AugmentConfig, RecipeConfig), "finetune": (FinetuneConfig, TrainSettings),
                                 "score": (ScoreConfig,), "student": (TrainConfig,),
                                 "transformer": (TrainConfig,)}


def load_config(name_or_path: str, overrides: list[str] | None = None) -> run_config.RunConfig:
    """A built-in run config by name or a YAML file, with `key=value` overrides, validated."""
    return run_config.load(name_or_path, overrides, SECTIONS)


def _split_fields(values: dict, cls: type) -> tuple[dict, dict]:
    names = {f.name for f in dataclasses.fields(cls)}
    return {k: v for k, v in values.items() if k in names}, {k: v for k, v in values.items() if k not in names}


def run_settings(cfg: run_config.RunConfig, out: Path) -> dict:
    """The settings a run ran with, as run.json and the report record them: the config, with `out` the run
    directory it wrote (a config's `out` is only a default that `--out` overrides)."""
    return {**cfg.to_dict(), "out": str(out)}


class _Progress:
    """Records each stage's status in run.json (atomically, after every change) and prints a line per stage."""

    def __init__(self, out: Path, cfg: run_config.RunConfig):
        self.path = out / RUN_JSON
        self.doc = {"tool": store.TOOL, "config": cfg.name, "settings": run_settings(cfg, out), "stages": []}

    def step(self, stage: str, fn: Callable[[], StageResult]) -> StageResult:
        entry = {"stage": stage, "out": None, "status": "running", "seconds": 0.0}
        self.doc["stages"].append(entry)
        store.write_json(self.path, self.doc)
        t0 = time.perf_counter()
        try:
            result = fn()
        except BaseException as e:
            entry.update(status="interrupted" if isinstance(e, KeyboardInterrupt) else "failed",
                         error=str(e)[:500], seconds=round(time.perf_counter() - t0, 2))
            store.write_json(self.path, self.doc)
            raise
        entry.update(out=str(result.out_dir), status="cached" if result.skipped else "done",
                     seconds=round(time.perf_counter() - t0, 2))
        store.write_json(self.path, self.doc)
        print(f"[{stage}] {result.summary}", file=sys.stderr, flush=True)
        return result

    def steps(self, stages: list[str], fn: Callable[[], list[StageResult]]) -> list[StageResult]:
        """Stages run together (side by side) by one call: all running, then each one's result; the group's
        wall time beside each stage's own."""
        entries = [{"stage": s, "out": None, "status": "running", "seconds": 0.0} for s in stages]
        self.doc["stages"] += entries
        store.write_json(self.path, self.doc)
        t0 = time.perf_counter()
        try:
            results = fn()
        except BaseException as e:
            for entry in entries:
                entry.update(status="interrupted" if isinstance(e, KeyboardInterrupt) else "failed",
                             error=str(e)[:500], seconds=round(time.perf_counter() - t0, 2))
            store.write_json(self.path, self.doc)
            raise
        wall = round(time.perf_counter() - t0, 2)
        for entry, result in zip(entries, results):
            own = json.loads((result.out_dir / store.STATS).read_text("utf-8")).get("total_s", wall)
            entry.update(out=str(result.out_dir), status="cached" if result.skipped else "done",
                         seconds=0.0 if result.skipped else own, group_seconds=wall, side_by_side=len(stages))
            print(f"[{entry['stage']}] {result.summary}", file=sys.stderr, flush=True)
        store.write_json(self.path, self.doc)
        return results


@dataclass
class RunPlan:
    """Every stage's config for one run, built and checked before the first stage starts."""

    out: Path
    task: TaskSpec
    data: Path
    augment: AugmentConfig
    finetune: FinetuneConfig | None  # None: the teacher is given, already fine-tuned
    score: ScoreConfig
    students: dict[str, TrainConfig]  # run.json stage name -> config: "train", and "train-baseline"


_KEY_FIRST = re.compile(r"^(?:recipe\.|train\.)?(\w+) (must .*)$")  # "recipe.p_mask must be …" (stage CLI style)


def in_section(section: str, problem: str) -> str:
    """A stage config's problem with its run-config key path: '[alpha] must…' -> '[student.alpha] must…'."""
    if problem.startswith("["):
        return f"[{section}.{problem[1:]}"
    match = _KEY_FIRST.match(problem)
    if match:
        return f"[{section}.{match.group(1)}] {match.group(2)}"
    return f"[{section}] {problem.removeprefix('recipe.')}"


def run_dir_problems(out: Path) -> list[str]:
    """A run directory must be new, empty, or one whose run.json this tool wrote: run.json, report.* and the
    plots are written into it, and nothing of a user's is ever overwritten."""
    if out.is_symlink() or (out.exists() and not out.is_dir()):
        return [f"[out] {out}: exists and is not a directory; choose another --out"]
    if not out.is_dir() or not any(out.iterdir()):
        return []
    try:
        doc = json.loads((out / RUN_JSON).read_text("utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        doc = None
    if not isinstance(doc, dict) or doc.get("tool") != store.TOOL:
        return [f"[out] {out}: exists, is not empty, and holds no {RUN_JSON} written by `distill run`; nothing "
                "was touched: choose another --out, or remove it yourself"]
    return []


def _task_and_data(top: dict, problems: list[str]) -> tuple[TaskSpec | None, Path | None]:
    """The task and its data directory, with every split file the run will read found (or a problem each)."""
    try:
        task = resolve_task(top["task"], top["text_col"], top["text_pair_col"], top["label_col"], top["labels"])
    except DistillError as e:
        problems.append(f"[task] {e}")
        return None, None
    try:
        data = data_dir(task, top["data"])
    except DistillError as e:
        problems.append(f"[data] {e}")
        return task, None
    for split in ("train", *task.dev_splits):
        try:
            find_split_file(data, split)
        except DistillError as e:
            problems.append(f"[data] {e}")
    return task, data


def _teacher_problems(cfg: run_config.RunConfig, task: TaskSpec | None, plan_score: ScoreConfig, masks: bool) -> list[str]:
    """The teacher (or the backbone to fine-tune) exists, and a given teacher fits the task: label count and
    names, and a mask token its tokenizer keeps whole when the transfer set will have masked words."""
    from .. import hub
    from ..teacher import checks

    model, finetune = cfg.teacher["model"], cfg.teacher["finetune"]
    if not model and not finetune:
        return ["[teacher.model] is required: pass --teacher with a fine-tuned teacher directory or hub id; or "
                "--set teacher.finetune=true to fine-tune a backbone (default MiniLM-L6) first"]
    try:
        files = hub.locate_model(model or hub.default_backbone(), plan_score.trust_remote_code)
        if finetune:
            return []
        model_config = hub.load_config(files.path, plan_score.trust_remote_code)
        if task is not None and task.label_names:
            checks.check_label_map(model_config, task.label_names, model, task.name)
        if masks:
            checks.check_mask_token(hub.load_tokenizer(files.path, plan_score.trust_remote_code), model)
    except DistillError as e:
        return [f"[teacher.model] {e}"]
    return []


def _stage_configs(cfg: run_config.RunConfig, out: Path, task: TaskSpec | None, data: Path | None) -> RunPlan:
    """Every stage's config from the run config's sections (unchecked)."""
    seed = cfg.top["seed"]
    recipe_args, augment_args = _split_fields(cfg.sections["augment"], RecipeConfig)
    engine = {k: cfg.top[k] for k in ("engine", "ray_address", "workers")}
    unlabelled = {"input": Path(cfg.top["unlabelled"]), "input_col": cfg.top["input_col"]} \
        if cfg.top["unlabelled"] else {}
    augment = AugmentConfig(task=task, out=out / TRANSFER, data=data, recipe=RecipeConfig(**recipe_args, seed=seed),
                            **augment_args, **engine, **unlabelled)
    finetune = None
    teacher = cfg.teacher["model"]
    if cfg.teacher["finetune"]:
        settings, rest = _split_fields(cfg.sections["finetune"], TrainSettings)
        finetune = FinetuneConfig(task=task, out=out / TEACHER, data=data, train=TrainSettings(**settings, seed=seed),
                                  select_on=cfg.top["select_on"], **rest, **({"model": teacher} if teacher else {}))
        teacher = str(out / TEACHER)
    score = ScoreConfig(teacher=str(teacher), out=out / SCORED, transfer=out / TRANSFER, **cfg.sections["score"],
                        **engine)
    students = {}
    for family in cfg.top["students"]:
        section = FAMILIES.get(family, (family, f"-{family}", family))[0]
        for baseline in (False, True) if cfg.top["baseline"] else (False,):
            for s in student_seeds(cfg):
                name, directory = student_stage(cfg, family, baseline, s)
                students[name] = TrainConfig(scored=out / SCORED, task=task, data=data, seed=s, baseline=baseline,
                                             out=out / directory, family=family, select_on=cfg.top["select_on"],
                                             **cfg.sections.get(section, {}))
    family = cfg.top["students"][0] if cfg.top["students"] else "bilstm"
    section = FAMILIES.get(family, (family,))[0]
    n_iter = augment.recipe.draws(task.is_pair) if task is not None else 0
    for variant, _, settings in ablation_variants(cfg, n_iter):
        for s in student_seeds(cfg):
            name, directory = ablation_stage(cfg, variant, s)
            students[name] = TrainConfig(scored=out / SCORED, task=task, data=data, seed=s, out=out / directory,
                                         family=family, select_on=cfg.top["select_on"],
                                         **{**cfg.sections.get(section, {}), **settings})
    return RunPlan(out, task, data, augment, finetune, score, students)


def student_seeds(cfg: run_config.RunConfig) -> list[int]:
    return list(cfg.top["seeds"] or [cfg.top["seed"]])


def student_stage(cfg: run_config.RunConfig, family: str, baseline: bool, seed: int) -> tuple[str, str]:
    """A student's stage name in run.json and its directory in the run: train / student, train-baseline /
    baseline (-transformer after the family's), and -seedN after both when the run trains several seeds."""
    suffix, seeded = _suffixes(cfg, family, seed)
    return (f"train{suffix}" + ("-baseline" if baseline else "") + seeded,
            (BASELINE if baseline else STUDENT) + suffix + seeded)


def _suffixes(cfg: run_config.RunConfig, family: str, seed: int) -> tuple[str, str]:
    """The family's suffix of stage and directory names, and the seed's (only when the run has several)."""
    return (FAMILIES.get(family, (family, f"-{family}", family))[1],
            f"-seed{seed}" if len(student_seeds(cfg)) > 1 else "")


def ablation_variants(cfg: run_config.RunConfig, n_iter: int) -> list[tuple[str, str, dict]]:
    """(directory name, what it trained on, TrainConfig settings) of each ablation of `ablate`."""
    out = []
    if "rules" in cfg.top["ablate"]:
        out += [(f"no-{r}", f"without {title}", {"drop_rule": r}) for r, title in RULE_NAMES.items()]
        out.append(("originals", "the originals alone", {"max_draws": 0}))
    if "size" in cfg.top["ablate"]:
        out += [(f"draws-{k}", "the first draw per example" if k == 1 else f"the first {k} draws per example",
                 {"max_draws": k}) for k in ABLATION_DRAWS if k < n_iter]
    return out


def ablation_stage(cfg: run_config.RunConfig, variant: str, seed: int) -> tuple[str, str]:
    """An ablation student's stage name and directory: train-ablate-no-mask / ablate-no-mask (-seedN)."""
    suffix, seeded = _suffixes(cfg, cfg.top["students"][0], seed)
    return f"train{suffix}-ablate-{variant}{seeded}", f"ablate{suffix}-{variant}{seeded}"


def plan_run(cfg: run_config.RunConfig, out: Path | None = None) -> RunPlan:
    """Build every stage's config and check all of it before any work: the run directory, the task and its
    files, the teacher, and every range and combination a stage would refuse. One ConfigError lists every
    problem, each with its key path, within seconds (not after augmentation and hours of scoring)."""
    out = Path(out or cfg.top["out"] or Path("runs") / cfg.name)
    problems = run_dir_problems(out)
    task, data = _task_and_data(cfg.top, problems)
    plan = _stage_configs(cfg, out, task, data)
    unknown = [a for a in cfg.top["ablate"] if a not in ABLATIONS]
    if unknown:
        problems.append(f"[ablate] must list ablations among {', '.join(ABLATIONS)}, got {cfg.top['ablate']}")
    if cfg.top["select_on"] not in SELECT_ON:  # a top-level key: said once, not in each stage's section
        problems.append(f"[select_on] must be one of {', '.join(SELECT_ON)}, got '{cfg.top['select_on']}'")
    problems += [in_section("augment", p) for p in plan.augment.problems()
                 if task is not None or not p.startswith("pass --task")]  # the task's own problem is said
    if plan.finetune is not None:
        problems += [in_section("finetune", p) for p in plan.finetune.problems() if not p.startswith("[select_on]")]
    problems += [in_section("score", p) for p in plan.score.problems()]
    unknown = [f for f in cfg.top["students"] if f not in STUDENT_KINDS]
    if unknown or not cfg.top["students"]:
        problems.append(f"[students] must list families among {', '.join(STUDENT_KINDS)}, got {cfg.top['students']}")
    for name, student in plan.students.items():
        if not student.baseline and student.family in FAMILIES:
            problems += [in_section(FAMILIES[student.family][0], p) for p in student.problems()
                         if not p.startswith("[select_on]")]
    problems += _teacher_problems(cfg, task, plan.score, masks=plan.augment.recipe.p_mask > 0)
    if problems:
        raise ConfigError(list(dict.fromkeys(problems)))  # once each: a missing directory fails every split
    return plan


def run(cfg: run_config.RunConfig, out: Path | None = None) -> StageResult:
    """Check everything (`plan_run`), then run the stages in order under the run directory's lock."""
    from .augment import run as augment
    from .finetune import run as finetune
    from .score import run as score

    plan = plan_run(cfg, out)
    plan.out.mkdir(parents=True, exist_ok=True)
    with store.output_lock(plan.out):
        progress = _Progress(plan.out, cfg)
        progress.step("augment", lambda: augment(plan.augment))
        if plan.finetune is not None:
            teacher = progress.step("finetune-teacher", lambda: finetune(plan.finetune)).out_dir
            stop_if_failed(teacher, force=cfg.teacher["force"])
        progress.step("score", lambda: score(plan.score))
        train_students(plan.students, progress)
        n_iter = plan.augment.recipe.draws(plan.task.is_pair)
        report = progress.step("report", lambda: _report(cfg, plan.out, plan.task, plan.data, plan.score,
                                                         progress, n_iter)).out_dir
    return StageResult(plan.out, False, f"run: done; report at {report}")


def stop_if_failed(teacher: Path, *, force: bool) -> None:
    """Stop before scoring when the fine-tuned teacher learnt nothing (`teacher.verdict`), unless forced; the
    teacher stays on disk to be looked at, and a rerun with teacher.force=true reuses it."""
    from ..teacher.verdict import failure_message

    check = json.loads((teacher / TEACHER_METRICS).read_text("utf-8")).get("check") or {}
    if check.get("failed") and not force:
        raise DistillError(failure_message(check, str(teacher)))


def train_students(students: dict[str, TrainConfig], progress: _Progress) -> None:
    """The BiLSTM students (every seed, distilled and baseline) side by side, one process per CPU; then the
    transformer students one after another (each uses every core)."""
    from .train import run_together, train_one

    together = {n: c for n, c in students.items() if c.family == "bilstm"}
    if together:
        progress.steps(list(together), lambda: run_together(list(together.values()), list(together)))
    for name, c in students.items():
        if name not in together:
            progress.step(name, lambda c=c: train_one(c))


def _report(cfg: run_config.RunConfig, out: Path, task, data: Path, score_cfg: ScoreConfig,
            progress: _Progress, n_iter: int) -> StageResult:
    from .. import report

    task = resolve_labels(task, data, store.read_manifest(out / SCORED) or {})  # the label ids training used
    task = with_test_split(task, data)
    dev = {split: read_split(task, data, split)[0] for split in task.dev_splits}
    teacher = score_cfg.teacher  # measured as the score stage ran it: same device, dtype and max_length
    rows = [report.measure_teacher(teacher, task, dev, TEACHER_SPEED_ROWS, max_length=score_cfg.max_length,
                              device=score_cfg.device, dtype=score_cfg.dtype, batch_tokens=score_cfg.batch_tokens,
                              trust_remote_code=score_cfg.trust_remote_code, cache=out / TEACHER_EVAL)]
    seeds = student_seeds(cfg)
    for family in cfg.top["students"]:
        title = FAMILIES[family][2]
        for baseline in (False, True) if cfg.top["baseline"] else (False,):
            dirs = [out / student_stage(cfg, family, baseline, s)[1] for s in seeds]
            how = "no distillation" if baseline else "distilled"
            rows.append(report.measure_seeds(dirs, seeds, f"{title} student ({how})", dev, SPEED_ROWS, task))
    ablations = ablation_rows(cfg, out, n_iter)
    stages = [dict(s) for s in progress.doc["stages"] if s["stage"] != "report"]
    path = report.write_report(
        out, run_name=cfg.name, task=task, teacher=teacher, rows=rows,
        transfer_stats=json.loads((out / TRANSFER / store.STATS).read_text("utf-8")),
        agreement=report.teacher_agreement(out / SCORED), stages=stages, settings=run_settings(cfg, out),
        speed_rows=min(SPEED_ROWS, len(next(iter(dev.values())))),
        command=" ".join(["distill", *sys.argv[1:]]) if sys.argv else "distill run",
        machine=report.describe_machine(rows), ablations=ablations,
        ablation_family=FAMILIES[cfg.top["students"][0]][2] if ablations else "",
        majority=report.majority_baseline(task, dev))
    return StageResult(path, False, f"report: {path}")


def ablation_rows(cfg: run_config.RunConfig, out: Path, n_iter: int) -> list:
    """The report's ablation rows: the whole scored set's distilled students first, then each variant's."""
    from ..report import measure_ablation

    variants = ablation_variants(cfg, n_iter)
    if not variants:
        return []
    seeds = student_seeds(cfg)
    full = [out / student_stage(cfg, cfg.top["students"][0], False, s)[1] for s in seeds]
    result = [measure_ablation(full, f"the whole transfer set ({n_iter} draws per example)", n_iter)]
    for variant, what, settings in variants:
        dirs = [out / ablation_stage(cfg, variant, s)[1] for s in seeds]
        result.append(measure_ablation(dirs, what, settings.get("max_draws")))  # the originals: 0 draws
    return result


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command's options (the `distill` parser gives it its name, help and description)."""
    p.add_argument("config", metavar="NAME_OR_PATH",
                   help=f"a built-in config ({', '.join(run_config.builtin_configs())}) or a YAML file")
    p.add_argument("--out", type=Path, default=None, help="run directory (default: the config's out, or runs/NAME)")
    p.add_argument("--data", default=None, metavar="DIR", help="the task's files: short for --set data=DIR")
    p.add_argument("--teacher", default=None, metavar="DIR_OR_HUB_ID",
                   help="a fine-tuned teacher: short for --set teacher.model=DIR_OR_HUB_ID")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a setting, e.g. --set student.epochs=3 --set augment.limit=5000 (repeatable)")
    p.add_argument("--dry-run", action="store_true",
                   help="check everything and say which stages are cached, which would run and about how long "
                        "each takes (measured on this machine), without writing anything")
    p.set_defaults(func=_from_args)


def overrides_from_args(args: argparse.Namespace) -> list[str]:
    """--data and --teacher as ordinary overrides, before the --set ones (a JSON string is a YAML string, so a
    directory named `null` or `123` stays a string)."""
    shortcuts = [(key, value) for key, value in (("data", args.data), ("teacher.model", args.teacher)) if value]
    return [f"{key}={json.dumps(value)}" for key, value in shortcuts] + args.overrides


def _from_args(args: argparse.Namespace) -> StageResult:
    cfg = load_config(args.config, overrides_from_args(args))
    if args.dry_run:
        from .dry_run import dry_run

        return dry_run(cfg, args.out)
    return run(cfg, args.out)
