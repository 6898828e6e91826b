"""`distill augment`: a task's training split → the transfer set (originals + synthetic rows), as Arrow.

Reads the split, tags it with spaCy (or NLTK), builds the POS table from the same split, draws n_iter perturbed
copies of every example (augment.recipe), drops unchanged and duplicate rows, and writes one output directory.
Tagging and generation run on the chosen engine (worker processes, or Ray actors); generated chunks come back in
example order and are deduplicated and written as they come, so memory holds one chunk and the dedupe state
(8 bytes a row), never the whole transfer set.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pyarrow as pa

from augment import MASK_SYMBOL
from augment.pos_table import PosTable
from augment.recipe import (OP_MASK, OP_NAMES, OP_NGRAM, OP_POS, Generated, RecipeConfig, TransferAssembler,
                            TransferRows, generate_chunks, rule_counts)
from augment.tagging import (TaggerUnavailable, load_nltk_tagger, nltk_tagger_digest, nltk_tagger_files,
                             resolve_spacy_model, tag_texts)

from .. import store
from ..engine import engine_problems, engine_setting, open_engine, ray_address_setting, workers_setting
from ..flags import add_flags, from_flags, setting
from ..errors import ConfigError, DataError, MissingResourceError
from ..progress import peak_memory_mb, progress
from ..tasks import Split, TaskSpec, data_dir, find_split_file, read_split
from . import StageResult
from .common import add_task_args, task_from_args

STAGE = "augment"
# Bump whenever the bytes of the transfer set change for the same inputs. 2: rendered rows lose their leading and
# trailing whitespace, dedupe ignores whitespace, whitespace tokens are never masked, replaced or counted.
STAGE_VERSION = 3
ROWS_PER_FILE = 500_000  # rows per Arrow file of the output
# Draws per unit of work when --chunk-size is 0: the rows a chunk holds in memory (a few chunks are in flight at
# once), whatever n_iter is. The output does not depend on it.
DRAWS_PER_CHUNK = 40_000
TAG_CHUNK = 2000  # sentences per unit of tagging work


@dataclass
class AugmentConfig:
    """Settings of the augment stage. `recipe` holds the paper's probabilities, draw count and seed."""

    task: TaskSpec | None  # None: the unlabelled `input` alone
    out: Path = setting(help="output directory (created atomically)")
    data: Path | None = None  # task data directory or file; the demo task has a default
    split: str = setting("train", help="split to augment")
    input: Path | None = setting(
        None, help="unlabelled in-domain text: a text per line (.txt), or the --input-col column of a "
                   "CSV/TSV/JSONL/Parquet file; augmented after the task's split (the POS table is built from "
                   "both), or alone when no --task is given")
    input_col: str = setting("text", help="--input: the column holding the text")
    recipe: RecipeConfig = field(default_factory=RecipeConfig)
    limit: int | None = setting(None, help="only the first N examples")
    tagger: str = setting("spacy", help="spacy | nltk", choices=("spacy", "nltk"))
    spacy_model: str | None = setting(
        None,
        help="a spaCy package or directory; default: en_core_web_sm or its PyPI re-upload")
    engine: str = engine_setting()
    ray_address: str | None = ray_address_setting()
    workers: int = workers_setting(
        "worker processes (or Ray actors) for tagging and generation; 0: one per CPU this process may use (its "
        "affinity mask and cgroup quota; on Ray the cluster's CPUs), and never more than that")
    chunk_size: int = setting(
        0, help=f"examples per unit of work, memory and scheduling only (0: about {DRAWS_PER_CHUNK:,} draws a chunk, "
                "so 2,000 examples at the paper's 20 draws and fewer at more draws)")

    def problems(self) -> list[str]:
        out = [f"recipe.{p}" for p in self.recipe.problems()]
        if self.limit is not None and self.limit < 1:
            out.append(f"limit must be >= 1, got {self.limit}")
        if self.tagger not in ("spacy", "nltk"):
            out.append(f"tagger must be 'spacy' or 'nltk', got '{self.tagger}'")
        out += engine_problems(self.engine, self.workers)
        if self.chunk_size < 0:
            out.append(f"chunk_size must be >= 0, got {self.chunk_size}")
        if self.task is None and self.input is None:
            out.append("pass --task (with --data) or --input FILE (unlabelled text), or both")
        if self.input is not None and self.task is not None and self.task.is_pair:
            out.append(f"input: unlabelled text goes beside single-sentence tasks only; '{self.task.name}' is a "
                       "pair task")
        if self.input is not None and not Path(self.input).exists():
            out.append(f"input: {self.input} does not exist")
        return out


