"""The student models, registered by name in `STUDENTS` (`config.json["model"]["arch"]` names one):
`BiLSTMClassifier` (`bilstm`, single sentences) and `SiameseBiLSTMClassifier` (`siamese_bilstm`, pairs) of
Tang et al. (2019). `build_model` makes the model of a `StudentConfig`; `predict_logits` runs one over encoded
rows.

A student class takes its `StudentConfig`, names its inputs in `INPUTS` (what `forward` takes, in order: the
exported files and `predict.py` feed them by these names) and has a `StudentEmbedding` as `embedding` (the
pretrained table is copied into it). Another family (a small transformer) registers itself the same way.

Why the BiLSTM is two unidirectional LSTMs over padded input instead of `nn.LSTM(bidirectional=True)` over a
packed sequence: packed sequences export to neither TorchScript-ONNX nor dynamo-ONNX with dynamic shapes in
torch 2.13, while this form does, and it computes exactly the same final states (tested against a packed LSTM).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, fields

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from .vocab import PAD, Corpus, pad_batch


@dataclass
class StudentConfig:
    """The architecture; saved as config.json["model"] in the student directory."""

    arch: str  # bilstm | siamese_bilstm
    vocab_size: int
    num_labels: int
    embed_dim: int = 50  # 50 with GloVe-6B-50d; the paper used 300-d word2vec
    hidden: int = 150  # LSTM units per direction (the paper: 150 for SST-2)
    fc: int = 200  # ReLU layer before the logits (the paper: 200)
    dropout: float = 0.0  # on the sentence features and the ReLU layer
    embed_dropout: float = 0.0  # on the word embeddings
    max_len: int = 128  # tokens kept per text (longer texts are cut)
    frozen_rows: int = 0  # the last rows of the table: pretrained vectors of words the training set lacks

    @classmethod
    def from_dict(cls, d: dict) -> StudentConfig:
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ConfigError([f"[model.{k}] unknown key" for k in unknown])
        return cls(**d)

    def to_dict(self) -> dict:
        return asdict(self)


STUDENTS: dict[str, type[nn.Module]] = {}


def register(arch: str) -> Callable[[type[nn.Module]], type[nn.Module]]:
    """Class decorator: make a student class buildable as `StudentConfig(arch=...)`."""
    def add(cls: type[nn.Module]) -> type[nn.Module]:
        STUDENTS[arch] = cls
        return cls
    return add


def student_class(arch: str) -> type[nn.Module]:
    try:
        return STUDENTS[arch]
    except KeyError:
        raise ConfigError(f"[model.arch] unknown student '{arch}'; choose one of {', '.join(STUDENTS)}") from None


def input_names(arch: str) -> list[str]:
    """The inputs of an architecture's `forward`, in order (the exported files' input names)."""
    return list(student_class(arch).INPUTS)


class StudentEmbedding(nn.Module):
    """The word table: `weight` holds the rows of words seen in training (fine-tuned, as in the paper); the
    buffer `frozen` holds pretrained vectors of words the training set never shows (vocabulary expansion). Those
    rows could never receive a gradient anyway; keeping them out of the parameters keeps Adam's dense update
    as small as the trained vocabulary, yet a dev word like "mesmerizing" gets its GloVe vector instead of UNK."""

    def __init__(self, rows: int, dim: int, frozen_rows: int = 0):
        super().__init__()
        self.trainable_rows = rows - frozen_rows
        self.padding_idx = PAD  # no gradient reaches the PAD row
        self.weight = nn.Parameter(torch.randn(self.trainable_rows, dim) * 0.1)
        self.register_buffer("frozen", torch.zeros(frozen_rows, dim))

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        # ids [B, T] -> [B, T, E]
        if self.frozen.size(0) == 0:
            return F.embedding(ids, self.weight, padding_idx=self.padding_idx)
        n = self.trainable_rows
        trained = F.embedding(ids.clamp(max=n - 1), self.weight, padding_idx=self.padding_idx)
        fixed = F.embedding((ids - n).clamp(min=0), self.frozen)
        return torch.where((ids < n).unsqueeze(-1), trained, fixed)


class BiLSTMEncoder(nn.Module):
    """A bidirectional LSTM over padded input with explicit lengths; returns [final forward ; final backward].

    The forward direction reads the padded batch as is and takes its output at each row's last real position.
    The backward direction reads each row reversed *within its length* (padding stays at the end) and takes its
    output at the same position, which is where it has read the whole row backwards. Padding never reaches a
    state we read, so this equals `nn.LSTM(bidirectional=True)` over a packed sequence.
    """

    def __init__(self, embed_dim: int, hidden: int):
        super().__init__()
        self.hidden = hidden
        self.fwd = nn.LSTM(embed_dim, hidden, batch_first=True)
        self.bwd = nn.LSTM(embed_dim, hidden, batch_first=True)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        # x [B, T, E], lengths [B] (each >= 1)
        pos = torch.arange(x.size(1), device=x.device).unsqueeze(0)  # [1, T]
        n = lengths.unsqueeze(1)  # [B, 1]
        rev = torch.where(pos < n, n - 1 - pos, pos)  # [B, T]: reversed index within each row's length
        x_rev = x.gather(1, rev.unsqueeze(2).expand(-1, -1, x.size(2)))  # [B, T, E]
        out_f, _ = self.fwd(x)  # [B, T, H]
        out_b, _ = self.bwd(x_rev)  # [B, T, H]
        last = (lengths - 1).view(-1, 1, 1).expand(-1, 1, self.hidden)  # [B, 1, H]
        h_f = out_f.gather(1, last).squeeze(1)  # [B, H]
        h_b = out_b.gather(1, last).squeeze(1)  # [B, H]
        return torch.cat([h_f, h_b], dim=1)  # [B, 2H]


@register("bilstm")
class BiLSTMClassifier(nn.Module):
    """Single sentence: embedding -> BiLSTM -> [h_fwd ; h_bwd] -> ReLU FC -> logits (Tang et al. 2019, Fig. 1)."""

    INPUTS = ("ids", "lengths")

    def __init__(self, cfg: StudentConfig):
        super().__init__()
        self.embedding = StudentEmbedding(cfg.vocab_size, cfg.embed_dim, cfg.frozen_rows)
        self.embed_dropout = nn.Dropout(cfg.embed_dropout)
        self.encoder = BiLSTMEncoder(cfg.embed_dim, cfg.hidden)
        self.dropout = nn.Dropout(cfg.dropout)
        self.fc = nn.Linear(self.features_dim(cfg), cfg.fc)
        self.out = nn.Linear(cfg.fc, cfg.num_labels)

    @staticmethod
    def features_dim(cfg: StudentConfig) -> int:
        return 2 * cfg.hidden

    def encode(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.encoder(self.embed_dropout(self.embedding(ids)), lengths)  # [B, 2H]

    def classify(self, features: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.fc(self.dropout(features)))  # [B, FC]
        return self.out(self.dropout(h))  # [B, C]

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        return self.classify(self.encode(ids, lengths))


@register("siamese_bilstm")
class SiameseBiLSTMClassifier(BiLSTMClassifier):
    """Pairs: one shared encoder for both sentences, features [h1, h2, h1*h2, |h1-h2|] -> ReLU FC -> logits."""

    INPUTS = ("ids", "lengths", "ids_b", "lengths_b")

    @staticmethod
    def features_dim(cfg: StudentConfig) -> int:
        return 4 * 2 * cfg.hidden

    def pair_features(self, ids: torch.Tensor, lengths: torch.Tensor, ids_b: torch.Tensor,
                      lengths_b: torch.Tensor) -> torch.Tensor:
        h1 = self.encode(ids, lengths)  # [B, 2H]
        h2 = self.encode(ids_b, lengths_b)  # [B, 2H]
        return torch.cat([h1, h2, h1 * h2, (h1 - h2).abs()], dim=1)  # [B, 8H]

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor, ids_b: torch.Tensor,  # type: ignore[override]
                lengths_b: torch.Tensor) -> torch.Tensor:
        return self.classify(self.pair_features(ids, lengths, ids_b, lengths_b))


def build_model(cfg: StudentConfig, embedding: np.ndarray | None = None) -> nn.Module:
    """The model of `cfg` (random weights), with `embedding` [vocab_size, embed_dim] as its word table if given:
    the first rows trained, the last `frozen_rows` fixed."""
    model = student_class(cfg.arch)(cfg)
    if embedding is not None:
        if embedding.shape != (cfg.vocab_size, cfg.embed_dim):
            raise ConfigError(f"[model] embedding table {embedding.shape} does not match "
                              f"vocab_size x embed_dim = {(cfg.vocab_size, cfg.embed_dim)}")
        n = cfg.vocab_size - cfg.frozen_rows
        with torch.no_grad():
            model.embedding.weight.copy_(torch.from_numpy(embedding[:n]))
            model.embedding.frozen.copy_(torch.from_numpy(embedding[n:]))
    return model


@torch.no_grad()
def predict_logits(model: nn.Module, a: Corpus, b: Corpus | None, max_len: int,
                   batch_size: int = 256, device: torch.device | None = None) -> np.ndarray:
    """Logits [N, C] for encoded rows, in row order; batches are formed from length-sorted rows (less padding).
    `device`: where the model is (default CPU)."""
    model.eval()
    order = np.argsort(a.lengths + (b.lengths if b is not None else 0), kind="stable")
    out: np.ndarray | None = None
    for i in range(0, len(order), batch_size):
        rows = order[i:i + batch_size]
        inputs = [*pad_batch(a, rows, max_len)]
        if b is not None:
            inputs += [*pad_batch(b, rows, max_len)]
        if device is not None:
            inputs = [t.to(device, non_blocking=True) for t in inputs]
        logits = model(*inputs).float().cpu().numpy()
        if out is None:
            out = np.zeros((len(order), logits.shape[1]), dtype=np.float32)
        out[rows] = logits
    return out if out is not None else np.zeros((0, 0), dtype=np.float32)
