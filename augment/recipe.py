"""The paper's recipe: n_iter draws per example, each through the three rules, deduplicated dataset-wide.

Determinism: example i's draws come from a generator seeded with (seed, i) alone, so a seed gives the same rows
whatever the number of worker processes or how examples are chunked. Workers render their draws to text and
drop copies of their own original; the main process then walks the rows in (example, draw) order and drops any
synthetic row equal to a row already kept, originals included.

Pairs: each draw perturbs sentence A, sentence B, or both, chosen uniformly (1/3 each); dedupe is on the pair.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field

import numpy as np

from . import MASK_SYMBOL
from .pos_table import PosTable
from .rules import MASK, POS, apply_mask, apply_pos_replace, ngram_windows, token_ops
from .tagging import TaggedCorpus

# Bits of a row's `ops`: which rules changed it (in what the row kept, after the n-gram cut).
OP_MASK, OP_POS, OP_NGRAM = 1, 2, 4
OP_NAMES = ("mask", "pos", "ngram")
PAIR_SIDES = ("a", "b", "both")


@dataclass(frozen=True)
class RecipeConfig:
    """The transfer-set recipe of Tang et al. (2019). Defaults are the paper's."""

    p_mask: float = 0.1  # per-token probability of masking
    p_pos: float = 0.1  # per-token probability of a same-POS replacement (exclusive with masking)
    p_ng: float = 0.25  # per-draw probability of keeping only a random n-gram (n in 1..5)
    n_iter: int | None = None  # draws per example; None: 20 for single sentences, 10 for pairs
    seed: int = 0

    def draws(self, is_pair: bool) -> int:
        return self.n_iter if self.n_iter is not None else (10 if is_pair else 20)

    def problems(self) -> list[str]:
        out = []
        for name in ("p_mask", "p_pos", "p_ng"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                out.append(f"{name} must be in [0, 1], got {v}")
        if self.p_mask + self.p_pos > 1.0:
            out.append(f"p_mask + p_pos must be at most 1, got {self.p_mask + self.p_pos}")
        if self.n_iter is not None and self.n_iter < 0:
            out.append(f"n_iter must be >= 0, got {self.n_iter}")
        return out

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass
class Generated:
    """Synthetic rows of a range of examples, in (example, draw) order, already rendered to text."""

    source_index: list[int] = field(default_factory=list)
    draw: list[int] = field(default_factory=list)
    ops: list[int] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)
    pairs: list[str] | None = None
    masked: list[int] = field(default_factory=list)  # tokens masked in each row
    replaced: list[int] = field(default_factory=list)  # tokens replaced by another word in each row
    unchanged: int = 0  # draws equal to their own original (dropped)


class _Renderer:
    """Turns word-id rows back into text; each token keeps the whitespace that followed it in the original."""

    def __init__(self, words: list[str]):
        n = len(words)
        # Index w (no space after) or w + n (a space after): one list lookup per token.
        self.pieces = words + [w + " " for w in words]
        self.n = n

    def __call__(self, ids: np.ndarray, space: np.ndarray, start: int, end: int) -> str:
        keys = (ids[start:end] + self.n * space[start:end]).tolist()
        pieces = self.pieces
        return "".join([pieces[k] for k in keys])


@dataclass
class _Example:
    """One sentence's token arrays, sliced from the corpus."""

    word_ids: np.ndarray
    tag_ids: np.ndarray
    space: np.ndarray


def perturb(ex: _Example, draws: int, cfg: RecipeConfig, table: PosTable, mask_id: int,
            rng: np.random.Generator) -> tuple[np.ndarray, ...]:
    """`draws` perturbed copies of one sentence: word ids [draws, L], window starts and ends, ops bits, and the
    number of tokens masked and replaced inside each window.

    Random numbers are consumed in a fixed order (token rules, replacements, n-gram windows), so the same
    generator state always gives the same draws."""
    length = len(ex.word_ids)
    shape = (draws, length)
    ops = token_ops(shape, cfg.p_mask, cfg.p_pos, rng)
    base = np.broadcast_to(ex.word_ids, shape)
    ids = apply_pos_replace(apply_mask(base, ops, mask_id), ex.tag_ids, ops, table, rng)
    win = ngram_windows(draws, length, cfg.p_ng, rng)
    inside = (np.arange(length) >= win.start[:, None]) & (np.arange(length) < win.end[:, None])
    masked = (ops == MASK) & inside
    replaced = (ops == POS) & (ids != base) & inside
    bits = (OP_MASK * masked.any(1) + OP_POS * replaced.any(1)
            + OP_NGRAM * ((win.end - win.start) < length)).astype(np.uint8)
    return ids, win.start, win.end, bits, masked.sum(1), replaced.sum(1)


