"""`distill score`: label every row of a transfer set (or of plain text) with a teacher's logits.

The output is the input's rows, in the same order, plus `teacher_logits` (fixed-size list<float32>, one
pre-softmax value per class). The input is cut into fixed contiguous shards; each is scored and written
atomically (datasets' ArrowWriter) into the work directory, so a run that is killed (even with kill -9) resumes
at the first missing shard and finishes with the same bytes as a run that never stopped; at the end the shards
become the output through `Dataset.save_to_disk`. The shards are scored by `teacher.shard_scorer.ShardScorer` on
the chosen engine (pipelines/engine.py), which tokenises the next shard and writes the previous one while the
current one is scored.

Fingerprint: the input's fingerprint, the teacher's weights, config and tokenizer hashes, max_length, dtype and
shard_rows, the versions of torch, transformers and tokenizers, and for bf16/fp16 the device type. In float32
the device and batch_tokens are left out on purpose: they only reorder float operations (logits agree to about
1e-6), so scoring again on a GPU or with another batch budget reuses the existing output instead of recomputing
it. Reduced precision rounds differently on a CPU and a GPU (differences at bf16 resolution, not 1e-6), so there
the device type is part of the fingerprint. Either way no output mixes two devices: the work directory of a
killed run is keyed by the device type too, so a run resumed on another device starts over (and a kept shard
is checked first: its row count, and the fingerprint in its metadata). Both are recorded in the manifest.
"""

from __future__ import annotations

import argparse
import logging
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from augment import MASK_SYMBOL

from .. import store
from ..engine import (Engine, Shards, engine_problems, engine_setting, missing_shards, open_engine,
                      ray_address_setting, workers_setting)
from ..devices import DEFAULT_BATCH_TOKENS, DEVICES, DTYPE_CHOICES, resolve_dtype
from ..errors import ConfigError
from ..flags import add_flags, from_flags, setting
from ..progress import peak_memory_mb, progress
from ..tasks import generic_task
from ..teacher.score_source import Source, open_source
from ..teacher.shard_scorer import ShardScorer
from . import StageResult

if TYPE_CHECKING:
    from ..hub import ModelFiles

STAGE = "score"
STAGE_VERSION = 1  # bump whenever the output bytes change for the same inputs
# Likewise for the output in bf16/fp16 only (float32 sets keep their fingerprint). 2: the classification head and
# the pooler in float32.
REDUCED_PRECISION_VERSION = 2
log = logging.getLogger(__name__)


@dataclass
class ScoreConfig:
    """Settings of the score stage. Exactly one of `transfer` and `input` is given."""

    teacher: str = setting(help="a model directory (save_pretrained) or hub id of a sequence classifier")
    out: Path = setting(help="output directory (created atomically)")
    transfer: Path | None = setting(None, help="a `distill augment` output", exclusive="source")
    input: Path | None = setting(
        None,
        help="or unlabelled rows: .txt (one a line), CSV/TSV/JSONL/Parquet, datasets dir",
        exclusive="source", flags=("--input", "--text-file"))
    input_col: str = setting("text", help="--input: column holding the text", renamed=("text_col",))
    input_pair_col: str | None = setting(None, help="--input: column holding the second text of a pair",
                                         renamed=("text_pair_col",))
    batch_tokens: int | None = setting(
        None,
        help=f"padded tokens per forward batch, speed and memory only (default {DEFAULT_BATCH_TOKENS['cpu']:,} on "
             f"CPU, {DEFAULT_BATCH_TOKENS['cuda']:,} on CUDA)")
    device: str = setting("auto", help="auto | cpu | cuda", choices=DEVICES)
    dtype: str = setting(
        "auto", choices=DTYPE_CHOICES,
        help="compute precision (autocast; logits are float32 either way): auto picks bf16 on GPUs that have it "
             "(fp16 on older ones) and on CPUs with native bf16 (AVX512-BF16, AMX), float32 elsewhere")
    max_length: int = setting(128, help="tokens per row, longer rows are truncated")
    shard_rows: int = setting(16_384, help="rows per output file, the unit of resuming")
    trust_remote_code: bool = setting(False, help="let the teacher's directory run its own Python code")
    engine: str = engine_setting()
    ray_address: str | None = ray_address_setting()
    workers: int = workers_setting(
        "teacher replicas: on GPUs one per visible GPU (0: all of them); on a CPU 0 or 1 is one process using "
        "every core, N > 1 is N processes sharing them; on Ray 0 is one actor per GPU, or per CPU")

    def problems(self) -> list[str]:
        out = []
        if (self.transfer is None) == (self.input is None):
            out.append("pass exactly one of transfer (a `distill augment` output) and input (a text file)")
        for name in ("batch_tokens", "max_length", "shard_rows"):
            if getattr(self, name) is not None and getattr(self, name) < 1:
                out.append(f"[{name}] must be >= 1, got {getattr(self, name)}")
        if self.device not in DEVICES:
            out.append(f"[device] must be one of {', '.join(DEVICES)}, got '{self.device}'")
        out += engine_problems(self.engine, self.workers)
        if self.dtype not in DTYPE_CHOICES:
            out.append(f"[dtype] must be one of {', '.join(DTYPE_CHOICES)}, got '{self.dtype}'")
        return out


