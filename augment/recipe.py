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
from dataclasses import asdict, dataclass

import numpy as np

from . import MASK_SYMBOL
from .pos_table import PosTable
from .rules import MASK, NGRAM_UNIFORMS, POS, apply_mask, apply_pos_replace, ngram_windows, token_ops
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
    """Synthetic rows of a range of examples, in (example, draw) order, rendered to text. Draws equal to their
    own original are already dropped (and counted); dedupe across rows happens in `assemble`."""

    source_index: np.ndarray  # int64
    draw: np.ndarray  # int32
    ops: np.ndarray  # uint8 bits
    masked: np.ndarray  # int32: tokens masked in each row
    replaced: np.ndarray  # int32: tokens replaced by another word in each row
    texts: list[str]
    pairs: list[str] | None
    unchanged: int  # draws equal to their own original (dropped)


_SEP = "\x00"  # joins rendered rows into one string that is split again; never inside a token (checked)


class _Renderer:
    """Turns word-id rows back into text; each token keeps the whitespace that followed it in the original.

    Rendering is one `str.join` over all tokens of all rows of a chunk, rows separated by _SEP: tens of times
    faster than a join per row."""

    def __init__(self, words: list[str]):
        self.n = len(words)
        # Index w: the word with no space after it; w + n: the word followed by a space.
        self.pieces = np.array(words + [w + " " for w in words] + [_SEP], dtype=object)
        self.sep_key = 2 * self.n
        self.safe = not any(_SEP in w for w in words)

    def __call__(self, word_ids: np.ndarray, space: np.ndarray, row_lengths: np.ndarray) -> list[str]:
        keys = word_ids.astype(np.int64) + self.n * space
        ends = np.cumsum(row_lengths)
        if not self.safe:
            starts = ends - row_lengths
            return ["".join(self.pieces[keys[a:b]].tolist()) for a, b in zip(starts, ends)]
        keys = np.insert(keys, ends, self.sep_key)
        return "".join(self.pieces[keys].tolist()).split(_SEP)[:-1]


@dataclass
class _SideDraws:
    """All draws of one side (sentence A or B) of a chunk of examples, rows in (example, draw) order."""

    texts: list[str]
    originals: list[str]  # per example
    bits: np.ndarray  # uint8 [rows]
    masked: np.ndarray  # int32 [rows]
    replaced: np.ndarray  # int32 [rows]