def ops_array(bits: np.ndarray) -> pa.ListArray:
    """Rule bits → list<string> per row, built with offsets (no Python loop over rows)."""
    flags = np.stack([(bits & b) > 0 for b in (OP_MASK, OP_POS, OP_NGRAM)], axis=1)  # [N, 3]
    offsets = np.concatenate([[0], np.cumsum(flags.sum(1))]).astype(np.int32)
    _, cols = np.nonzero(flags)  # row-major: each row's rules in OP_NAMES order
    values = pa.array(np.asarray(OP_NAMES, dtype=object)[cols], type=pa.string())
    return pa.ListArray.from_arrays(pa.array(offsets), values)


def to_table(rows: TransferRows, split: Split, is_pair: bool) -> pa.Table:
    labels = np.full(len(rows.texts), -1, dtype=np.int64)
    if split.labels is not None:
        labels[rows.is_original] = split.labels[rows.source_index[rows.is_original]]
    columns = {"text": pa.array(rows.texts, type=pa.string())}
    if is_pair:
        columns["text_pair"] = pa.array(rows.pairs, type=pa.string())
    columns["label"] = pa.array(labels, mask=labels < 0)
    columns["source_index"] = pa.array(rows.source_index)
    columns["draw"] = pa.array(rows.draw, type=pa.int32(), mask=rows.draw < 0)
    columns["is_original"] = pa.array(rows.is_original)
    columns["ops"] = ops_array(rows.ops)
    return pa.table(columns, schema=store.transfer_schema(is_pair))