def fingerprint_settings(cfg: ScoreConfig, device_type: str, dtype: str) -> dict:
    """The settings that decide the logits' bytes (module docstring): the device only in reduced precision."""
    settings = {"max_length": cfg.max_length, "dtype": dtype, "shard_rows": cfg.shard_rows,
                "mask_symbol": MASK_SYMBOL, "versions": store.result_versions()}
    return settings if dtype == "float32" else {**settings, "device_type": device_type,
                                                "reduced_precision_version": REDUCED_PRECISION_VERSION}


def output_fingerprint(cfg: ScoreConfig, source_fp: str, files: ModelFiles, device_type: str) -> tuple[str, str]:
    """The output's fingerprint and the precision it is scored in (`auto` resolved for `device_type`). A Ray
    driver without a GPU of its own cannot ask CUDA whether the workers' GPUs have bf16: it assumes they do
    (every GPU since Ampere)."""
    import torch

    remote_gpus = device_type == "cuda" and not torch.cuda.is_available()
    dtype = resolve_dtype(cfg.dtype, device_type, cuda_bf16=True if remote_gpus else None)
    settings = fingerprint_settings(cfg, device_type, dtype)
    return store.fingerprint(f"{STAGE}@{STAGE_VERSION}", source_fp, files.identity(), settings), dtype


# ----------------------------------------------------------------------------------------------- the stage

def recorded_data(cfg: ScoreConfig) -> dict:
    """The task's data directory that the transfer set records, passed on for the stages after this one."""
    data = (store.read_manifest(cfg.transfer) or {}).get("data") if cfg.transfer is not None else None
    return {"data": data} if data else {}


def run(cfg: ScoreConfig) -> StageResult:
    # torch: imported when a stage runs, not for --help
    from .. import hub
    from ..teacher import checks

    problems = cfg.problems()
    if problems:
        raise ConfigError(problems)
    source_spec = source_of(cfg)
    source = open_source(**source_spec)
    files = hub.locate_model(cfg.teacher, cfg.trust_remote_code)
    model_config = hub.load_config(files.path, cfg.trust_remote_code)
    if source.task is not None:
        checks.check_label_map(model_config, source.task["label_names"], cfg.teacher, source.task["name"])
    label_names = checks.label_names_of(model_config)
    task = source.task or generic_task(cfg.input_col, cfg.input_pair_col, None, label_names).to_dict()
    with open_engine(cfg.engine, cfg.workers, cfg.ray_address) as engine:
        slots = engine.plan_slots(cfg.device, cfg.workers)
        device_type = slots[0]["device"].split(":")[0]
        fp, dtype = output_fingerprint(cfg, source.fingerprint, files, device_type)
        if store.is_complete(cfg.out, fp):
            return StageResult(Path(cfg.out), True, f"score: up to date, {cfg.out} (fingerprint {fp[:12]})")
        if source.has_mask():
            checks.check_mask_token(hub.load_tokenizer(files.path, cfg.trust_remote_code), cfg.teacher)
        worker = {"source": source_spec, "source_fp": source.fingerprint, "files": files, "dtype": dtype,
                  "max_length": cfg.max_length, "batch_tokens": cfg.batch_tokens,
                  "trust_remote_code": cfg.trust_remote_code}
        return _score(cfg, engine, source, worker, slots, fp, task, label_names)


