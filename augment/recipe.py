"""The paper's recipe: n_iter draws per example, each through the three rules, deduplicated dataset-wide.

Determinism: example i's draws come from a generator seeded with (seed, i) alone, so a seed gives the same rows
whatever the number of worker processes or how examples are chunked. Workers render their draws to text and
drop copies of their own original; the main process then walks the rows in (example, draw) order and drops any
synthetic row equal to a row already kept, originals included.

Equal means equal as the models read the text (`dedupe_key`: whitespace runs collapsed, none at the ends):
rendered rows carry no leading or trailing whitespace, so an n-gram ending on a token that had a space after it
is not kept beside an original without one. Whitespace tokens (spaCy's `_SP`) are not words: the rules never
mask or replace them and n-gram windows do not count them.

Pairs: each draw perturbs sentence A, sentence B, or both, chosen uniformly (1/3 each); dedupe is on the pair.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from hashlib import blake2b

import numpy as np

from . import MASK_SYMBOL
from .pos_table import PosTable
from .rules import MASK, NGRAM_UNIFORMS, POS, apply_mask, apply_pos_replace, ngram_windows, token_ops
from .tagging import TaggedCorpus
from .workers import Mapper, ProcessMapper

# Bits of a row's `ops`: which rules changed it (in what the row kept, after the n-gram cut).
OP_MASK, OP_POS, OP_NGRAM = 1, 2, 4
OP_NAMES = ("mask", "pos", "ngram")


def _setting(default, help: str):
    """A field with its help text (pipelines.flags turns it into a command-line flag)."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class RecipeConfig:
    """The transfer-set recipe of Tang et al. (2019). Defaults are the paper's."""

    p_mask: float = _setting(0.1, help="per-token probability of masking")
    p_pos: float = _setting(0.1, help="per-token probability of a same-POS replacement (exclusive with masking)")
    p_ng: float = _setting(0.25, help="per-draw probability of keeping only a random n-gram (n in 1..5)")
    n_iter: int | None = _setting(None, help="draws per example; left out: 20 for single sentences, 10 for pairs")
    seed: int = _setting(0, help="seed of every draw (one generator per example)")

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
    """Synthetic rows of examples `start` .. `stop`, in (example, draw) order, rendered to text. Draws equal to
    their own original (in the dedupe key's space) are already dropped (and counted); dedupe across rows happens
    in `TransferAssembler`, on `key_hashes` (64-bit hashes of the dedupe keys: compact, and cheap to ship from a
    worker)."""

    start: int
    stop: int
    source_index: np.ndarray  # int64
    draw: np.ndarray  # int32
    ops: np.ndarray  # uint8 bits
    masked: np.ndarray  # int32: tokens masked in each row
    replaced: np.ndarray  # int32: tokens replaced by another word in each row
    texts: list[str]
    pairs: list[str] | None
    unchanged: int  # draws equal to their own original (dropped)
    key_hashes: np.ndarray  # uint64: row_hashes of the rows' dedupe keys


def dedupe_key(text: str) -> str:
    """The text as the models read it, for dedupe: tokenizers split on whitespace and drop it, so rows that
    differ only in their whitespace (leading, trailing, or the length of a run) are one row to them."""
    return " ".join(text.split())


_SEP = "\x00"  # joins rendered rows into one string that is split again; never inside a token (checked)