def _token_index(first: np.ndarray, lengths: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For rows of tokens (row r is corpus tokens first[r] .. first[r] + lengths[r]), per token: its corpus
    index, its row, and its position in the row."""
    row_of_tok = np.repeat(np.arange(len(lengths)), lengths)
    row_start = np.cumsum(lengths) - lengths
    k = np.arange(len(row_of_tok)) - row_start[row_of_tok]
    return first[row_of_tok] + k, row_of_tok, k


def _perturb_side(corpus: TaggedCorpus, table: PosTable, cfg: RecipeConfig, render: _Renderer, mask_id: int,
                  text_ids: np.ndarray, draws: int, tok_u: np.ndarray, rep_u: np.ndarray,
                  ng_u: np.ndarray) -> _SideDraws:
    """Apply the rules to `draws` copies of each text in `text_ids`, vectorised over the whole chunk.

    `tok_u` and `rep_u` hold one uniform per token of every row (rule choice, replacement word), `ng_u` three
    per row (the n-gram window)."""
    first = corpus.offsets[text_ids]
    lengths = corpus.offsets[text_ids + 1] - first  # [E]
    row_len = np.repeat(lengths, draws)  # [R], R = E * draws
    src, row_of_tok, k = _token_index(np.repeat(first, draws), row_len)  # [T] each
    base, tags, space = corpus.word_ids[src], corpus.tag_ids[src], corpus.space[src]

    ops = token_ops(tok_u, cfg.p_mask, cfg.p_pos)
    ids = apply_pos_replace(apply_mask(base, ops, mask_id), tags, ops, table, rep_u)
    win = ngram_windows(ng_u, row_len, cfg.p_ng)
    inside = (k >= win.start[row_of_tok]) & (k < win.end[row_of_tok])
    rows = len(row_len)
    masked = np.bincount(row_of_tok, weights=(ops == MASK) & inside, minlength=rows).astype(np.int32)
    replaced = np.bincount(row_of_tok, weights=(ops == POS) & (ids != base) & inside,
                           minlength=rows).astype(np.int32)
    bits = (OP_MASK * (masked > 0) + OP_POS * (replaced > 0)
            + OP_NGRAM * ((win.end - win.start) < row_len)).astype(np.uint8)
    texts = render(ids[inside], space[inside], win.end - win.start)
    whole, _, _ = _token_index(first, lengths)
    originals = render(corpus.word_ids[whole], corpus.space[whole], lengths)
    return _SideDraws(texts, originals, bits, masked, replaced)


def generate(corpus: TaggedCorpus, table: PosTable, cfg: RecipeConfig, indices: range, *,
             num_examples: int, is_pair: bool) -> Generated:
    """Synthetic rows of examples `indices`. Single: example i is corpus text i. Pairs: example i is corpus
    texts i (A) and num_examples + i (B).

    Example i's randomness is one matrix of uniforms from a generator seeded with (seed, i), laid out per
    draw as [A: rule per token, replacement per token, 3 n-gram] (+ the same for B, then 1 for the side)."""
    draws = cfg.draws(is_pair)
    idx = np.arange(indices.start, indices.stop, dtype=np.int64)
    sides = [idx] + ([idx + num_examples] if is_pair else [])
    lengths = [corpus.offsets[s + 1] - corpus.offsets[s] for s in sides]
    tok_u: list[list[np.ndarray]] = [[] for _ in sides]
    rep_u: list[list[np.ndarray]] = [[] for _ in sides]
    ng_u: list[list[np.ndarray]] = [[] for _ in sides]
    side_u: list[np.ndarray] = []
    for e, i in enumerate(idx.tolist()):
        widths = [2 * int(L[e]) + NGRAM_UNIFORMS for L in lengths]
        u = np.random.default_rng([cfg.seed, i]).random((draws, sum(widths) + is_pair))
        col = 0
        for s, width in enumerate(widths):
            n = (width - NGRAM_UNIFORMS) // 2
            tok_u[s].append(u[:, col:col + n].ravel())
            rep_u[s].append(u[:, col + n:col + 2 * n].ravel())
            ng_u[s].append(u[:, col + 2 * n:col + width])
            col += width
        if is_pair:
            side_u.append(u[:, col])

    words = [*corpus.words, MASK_SYMBOL]
    render = _Renderer(words)
    empty = np.zeros(0)
    out = [
        _perturb_side(corpus, table, cfg, render, len(words) - 1, s, draws,
                      np.concatenate(tok_u[k]) if tok_u[k] else empty,
                      np.concatenate(rep_u[k]) if rep_u[k] else empty,
                      np.concatenate(ng_u[k]) if ng_u[k] else np.zeros((0, NGRAM_UNIFORMS)))
        for k, s in enumerate(sides)
    ]
    source = np.repeat(idx, draws)
    draw = np.tile(np.arange(draws, dtype=np.int32), len(idx))
    a = out[0]
    orig_a = [t for t in a.originals for _ in range(draws)]
    if is_pair:
        b = out[1]
        side = np.floor(np.concatenate(side_u) * 3).astype(np.int64) if side_u else np.zeros(0, np.int64)
        use_a, use_b = side != 1, side != 0  # 0: A only, 1: B only, 2: both
        orig_b = [t for t in b.originals for _ in range(draws)]
        texts = [t if u else o for t, o, u in zip(a.texts, orig_a, use_a.tolist())]
        pairs = [t if u else o for t, o, u in zip(b.texts, orig_b, use_b.tolist())]
        changed = np.array([x != ox or y != oy for x, ox, y, oy in zip(texts, orig_a, pairs, orig_b)], dtype=bool)
        bits = (a.bits * use_a) | (b.bits * use_b)
        masked = a.masked * use_a + b.masked * use_b
        replaced = a.replaced * use_a + b.replaced * use_b
    else:
        texts, pairs = a.texts, None
        changed = np.array([x != o for x, o in zip(texts, orig_a)], dtype=bool)
        bits, masked, replaced = a.bits, a.masked, a.replaced
    keep = np.flatnonzero(changed)
    return Generated(
        source_index=source[keep], draw=draw[keep], ops=np.asarray(bits, dtype=np.uint8)[keep],
        masked=np.asarray(masked, dtype=np.int32)[keep], replaced=np.asarray(replaced, dtype=np.int32)[keep],
        texts=[texts[r] for r in keep.tolist()], pairs=[pairs[r] for r in keep.tolist()] if is_pair else None,
        unchanged=int(len(changed) - len(keep)),
    )


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
        g_ops, g_masked, g_replaced = g.ops.tolist(), g.masked.tolist(), g.replaced.tolist()
        for k, i in enumerate(g.source_index.tolist()):
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
            ops.append(g_ops[k])
            masked += g_masked[k]
            replaced += g_replaced[k]
            for bit, name in zip((OP_MASK, OP_POS, OP_NGRAM), OP_NAMES):
                per_rule[name] += bool(g_ops[k] & bit)
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