def _score(cfg: ScoreConfig, engine: Engine, source: Source, worker: dict, slots: list[dict], fp: str, task: dict,
           label_names: list[str]) -> StageResult:
    from .. import hub

    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()}
    device_type, dtype = slots[0]["device"].split(":")[0], worker["dtype"]
    # The device type keys the work directory: a float32 run (whose fingerprint leaves the device out, so a
    # finished set is reused anywhere) killed on a CPU and resumed on a GPU starts over instead of mixing shards.
    with store.stage_run(STAGE, cfg.out, fp, config, resumable=True, work_key=device_type,
                         inputs={"transfer" if cfg.transfer is not None else "input": source.fingerprint},
                         extra={"task": task, "num_labels": len(label_names), "is_pair": source.is_pair,
                                **recorded_data(cfg)}) as run_:
        tokenizer = hub.load_tokenizer(worker["files"].path, cfg.trust_remote_code)
        run_.extra["teacher"] = teacher_record(worker["files"], tokenizer, label_names, cfg, dtype,
                                               ", ".join(s["device"] for s in slots))
        schema = store.scored_schema(source.table.schema, len(label_names))
        with run_.timed("score"):
            counts = score_shards(engine, worker, slots, Shards(source.table.num_rows, cfg.shard_rows),
                                  run_.work_dir, fp, source)
        with run_.timed("write"):
            store.assemble_shards(run_.work_dir, schema, fp)
        seconds = max(run_.timings["score"], 1e-9)
        run_.stats.update(counts, rows=source.table.num_rows, device=run_.extra["teacher"]["device"],
                          dtype=dtype, engine=engine.name, workers=engine.shard_workers(slots),
                          rows_per_s=round(counts["rows_scored"] / seconds, 1),
                          tokens_per_s=round(counts["tokens"] / seconds, 1), peak_memory_mb=peak_memory_mb())
        run_.commit()
    s = run_.stats
    resumed = f", {s['shards_resumed']} resumed" if s["shards_resumed"] else ""
    return StageResult(Path(cfg.out), False,
                       f"score: {s['rows']:,} rows × {len(label_names)} logits from {cfg.teacher} "
                       f"({s['shards']} shards{resumed}) at {s['rows_per_s']:,.0f} rows/s on {s['device']} "
                       f"{dtype} ({engine.name} engine) -> {cfg.out}")


def source_of(cfg: ScoreConfig) -> dict:
    if cfg.transfer is not None:
        return {"transfer": str(Path(cfg.transfer).resolve())}
    return {"input": str(Path(cfg.input).resolve()), "text_col": cfg.input_col, "text_pair_col": cfg.input_pair_col}


def teacher_record(files: ModelFiles, tokenizer: Any, label_names: list[str], cfg: ScoreConfig, dtype: str,
                   devices: str) -> dict:
    """What the manifest says about the teacher: enough to find it again and to know it was the same one."""
    return {"name": cfg.teacher, "path": str(files.path), **files.identity(), "revision": files.revision,
            "weights_format": files.weights_format,
            "tokenizer": f"{type(tokenizer).__name__}({tokenizer.name_or_path})", "mask_token": tokenizer.mask_token,
            "id2label": dict(enumerate(label_names)), "max_length": cfg.max_length, "dtype": dtype,
            "device": devices}


def score_shards(engine: Engine, worker: dict, slots: list[dict], shards: Shards, work_dir: Path, fp: str,
                 source: Source) -> dict[str, int | None]:
    """Score every shard without a trustworthy file in `work_dir/shards` (engine.missing_shards) on `engine`,
    with one progress bar for the whole job; the shard files are the same whatever the engine."""
    shard_dir = work_dir / store.SHARDS
    shard_dir.mkdir(exist_ok=True)
    todo = missing_shards(shard_dir, shards, fp)
    kwargs = {**worker, "fp": fp, "shard_dir": str(shard_dir), "shard_rows": shards.shard_rows}
    with progress(sum(shards.rows(i) for i in todo), "scoring", "row") as bar:
        # A worker in this process takes the source already open.
        done = engine.run_shards(ShardScorer, kwargs, slots, todo, shards.rows, bar.update,
                                 in_process={"opened": source})
    # Per replica: its torch threads, and its token budget at the end (lowered after an out-of-memory batch).
    return {"shards": shards.count, "shards_resumed": shards.count - len(todo),
            "rows_scored": sum(d["rows"] for d in done), "tokens": sum(d["tokens"] for d in done),
            "threads": max((int(d["threads"]) for d in done), default=None),
            "batch_tokens": min((int(d["batch_tokens"]) for d in done), default=worker["batch_tokens"])}


# ----------------------------------------------------------------------------------------------- command line

def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command's options, from ScoreConfig's fields (the `distill` parser gives it its name and help)."""
    add_flags(p, ScoreConfig)
    p.set_defaults(func=_from_args)


def _from_args(args: argparse.Namespace) -> StageResult:
    return run(from_flags(ScoreConfig, args))