def row_hashes(keys: Sequence[str], pair_keys: Sequence[str] | None = None) -> np.ndarray:
    """uint64 [n]: a 64-bit BLAKE2b hash of each row's dedupe key (of the pair, for pairs), the same in every
    process and on every machine (unlike Python's `hash`). Two different rows share a hash with probability
    about n^2 / 2^65 over a set of n rows (3e-6 at 10M rows): that is the price of 8 bytes a row of dedupe state
    instead of the strings."""
    def digest(key: str) -> int:
        return int.from_bytes(blake2b(key.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")

    if pair_keys is None:
        return np.fromiter(map(digest, keys), dtype=np.uint64, count=len(keys))
    # The length prefix keeps ("ab", "c") and ("a", "bc") apart.
    return np.fromiter((digest(f"{len(a)}:{a}{b}") for a, b in zip(keys, pair_keys)), dtype=np.uint64,
                       count=len(keys))


class _Renderer:
    """Turns word-id rows back into text; each token keeps the whitespace that followed it in the original,
    except a row's last token: rows carry no leading or trailing whitespace.

    Rendering is one `str.join` over all tokens of all rows of a chunk, rows separated by _SEP: tens of times
    faster than a join per row."""

    def __init__(self, words: list[str], irregular: np.ndarray):
        self.n = len(words)
        # Index w: the word with no space after it; w + n: the word followed by a space.
        self.pieces = np.array(words + [w + " " for w in words] + [_SEP], dtype=object)
        self.sep_key = 2 * self.n
        self.safe = not any(_SEP in w for w in words)
        # bool per word: the words that can make a row differ from its dedupe key (TaggedCorpus.spaced_words).
        # Rows without one are their own key, so only the rare rows with one are normalised: normalising every
        # row would double the generation time.
        self.irregular = irregular

    def _join(self, keys: np.ndarray, row_lengths: np.ndarray) -> list[str]:
        ends = np.cumsum(row_lengths)
        if not self.safe:
            starts = ends - row_lengths
            return ["".join(self.pieces[keys[a:b]].tolist()) for a, b in zip(starts, ends)]
        keys = np.insert(keys, ends, self.sep_key)
        return "".join(self.pieces[keys].tolist()).split(_SEP)[:-1]

    def __call__(self, word_ids: np.ndarray, space: np.ndarray,
                 row_lengths: np.ndarray) -> tuple[list[str], list[str]]:
        """The rows as text, and their dedupe keys."""
        ends = np.cumsum(row_lengths)
        space = np.array(space, dtype=bool, copy=True)
        space[ends[row_lengths > 0] - 1] = False  # the last token's trailing space
        rows = self._join(word_ids.astype(np.int64) + self.n * space, row_lengths)
        row_of_tok = np.repeat(np.arange(len(row_lengths)), row_lengths)
        odd = np.flatnonzero(np.bincount(row_of_tok, weights=self.irregular[word_ids],
                                         minlength=len(row_lengths)))
        if not len(odd):
            return rows, rows  # every row is its own key: share the list (and, when pickled, the strings)
        keys = list(rows)
        for r in odd.tolist():
            rows[r] = rows[r].strip()
            keys[r] = dedupe_key(rows[r])
        return rows, keys


@dataclass
class _SideDraws:
    """All draws of one side (sentence A or B) of a chunk of examples, rows in (example, draw) order."""

    texts: list[str]
    keys: list[str]
    originals: list[str]  # per example
    original_keys: list[str]
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


def _ngram_cut(ng_u: np.ndarray, is_word: np.ndarray, row_of_tok: np.ndarray, k: np.ndarray,
               row_len: np.ndarray, p_ng: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The n-gram rule over rows of tokens (`k`: each token's position in its row): which tokens each row keeps
    (bool per token), which rows it cut, and how many tokens each row keeps.

    Windows count words, not whitespace tokens, so a window never holds whitespace alone: a whitespace token is
    kept when it lies between two kept words, dropped when it lies before or after the window."""
    if is_word.all():  # no whitespace tokens, the common case: positions are word positions
        win = ngram_windows(ng_u, row_len, p_ng)
        inside = (k >= win.start[row_of_tok]) & (k < win.end[row_of_tok])
        return inside, (win.end - win.start) < row_len, win.end - win.start
    words = np.bincount(row_of_tok, weights=is_word, minlength=len(row_len)).astype(np.int64)
    before = np.cumsum(is_word) - is_word  # words before each token, over all rows
    pos = before - (np.cumsum(words) - words)[row_of_tok]  # words before each token in its own row
    win = ngram_windows(ng_u, words, p_ng)
    lo = win.start[row_of_tok] + ~is_word  # a whitespace token needs a kept word before it
    inside = (pos >= lo) & (pos < win.end[row_of_tok])
    kept = np.bincount(row_of_tok, weights=inside, minlength=len(row_len)).astype(np.int64)
    return inside, (win.end - win.start) < words, kept


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
    blank = corpus.whitespace[src]

    ops = token_ops(tok_u, cfg.p_mask, cfg.p_pos, frozen=blank)
    ids = apply_pos_replace(apply_mask(base, ops, mask_id), tags, ops, table, rep_u)
    rows = len(row_len)
    inside, cut, kept = _ngram_cut(ng_u, ~blank, row_of_tok, k, row_len, cfg.p_ng)
    masked = np.bincount(row_of_tok, weights=(ops == MASK) & inside, minlength=rows).astype(np.int32)
    replaced = np.bincount(row_of_tok, weights=(ops == POS) & (ids != base) & inside,
                           minlength=rows).astype(np.int32)
    bits = (OP_MASK * (masked > 0) + OP_POS * (replaced > 0) + OP_NGRAM * cut).astype(np.uint8)
    texts, keys = render(ids[inside], space[inside], kept)
    whole, _, _ = _token_index(first, lengths)
    originals, original_keys = render(corpus.word_ids[whole], corpus.space[whole], lengths)
    return _SideDraws(texts, keys, originals, original_keys, bits, masked, replaced)


@dataclass
class _Uniforms:
    """One side's uniforms for a chunk: per token (rule, replacement) and per row (n-gram), rows in order."""

    tok: np.ndarray
    rep: np.ndarray
    ngram: np.ndarray  # [rows, NGRAM_UNIFORMS]


def _draw_uniforms(seed: int, idx: np.ndarray, lengths: list[np.ndarray], draws: int,
                   is_pair: bool) -> tuple[list[_Uniforms], np.ndarray]:
    """Example i's randomness is one matrix of uniforms from a generator seeded with (seed, i), laid out per
    draw as [A: rule per token, replacement per token, 3 n-gram] (+ the same for B, then 1 for the side).
    Returns each side's uniforms and the side uniform of every pair row."""
    tok_u: list[list[np.ndarray]] = [[] for _ in lengths]
    rep_u: list[list[np.ndarray]] = [[] for _ in lengths]
    ng_u: list[list[np.ndarray]] = [[] for _ in lengths]
    side_u: list[np.ndarray] = []
    for e, i in enumerate(idx.tolist()):
        widths = [2 * int(L[e]) + NGRAM_UNIFORMS for L in lengths]
        u = np.random.default_rng([seed, i]).random((draws, sum(widths) + is_pair))
        col = 0
        for s, width in enumerate(widths):
            n = (width - NGRAM_UNIFORMS) // 2
            tok_u[s].append(u[:, col:col + n].ravel())
            rep_u[s].append(u[:, col + n:col + 2 * n].ravel())
            ng_u[s].append(u[:, col + 2 * n:col + width])
            col += width
        if is_pair:
            side_u.append(u[:, col])

    def joined(parts: list[np.ndarray], empty: np.ndarray) -> np.ndarray:
        return np.concatenate(parts) if parts else empty

    sides = [_Uniforms(joined(tok_u[s], np.zeros(0)), joined(rep_u[s], np.zeros(0)),
                       joined(ng_u[s], np.zeros((0, NGRAM_UNIFORMS)))) for s in range(len(lengths))]
    return sides, joined(side_u, np.zeros(0))


@dataclass
class _Rows:
    """A chunk's rows before the own-original check: text, key, and what changed them."""

    texts: list[str]
    keys: list[str]
    pairs: list[str] | None
    pair_keys: list[str] | None
    changed: np.ndarray  # bool: differs from its own original in the dedupe key's space
    bits: np.ndarray
    masked: np.ndarray
    replaced: np.ndarray


def _repeat(items: list[str], draws: int) -> list[str]:
    return [t for t in items for _ in range(draws)]


def _single_rows(a: _SideDraws, draws: int) -> _Rows:
    orig_keys = _repeat(a.original_keys, draws)
    changed = np.array([k != o for k, o in zip(a.keys, orig_keys)], dtype=bool)
    return _Rows(a.texts, a.keys, None, None, changed, a.bits, a.masked, a.replaced)


def _pair_rows(a: _SideDraws, b: _SideDraws, side_u: np.ndarray, draws: int) -> _Rows:
    """Each pair row perturbs A only, B only, or both (side uniform in thirds); the other side stays original."""
    side = np.floor(side_u * 3).astype(np.int64)
    use_a, use_b = side != 1, side != 0  # 0: A only, 1: B only, 2: both

    def pick(side_draws: _SideDraws, use: np.ndarray) -> tuple[list[str], list[str], list[str]]:
        orig, orig_keys = _repeat(side_draws.originals, draws), _repeat(side_draws.original_keys, draws)
        flags = use.tolist()
        texts = [t if u else o for t, o, u in zip(side_draws.texts, orig, flags)]
        keys = [k if u else o for k, o, u in zip(side_draws.keys, orig_keys, flags)]
        return texts, keys, orig_keys

    texts, keys, orig_a = pick(a, use_a)
    pairs, pair_keys, orig_b = pick(b, use_b)
    changed = np.array([x != ox or y != oy for x, ox, y, oy in zip(keys, orig_a, pair_keys, orig_b)], dtype=bool)
    return _Rows(texts, keys, pairs, pair_keys, changed, (a.bits * use_a) | (b.bits * use_b),
                 a.masked * use_a + b.masked * use_b, a.replaced * use_a + b.replaced * use_b)


def generate(corpus: TaggedCorpus, table: PosTable, cfg: RecipeConfig, indices: range, *,
             num_examples: int, is_pair: bool) -> Generated:
    """Synthetic rows of examples `indices`. Single: example i is corpus text i. Pairs: example i is corpus
    texts i (A) and num_examples + i (B). Randomness: see `_draw_uniforms`."""
    draws = cfg.draws(is_pair)
    idx = np.arange(indices.start, indices.stop, dtype=np.int64)
    sides = [idx] + ([idx + num_examples] if is_pair else [])
    lengths = [corpus.offsets[s + 1] - corpus.offsets[s] for s in sides]
    uniforms, side_u = _draw_uniforms(cfg.seed, idx, lengths, draws, is_pair)

    words = [*corpus.words, MASK_SYMBOL]
    render = _Renderer(words, np.append(corpus.spaced_words, False))  # the mask symbol holds no whitespace
    out = [_perturb_side(corpus, table, cfg, render, len(words) - 1, s, draws, u.tok, u.rep, u.ngram)
           for s, u in zip(sides, uniforms)]
    rows = _pair_rows(out[0], out[1], side_u, draws) if is_pair else _single_rows(out[0], draws)
    source = np.repeat(idx, draws)
    draw = np.tile(np.arange(draws, dtype=np.int32), len(idx))
    keep = np.flatnonzero(rows.changed)
    kept = keep.tolist()

    def kept_of(items: list[str] | None) -> list[str] | None:
        return None if items is None else [items[r] for r in kept]

    keys = rows.texts if rows.keys is rows.texts else rows.keys  # rows that are their own keys: shared
    return Generated(
        start=indices.start, stop=indices.stop,
        source_index=source[keep], draw=draw[keep], ops=np.asarray(rows.bits, dtype=np.uint8)[keep],
        masked=np.asarray(rows.masked, dtype=np.int32)[keep],
        replaced=np.asarray(rows.replaced, dtype=np.int32)[keep],
        texts=kept_of(rows.texts), pairs=kept_of(rows.pairs), unchanged=int(len(rows.changed) - len(keep)),
        key_hashes=row_hashes(kept_of(keys), kept_of(rows.pair_keys)),
    )


# ----------------------------------------------------------------------------------------------- workers

class ChunkGenerator:
    """`generate` over ranges of examples, with the corpus, POS table and recipe set up once (a callable class:
    one per worker process or Ray actor)."""

    def __init__(self, corpus: TaggedCorpus, table: PosTable, cfg: RecipeConfig, num_examples: int, is_pair: bool):
        _ = corpus.whitespace, corpus.spaced_words  # cached once per worker, not per chunk
        self.corpus, self.table, self.cfg = corpus, table, cfg
        self.num_examples, self.is_pair = num_examples, is_pair

    def __call__(self, indices: range) -> Generated:
        return generate(self.corpus, self.table, self.cfg, indices, num_examples=self.num_examples,
                        is_pair=self.is_pair)


def generate_chunks(corpus: TaggedCorpus, table: PosTable, cfg: RecipeConfig, *, num_examples: int,
                    is_pair: bool, workers: int | None = 1, cpu_limit: int | None = None, chunk_size: int = 2000,
                    progress: Callable[[int], None] | None = None,
                    mapper: Mapper | None = None) -> Iterator[Generated]:
    """Generate for every example, in chunks of `chunk_size` examples, yielded in example order as they are
    made. Chunks run through `mapper` (see augment.workers), by default worker processes on this machine when
    more than one worker runs (`workers` None: one per CPU; capped by `cpu_limit`, default the affinity mask)."""
    chunks = [range(i, min(i + chunk_size, num_examples)) for i in range(0, num_examples, chunk_size)]
    mapper = mapper or ProcessMapper(workers, cpu_limit)
    kwargs = {"corpus": corpus, "table": table, "cfg": cfg, "num_examples": num_examples, "is_pair": is_pair}
    for c, generated in zip(chunks, mapper(ChunkGenerator, kwargs, chunks)):
        if progress:
            progress(len(c))
        yield generated


def generate_all(corpus: TaggedCorpus, table: PosTable, cfg: RecipeConfig, **kwargs) -> list[Generated]:
    """Every chunk of `generate_chunks`, as a list (for small sets and tests)."""
    return list(generate_chunks(corpus, table, cfg, **kwargs))


# ----------------------------------------------------------------------------------------------- the transfer set

@dataclass
class TransferRows:
    """Transfer-set rows as columns: each original followed by its kept synthetic rows."""

    texts: list[str]
    pairs: list[str] | None
    source_index: np.ndarray  # int64
    is_original: np.ndarray  # bool
    ops: np.ndarray  # uint8 bits: OP_MASK | OP_POS | OP_NGRAM
    stats: dict
    draw: np.ndarray | None = None  # int32: the draw that made each synthetic row; -1 for originals


class SeenRows:
    """The dedupe state: the 64-bit hashes of every row kept so far, as one sorted uint64 array (8 bytes a row,
    where a set of strings costs about a hundred)."""

    def __init__(self, hashes: np.ndarray):
        self.sorted = np.unique(hashes)

    def keep_new(self, hashes: np.ndarray) -> np.ndarray:
        """bool per row: not seen before and the first of its hash among `hashes` (which then count as seen)."""
        keep = np.zeros(len(hashes), dtype=bool)
        keep[np.unique(hashes, return_index=True)[1]] = True
        if len(self.sorted):
            pos = np.minimum(np.searchsorted(self.sorted, hashes), len(self.sorted) - 1)
            keep &= self.sorted[pos] != hashes
        new = np.sort(hashes[keep])
        # One new array of the merged length (a sort of the concatenation would need two): 8 bytes a row.
        self.sorted = np.insert(self.sorted, np.searchsorted(self.sorted, new), new)
        return keep


class TransferAssembler:
    """Turns generated chunks, in example order, into transfer-set rows chunk by chunk: each original followed by
    its synthetic rows, dropping any synthetic row equal (by `dedupe_key`) to a row already kept or to any
    original. Originals are kept as they are, whitespace included. Memory: the originals and `SeenRows`."""

    def __init__(self, texts: list[str], pairs: list[str] | None):
        self.texts, self.pairs = texts, pairs
        keys = list(map(dedupe_key, texts))
        self.seen = SeenRows(row_hashes(keys, list(map(dedupe_key, pairs)) if pairs is not None else None))
        self.counts = {"unchanged": 0, "duplicates": 0, "masked": 0, "replaced": 0}

    def __call__(self, g: Generated) -> TransferRows:
        keep = self.seen.keep_new(g.key_hashes)
        self.counts["unchanged"] += g.unchanged
        self.counts["duplicates"] += int(len(keep) - keep.sum())
        self.counts["masked"] += int(g.masked[keep].sum())
        self.counts["replaced"] += int(g.replaced[keep].sum())
        kept = np.flatnonzero(keep)
        src = g.source_index[kept]
        originals = np.arange(g.start, g.stop, dtype=np.int64)
        # Output order: by example, its original first (draw -1), then its kept draws in order.
        order = np.lexsort((np.concatenate([np.full(len(originals), -1), g.draw[kept]]),
                            np.concatenate([originals, src])))
        n_orig = len(originals)

        def interleave(orig: list[str], synthetic: list[str]) -> list[str]:
            both = orig + [synthetic[k] for k in kept.tolist()]
            return [both[j] for j in order.tolist()]

        texts = interleave(self.texts[g.start:g.stop], g.texts)
        pairs = interleave(self.pairs[g.start:g.stop], g.pairs) if self.pairs is not None else None
        return TransferRows(texts, pairs, np.concatenate([originals, src])[order], order < n_orig,
                            np.concatenate([np.zeros(n_orig, np.uint8), g.ops[kept]])[order], {},
                            np.concatenate([np.full(n_orig, -1, np.int32), g.draw[kept]])[order])

    def stats(self, rows: int, originals: int, rows_per_rule: dict[str, int]) -> dict:
        """The transfer set's statistics, given what the caller counted of the rows it wrote."""
        c = self.counts
        return {"originals": originals, "synthetic": rows - originals, "rows": rows,
                "dropped_unchanged": c["unchanged"], "dropped_duplicates": c["duplicates"],
                "rows_per_rule": rows_per_rule, "masked_tokens_in_synthetic_rows": c["masked"],
                "replaced_tokens_in_synthetic_rows": c["replaced"]}


def rule_counts(rows: TransferRows) -> dict[str, int]:
    """Synthetic rows changed by each rule."""
    synthetic_ops = rows.ops[~rows.is_original]
    return {name: int(np.count_nonzero(synthetic_ops & bit)) for bit, name in zip((OP_MASK, OP_POS, OP_NGRAM),
                                                                                   OP_NAMES)}


def assemble(texts: list[str], pairs: list[str] | None, generated: list[Generated]) -> TransferRows:
    """The whole transfer set in memory (for small sets and tests; the stage streams `TransferAssembler`'s
    chunks to disk instead). `generated` must cover every example, in order."""
    assembler = TransferAssembler(texts, pairs)
    parts = [assembler(g) for g in generated]
    rows = TransferRows([t for p in parts for t in p.texts],
                        [t for p in parts for t in p.pairs] if pairs is not None else None,
                        np.concatenate([p.source_index for p in parts] or [np.zeros(0, np.int64)]),
                        np.concatenate([p.is_original for p in parts] or [np.zeros(0, bool)]),
                        np.concatenate([p.ops for p in parts] or [np.zeros(0, np.uint8)]), {},
                        np.concatenate([p.draw for p in parts] or [np.zeros(0, np.int32)]))
    rows.stats = assembler.stats(len(rows.texts), int(rows.is_original.sum()), rule_counts(rows))
    return rows