def _read_meta(model_dir: Path) -> dict:
    """A spaCy pipeline directory's meta.json (name, version), read as plain JSON; {} when absent or unreadable."""
    try:
        meta = json.loads((model_dir / "meta.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def _spacy_identity(model: str | None) -> dict:
    """What decides spaCy's tags: spaCy's version and the pipeline's name and version; for a pipeline given as a
    directory, also a hash of its files instead of its path (a copy elsewhere tags alike, an edited one may not)."""
    try:
        name = resolve_spacy_model(model)
    except TaggerUnavailable as e:
        raise MissingResourceError(str(e)) from None
    import spacy

    identity = {"tagger": "spacy", "spacy": spacy.__version__}
    if os.path.isdir(name):
        meta = _read_meta(Path(name))
        return {**identity, "model": meta.get("name"), "model_version": meta.get("version"),
                "model_files": store.hash_path(name)}
    meta = spacy.info(name)
    return {**identity, "model": meta.get("name", name), "model_version": meta.get("version")}


def _nltk_identity(nltk_tagger) -> dict:
    """What decides NLTK's tags: NLTK's version (its tokenizer) and the tagger's parameters: a hash of the data
    files the pretrained tagger loads, or of an injected tagger's weights, tag dictionary and classes."""
    import nltk

    identity = {"tagger": "nltk", "nltk": nltk.__version__}
    if nltk_tagger is not None:
        try:
            return {**identity, "tagger_weights": nltk_tagger_digest(nltk_tagger)}
        except TypeError as e:
            raise ConfigError(str(e)) from None
    try:
        files = nltk_tagger_files()
        data = (store.hash_files(files, root=files[0].parent) if files is not None
                else nltk_tagger_digest(load_nltk_tagger()))  # inside a zip archive: hash what it loads
    except TaggerUnavailable as e:
        raise MissingResourceError(str(e)) from None
    return {**identity, "tagger_data": data}


@dataclass
class AugmentPlan:
    """What a run reads and the fingerprint of what it would write, known before any tagging."""

    split: Split
    task: TaskSpec
    source: Path
    config: dict
    input_fp: str
    fingerprint: str


def plan(cfg: AugmentConfig, nltk_tagger=None) -> AugmentPlan:
    """Validate the config, read the split (and the unlabelled input) and fingerprint the output: the input
    files' hashes, the recipe and the tagger's identity (so a cached transfer set is never reused with another
    tagger or tagger model)."""
    problems = cfg.problems()
    if nltk_tagger is not None and cfg.tagger != "nltk":
        problems.append(f"an NLTK tagger object was given, but tagger is '{cfg.tagger}'")
    if problems:
        raise ConfigError(problems)
    split, task, source, input_fp = read_examples(cfg)
    tagger_id = _nltk_identity(nltk_tagger) if cfg.tagger == "nltk" else _spacy_identity(cfg.spacy_model)
    config = {"task": task.to_dict(), "split": cfg.split, "recipe": cfg.recipe.to_dict(), "limit": cfg.limit,
              "tagger": tagger_id, "mask_symbol": MASK_SYMBOL,
              **({"input_col": cfg.input_col} if cfg.input is not None else {})}
    fp = store.fingerprint(f"{STAGE}@{STAGE_VERSION}", input_fp, config)
    return AugmentPlan(split, task, source, config, input_fp, fp)


def read_examples(cfg: AugmentConfig) -> tuple[Split, TaskSpec, Path, str]:
    """The examples to augment: the task's split, then the unlabelled input's texts (label -1), or the input
    alone; the task they are read as, the first file, and a fingerprint of the files."""
    from ..tasks import generic_task

    parts, hashes = [], []
    task = cfg.task
    if task is not None:
        data = data_dir(task, cfg.data)
        source = find_split_file(data, cfg.split)
        split, task = read_split(task, data, cfg.split, labelled=True, limit=cfg.limit)
        parts.append(split)
        hashes.append(store.hash_path(source))
    if cfg.input is not None:
        plain = generic_task(cfg.input_col, None, label_col=None)
        corpus, _ = read_split(plain, Path(cfg.input), "train", labelled=False)
        corpus.labels = np.full(len(corpus), -1, dtype=np.int64)
        parts.append(corpus)
        hashes.append(store.hash_path(Path(corpus.path)))
        task = task or plain
        source = source if cfg.task is not None else Path(corpus.path)
    if len(parts) == 1:
        return parts[0], task, source, hashes[0]
    both = Split(parts[0].path, parts[0].texts + parts[1].texts, None,
                 np.concatenate([parts[0].labels, parts[1].labels]))
    return both, task, source, store.fingerprint("split+input", *hashes)


def _data_record(cfg: AugmentConfig) -> dict:
    """The task's data directory, as later stages take it when no --data is given (nothing for text alone)."""
    return {"data": str(data_dir(cfg.task, cfg.data).resolve())} if cfg.task is not None else {}


def run(cfg: AugmentConfig, *, nltk_tagger=None) -> StageResult:
    """Build the transfer set. `nltk_tagger`: with tagger 'nltk', a ready tagger object (e.g. a PerceptronTagger
    trained in code) instead of NLTK's pretrained one; its weights are part of the fingerprint."""
    p = plan(cfg, nltk_tagger)
    if store.is_complete(cfg.out, p.fingerprint):
        return StageResult(Path(cfg.out), True, f"augment: up to date, {cfg.out} (fingerprint {p.fingerprint[:12]})")
    with open_engine(cfg.engine, cfg.workers, cfg.ray_address) as engine:
        with store.stage_run(STAGE, cfg.out, p.fingerprint, {**p.config, "workers": engine.workers},
                             inputs={"data": p.input_fp}, seed=cfg.recipe.seed,
                             extra={"task": p.task.to_dict(), "num_labels": p.task.num_labels,
                                    "source": str(p.source), "is_pair": p.task.is_pair, **_data_record(cfg),
                                    "spacy_model": cfg.spacy_model, "engine": engine.name}) as run_:
            _augment(cfg, p, engine, run_, nltk_tagger)
            run_.commit()
    s = run_.stats
    return StageResult(Path(cfg.out), False,
                       f"augment: {s['originals']:,} originals + {s['synthetic']:,} synthetic = {s['rows']:,} rows "
                       f"({s['dropped_unchanged']:,} unchanged, {s['dropped_duplicates']:,} duplicates dropped) "
                       f"in {s['wall_s']:.1f}s ({engine.name} engine) -> {cfg.out}")


def _augment(cfg: AugmentConfig, p: AugmentPlan, engine, run_: store.StageRun, nltk_tagger) -> None:
    """Tag, build the POS table, then generate chunk by chunk, each chunk deduplicated and written as it comes."""
    split, is_pair = p.split, p.task.is_pair
    texts = split.texts + (split.text_pairs or [])
    chunk_size = cfg.chunk_size or max(1, DRAWS_PER_CHUNK // max(1, cfg.recipe.draws(is_pair)))
    t0 = time.perf_counter()
    with run_.timed("tag"), progress(len(texts), "tagging", "sent") as bar:
        try:
            corpus = tag_texts(texts, tagger=cfg.tagger, model=cfg.spacy_model, nltk_tagger=nltk_tagger,
                               chunk_size=TAG_CHUNK, progress=bar.update, mapper=engine.mapper)
        except TaggerUnavailable as e:
            raise MissingResourceError(str(e)) from None
    tag_s = time.perf_counter() - t0
    if corpus.num_tokens == 0:
        raise DataError("no tokens found in any example", str(p.source))
    table = PosTable.from_corpus(corpus)
    t1 = time.perf_counter()
    with run_.timed("generate"), progress(len(split), "augmenting") as bar:
        chunks = generate_chunks(corpus, table, cfg.recipe, num_examples=len(split), is_pair=is_pair,
                                 chunk_size=chunk_size, progress=bar.update, mapper=engine.mapper)
        stats = write_transfer_set(chunks, split, is_pair, run_.work_dir, p.fingerprint)
    gen_s = time.perf_counter() - t1
    run_.stats.update(stats)
    run_.stats.update({
        "rows_in": len(split),
        "rows_out": stats["rows"],
        "draws_per_example": cfg.recipe.draws(is_pair),
        "tokens_tagged": corpus.num_tokens,
        "tagging_sentences_per_s": round(len(texts) / max(tag_s, 1e-9), 1),
        "synthetic_rows_per_s": round(stats["synthetic"] / max(gen_s, 1e-9), 1),
        "pos_tags": len(corpus.tags),
        "vocabulary": len(corpus.words),
        "workers": engine.workers,
        "chunk_size": chunk_size,
        "peak_memory_mb": peak_memory_mb(),
    })


def write_transfer_set(chunks: Iterable[Generated], split: Split, is_pair: bool, work_dir: Path, fp: str,
                       rows_per_file: int = ROWS_PER_FILE) -> dict:
    """Deduplicate each generated chunk against every row kept so far and stream the rows to Arrow files of
    `rows_per_file` rows in `work_dir/shards`, then make them the stage's dataset directory. Memory holds one
    chunk, one file's worth of rows and the dedupe state (8 bytes a row), never the transfer set."""
    schema = store.transfer_schema(is_pair)
    assembler = TransferAssembler(split.texts, split.text_pairs)
    writer = store.PartWriter(work_dir / store.SHARDS, schema, fp, rows_per_file)
    rows = originals = 0
    per_rule = dict.fromkeys(OP_NAMES, 0)
    for generated in chunks:
        part = assembler(generated)
        writer.add(to_table(part, split, is_pair))
        rows, originals = rows + len(part.texts), originals + int(part.is_original.sum())
        for name, n in rule_counts(part).items():
            per_rule[name] += n
    writer.close()
    store.assemble_shards(work_dir, schema, fp)
    return assembler.stats(rows, originals, per_rule)


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The command's options, from AugmentConfig's fields (the `distill` parser gives it its name and help)."""
    add_task_args(p)
    add_flags(p, AugmentConfig, skip=("task", "data"))
    p.set_defaults(func=_from_args)


def _from_args(args: argparse.Namespace) -> StageResult:
    alone = args.input is not None and args.task is None and args.text_col is None  # the unlabelled text alone
    return run(from_flags(AugmentConfig, args, task=None if alone else task_from_args(args)))
