"""The second student family (#13, first part): a DistilBERT-style transformer made from the teacher's own layers.

DistilBERT's recipe: a student with half of the teacher's layers, initialised from the teacher by taking one
layer out of two, with the teacher's embeddings and (here, task-specific) its classification head. The student
keeps the teacher's architecture class and tokenizer, so it is saved and loaded as any Hugging Face classifier.

`--student-init` may name another encoder instead (a smaller pretrained model, trained as the student of a
larger teacher); its tokenizer must then be the teacher's, since the student reads the rows the teacher scored
with the teacher's token ids in mind: `check_tokenizers_agree` refuses a mismatch.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

from torch import nn

from ..errors import ConfigError, TeacherMismatchError

# Where the blocks of the encoder sit, and the config field that counts them, per architecture family:
# BERT, RoBERTa, MiniLM, ELECTRA, XLM-R... (`encoder.layer`) and DistilBERT (`transformer.layer`).
_BLOCK_PATHS = (("encoder", "layer", "num_hidden_layers"), ("transformer", "layer", "n_layers"))


def encoder_blocks(model: nn.Module) -> tuple[nn.Module, str, str]:
    """The module holding the encoder's blocks, the attribute naming them (an nn.ModuleList) and the config
    field counting them."""
    base = getattr(model, "base_model", model)
    for parent_name, attr, count_field in _BLOCK_PATHS:
        parent = getattr(base, parent_name, None)
        if isinstance(getattr(parent, attr, None), nn.ModuleList):
            return parent, attr, count_field
    raise ConfigError(f"cannot find the encoder layers of a {type(model).__name__}: the transformer student is made "
                      "from BERT-style (encoder.layer) or DistilBERT-style (transformer.layer) models")


def default_layers(num_layers: int) -> list[int]:
    """DistilBERT's choice: one layer out of two, starting with the first (0, 2, 4 of a 6-layer teacher)."""
    return list(range(0, num_layers, 2))


def parse_layers(spec: str | Sequence[int] | None, num_layers: int) -> list[int]:
    """`--layers 0,2,4` (or a list) checked against the teacher's layer count; None: `default_layers`."""
    if spec is None or spec == "":
        return default_layers(num_layers)
    try:
        layers = [int(x) for x in spec.split(",")] if isinstance(spec, str) else [int(x) for x in spec]
    except ValueError:
        raise ConfigError(f"[layers] must be comma-separated layer numbers such as 0,2,4, got '{spec}'") from None
    problems = []
    if not layers:
        problems.append("[layers] names no layer")
    if any(i < 0 or i >= num_layers for i in layers):
        problems.append(f"[layers] must lie in 0..{num_layers - 1} (the teacher has {num_layers}), got {layers}")
    if len(set(layers)) != len(layers) or layers != sorted(layers):
        problems.append(f"[layers] must be increasing, each layer once, got {layers}")
    if problems:
        raise ConfigError(problems)
    return layers


def student_from_teacher(teacher: nn.Module, layers: Sequence[int]) -> nn.Module:
    """A copy of `teacher` keeping only the encoder blocks `layers` (in that order), with the teacher's
    embeddings, pooler and classification head; its config counts the kept blocks. The teacher is unchanged."""
    parent, attr, count_field = encoder_blocks(teacher)
    blocks = getattr(parent, attr)
    layers = parse_layers(list(layers), len(blocks))
    kept = nn.ModuleList(copy.deepcopy(blocks[i]) for i in layers)
    setattr(parent, attr, nn.ModuleList())  # so the deep copy below does not copy every block first
    try:
        student = copy.deepcopy(teacher)
    finally:
        setattr(parent, attr, blocks)
    s_parent, s_attr, _ = encoder_blocks(student)
    setattr(s_parent, s_attr, kept)
    setattr(student.config, count_field, len(layers))
    for k, block in enumerate(kept):  # the attention's layer index (for caches) follows the new position
        for module in block.modules():
            if hasattr(module, "layer_idx"):
                module.layer_idx = k
    return student


def check_tokenizers_agree(teacher_tok: Any, student_tok: Any, teacher: str, student: str) -> None:
    """The student must read text as the teacher did: the same vocabulary (token to id) and special tokens."""
    problems = []
    if teacher_tok.get_vocab() != student_tok.get_vocab():
        t, s = teacher_tok.get_vocab(), student_tok.get_vocab()
        differing = sorted(set(t.items()) ^ set(s.items()))[:3]
        problems.append(f"vocabularies differ ({len(t):,} against {len(s):,} tokens; e.g. {differing})")
    for name in ("cls_token", "sep_token", "pad_token", "mask_token", "unk_token"):
        if getattr(teacher_tok, name, None) != getattr(student_tok, name, None):
            problems.append(f"{name} {getattr(teacher_tok, name, None)!r} against {getattr(student_tok, name, None)!r}")
    if getattr(teacher_tok, "do_lower_case", None) != getattr(student_tok, "do_lower_case", None):
        problems.append("one lower-cases its input and the other does not")
    if problems:
        raise TeacherMismatchError(f"the student {student} does not share the teacher {teacher}'s tokenizer: "
                                   + "; ".join(problems) + ". A student made from another encoder must use the "
                                   "teacher's tokenizer; leave out --student-init to build it from the teacher")
