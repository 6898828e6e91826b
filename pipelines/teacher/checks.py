"""Checks that a teacher fits a task before any work is done (DESIGN.md §7): its labels, the length it can read,
and whether its tokenizer keeps the mask token whole (masked words are rendered to that token when scoring).
Each refusal says what to pass instead."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from augment import MASK_SYMBOL

from ..errors import ConfigError, TeacherMismatchError

GENERIC_LABEL = re.compile(r"^LABEL_\d+$")  # transformers' name for a label saved without one


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