def generate(corpus: TaggedCorpus, table: PosTable, cfg: RecipeConfig, indices: range, *,
             num_examples: int, is_pair: bool) -> Generated:
    """Synthetic rows of examples `indices`. Single: example i is corpus text i. Pairs: example i is corpus
    texts i (A) and num_examples + i (B)."""
    draws = cfg.draws(is_pair)
    words = [*corpus.words, MASK_SYMBOL]
    mask_id = len(words) - 1
    render = _Renderer(words)
    out = Generated(pairs=[] if is_pair else None)

    def example(k: int) -> _Example:
        s, e = corpus.offsets[k], corpus.offsets[k + 1]
        return _Example(corpus.word_ids[s:e], corpus.tag_ids[s:e], corpus.space[s:e])

    for i in indices:
        if draws == 0:
            break
        rng = np.random.default_rng([cfg.seed, i])
        a = example(i)
        ids_a, s_a, e_a, bits_a, m_a, r_a = perturb(a, draws, cfg, table, mask_id, rng)
        original_a = render(a.word_ids, a.space, 0, len(a.word_ids))
        if is_pair:
            b = example(num_examples + i)
            ids_b, s_b, e_b, bits_b, m_b, r_b = perturb(b, draws, cfg, table, mask_id, rng)
            side = rng.integers(0, 3, draws)  # 0: A only, 1: B only, 2: both
            original_b = render(b.word_ids, b.space, 0, len(b.word_ids))
        seen: set = set()
        for d in range(draws):
            use_a = not is_pair or side[d] != 1
            text = render(ids_a[d], a.space, s_a[d], e_a[d]) if use_a else original_a
            bits, masked, replaced = (int(bits_a[d]), int(m_a[d]), int(r_a[d])) if use_a else (0, 0, 0)
            if is_pair:
                use_b = side[d] != 0
                pair = render(ids_b[d], b.space, s_b[d], e_b[d]) if use_b else original_b
                if use_b:
                    bits, masked, replaced = bits | int(bits_b[d]), masked + int(m_b[d]), replaced + int(r_b[d])
                key = (text, pair)
                unchanged = text == original_a and pair == original_b
            else:
                key = text
                unchanged = text == original_a
            if unchanged:
                out.unchanged += 1
                continue
            if key in seen:  # a repeat within this example: the dataset-wide pass would drop it anyway
                continue
            seen.add(key)
            out.source_index.append(i)
            out.draw.append(d)
            out.ops.append(bits)
            out.texts.append(text)
            if is_pair:
                out.pairs.append(pair)
            out.masked.append(masked)
            out.replaced.append(replaced)
    return out


# ----------------------------------------------------------------------------------------------- workers

_worker_args: tuple | None = None


def _worker_init(*args) -> None:
    global _worker_args
    _worker_args = args


def _worker_generate(indices: range) -> Generated:
    corpus, table, cfg, num_examples, is_pair = _worker_args
    return generate(corpus, table, cfg, indices, num_examples=num_examples, is_pair=is_pair)


def generate_all(corpus: TaggedCorpus, table: PosTable, cfg: RecipeConfig, *, num_examples: int, is_pair: bool,
                 workers: int = 1, chunk_size: int = 2000,
                 progress: Callable[[int], None] | None = None) -> list[Generated]:
    """Generate for every example, in chunks (in worker processes when `workers` > 1), in example order."""
    chunks = [range(i, min(i + chunk_size, num_examples)) for i in range(0, num_examples, chunk_size)]
    workers = max(1, min(workers, len(chunks), os.cpu_count() or 1))
    results = []
    if workers == 1:
        for c in chunks:
            results.append(generate(corpus, table, cfg, c, num_examples=num_examples, is_pair=is_pair))
            if progress:
                progress(len(c))
        return results
    with ProcessPoolExecutor(workers, initializer=_worker_init,
                             initargs=(corpus, table, cfg, num_examples, is_pair)) as pool:
        for c, r in zip(chunks, pool.map(_worker_generate, chunks)):
            results.append(r)
            if progress:
                progress(len(c))
    return results


# ----------------------------------------------------------------------------------------------- the transfer set

@dataclass
class TransferRows:
    """The transfer set as columns: each original followed by its kept synthetic rows."""

    texts: list[str]
    pairs: list[str] | None
    source_index: np.ndarray  # int64
    is_original: np.ndarray  # bool
    ops: np.ndarray  # uint8 bits: OP_MASK | OP_POS | OP_NGRAM
    stats: dict


def assemble(texts: list[str], pairs: list[str] | None, generated: list[Generated]) -> TransferRows:
    """Interleave originals with their synthetic rows and drop synthetic rows equal to any earlier row."""
    is_pair = pairs is not None
    kept: set = set(zip(texts, pairs)) if is_pair else set(texts)
    out_texts: list[str] = []
    out_pairs: list[str] | None = [] if is_pair else None
    src: list[int] = []
    orig: list[bool] = []
    ops: list[int] = []
    duplicates = masked = replaced = unchanged = 0
    per_rule = dict.fromkeys(OP_NAMES, 0)
    next_original = 0

    def add_original(i: int) -> None:
        out_texts.append(texts[i])
        if is_pair:
            out_pairs.append(pairs[i])
        src.append(i)
        orig.append(True)
        ops.append(0)

    for g in generated:
        unchanged += g.unchanged
        for k, i in enumerate(g.source_index):
            while next_original <= i:
                add_original(next_original)
                next_original += 1
            key = (g.texts[k], g.pairs[k]) if is_pair else g.texts[k]
            if key in kept:
                duplicates += 1
                continue
            kept.add(key)
            out_texts.append(g.texts[k])
            if is_pair:
                out_pairs.append(g.pairs[k])
            src.append(i)
            orig.append(False)
            ops.append(g.ops[k])
            masked += g.masked[k]
            replaced += g.replaced[k]
            for bit, name in zip((OP_MASK, OP_POS, OP_NGRAM), OP_NAMES):
                per_rule[name] += bool(g.ops[k] & bit)
    while next_original < len(texts):
        add_original(next_original)
        next_original += 1
    synthetic = len(out_texts) - len(texts)
    stats = {
        "originals": len(texts),
        "synthetic": synthetic,
        "rows": len(out_texts),
        "dropped_unchanged": unchanged,
        "dropped_duplicates": duplicates,
        "rows_per_rule": per_rule,
        "masked_tokens_in_synthetic_rows": masked,
        "replaced_tokens_in_synthetic_rows": replaced,
    }
    return TransferRows(out_texts, out_pairs, np.asarray(src, dtype=np.int64), np.asarray(orig, dtype=bool),
                        np.asarray(ops, dtype=np.uint8), stats)
