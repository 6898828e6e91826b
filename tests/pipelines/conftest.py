"""Fixtures of the teacher tests: tiny real BERTs with a tiny WordPiece vocabulary, and transfer sets.

The teachers are genuine `BertForSequenceClassification` models (hidden 32, 2 layers, random weights) with
genuine fast tokenizers, saved with save_pretrained into temp directories: the code under test cannot tell them
from a real teacher, only they load and run in milliseconds.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest

from augment import MASK_SYMBOL
from pipelines import store
from pipelines.tasks import TASKS, TaskSpec

REPO_ROOT = Path(__file__).resolve().parents[2]
WORDS = ("the a an movie film story plot actor good bad great awful fun boring funny sad is was not very too "
         "really and but it this that of to in with , . ! ? ' ##s ##ly ##ing ##ed").split()
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
SENTENCE_WORDS = [w for w in WORDS if not w.startswith("##")] + ["films", "unknownword"]


def make_tokenizer(out: Path, **kwargs):
    """A lower-casing WordPiece tokenizer over WORDS and single letters, wrapped as BertTokenizerFast."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors
    from transformers import BertTokenizerFast

    vocab = {w: i for i, w in enumerate(SPECIALS + list(WORDS) + list("abcdefghijklmnopqrstuvwxyz"))}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", vocab["[CLS]"]), ("[SEP]", vocab["[SEP]"])])
    specials = {"unk_token": "[UNK]", "pad_token": "[PAD]", "cls_token": "[CLS]", "sep_token": "[SEP]",
                "mask_token": "[MASK]"}
    wrapped = BertTokenizerFast(tokenizer_object=tok, **{**specials, **kwargs})
    wrapped.save_pretrained(out)
    return wrapped


def make_teacher(out: Path, label_names: tuple[str, ...] | None = ("negative", "positive"), *, num_labels: int = 2,
                 seed: int = 0, encoder_only: bool = False, init_std: float | None = 0.3,
                 **tokenizer_kwargs) -> Path:
    """Save a tiny random BERT classifier (or, with encoder_only, a bare BertModel like the MiniLM package).
    Weight matrices are drawn with `init_std` (larger than BERT's 0.02, so logits differ visibly between rows);
    None keeps BERT's own initialisation, which trains better."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertModel

    tokenizer = make_tokenizer(out, **tokenizer_kwargs)
    names = label_names or tuple(f"LABEL_{i}" for i in range(num_labels))
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128, num_labels=len(names),
                        id2label=dict(enumerate(names)), label2id={n: i for i, n in enumerate(names)},
                        hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1)
    torch.manual_seed(seed)
    model = BertModel(config) if encoder_only else BertForSequenceClassification(config)
    with torch.no_grad():
        for p in model.parameters():
            if init_std is not None and p.ndim >= 2:
                p.normal_(0, init_std)
    from pipelines import hub

    hub.save_teacher(model, tokenizer, out)
    return out


def random_sentences(n: int, seed: int = 0, *, mask_rate: float = 0.1, max_words: int = 40) -> list[str]:
    """Sentences of 1..max_words words from the tiny vocabulary, some with the neutral mask symbol."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        words = rng.choice(SENTENCE_WORDS, size=int(rng.integers(1, max_words + 1))).tolist()
        words = [MASK_SYMBOL if rng.random() < mask_rate else w for w in words]
        out.append(" ".join(words))
    return out


def write_transfer_set(out: Path, texts: list[str], pairs: list[str] | None = None, *,
                       task: TaskSpec = TASKS["sst2"], labels: list[int | None] | None = None) -> Path:
    """A finished `augment`-stage output with the transfer-set schema, built directly (no tagging)."""
    n = len(texts)
    labels = labels if labels is not None else [i % task.num_labels if i % 3 == 0 else None for i in range(n)]
    columns = {"text": texts}
    if pairs is not None:
        columns["text_pair"] = pairs
    # Each labelled row is an original; the rows after it are synthetic rows made from it (draws 0, 1, ...).
    is_original = [lab is not None for lab in labels]
    source, draw, seen = [], [], -1
    for orig in is_original:
        seen += orig
        source.append(max(seen, 0))
        draw.append(None if orig else (0 if not draw or draw[-1] is None else draw[-1] + 1))
    columns.update(label=labels, source_index=source, draw=draw, is_original=is_original,
                   ops=[[] if o else ["mask"] for o in is_original])
    schema = store.transfer_schema(pairs is not None)
    table = pa.table(columns, schema=schema)
    fp = store.fingerprint("test-transfer", texts, pairs, labels)
    with store.stage_run("augment", out, fp, {"test": True},
                         extra={"task": task.to_dict(), "num_labels": task.num_labels}) as run:
        store.write_dataset(run.work_dir, table, schema, fp, rows_per_shard=max(1, n // 2 + 1))
        run.commit()
    return out


@pytest.fixture
def one_torch_thread(monkeypatch):
    """Tiny models gain nothing from threads, and on a shared 2-core machine torch's spinning threads can make
    them 10x slower. The teacher code keeps an OMP_NUM_THREADS choice (subprocesses inherit it too)."""
    import torch

    before = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_teacher(tmp_path_factory) -> Path:
    """A 2-label (negative, positive) tiny BERT teacher."""
    return make_teacher(tmp_path_factory.mktemp("tiny-teacher"))


@pytest.fixture(scope="session")
def tiny_transfer(tmp_path_factory) -> Path:
    """A 300-row sst2 transfer set with masked words and very different lengths."""
    return write_transfer_set(tmp_path_factory.mktemp("transfer") / "transfer", random_sentences(300))
