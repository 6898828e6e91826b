"""pipelines/teacher/ (hub, checks, scorer, finetune) and its batches (pipelines/batching.py): the scoring core
against a plain forward pass, checks, OOM halving, fine-tuning."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from augment import MASK_SYMBOL
from pipelines import batching, checkpoints, devices
from pipelines.errors import ConfigError, DistillError, MissingResourceError, TeacherMismatchError
from pipelines.settings import TrainSettings
from pipelines import hub
from pipelines.teacher import checks
from pipelines.teacher.finetune import LabelledRows, finetune, lr_schedule
from pipelines.teacher.scorer import (Encoded, TeacherScorer, collate, encode, render_masks, run_with_halving,
                                      validate_logits)

from .conftest import make_teacher, random_sentences

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def reference_logits(model_dir, texts, pairs=None) -> np.ndarray:
    """The plainest possible scorer: one row at a time, in input order, no padding, no sorting, eager model."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir, attn_implementation="eager").eval()
    out = []
    with torch.no_grad():
        for i, text in enumerate(texts):
            text = text.replace(MASK_SYMBOL, tok.mask_token)
            pair = pairs[i].replace(MASK_SYMBOL, tok.mask_token) if pairs is not None else None
            enc = tok(text, pair, truncation=True, max_length=128, return_tensors="pt")
            out.append(model(**enc).logits[0].numpy())
    return np.stack(out)


@pytest.fixture
def scorer(tiny_teacher, one_torch_thread):
    return TeacherScorer(tiny_teacher, device="cpu")


# ----------------------------------------------------------------------------------------------- scoring core

@pytest.mark.parametrize("batch_tokens", [1, 64, 100_000])
def test_teacher_logits_equal_one_row_forward(scorer, tiny_teacher, batch_tokens):
    texts = random_sentences(60, seed=1)
    scorer.batch_tokens = batch_tokens
    got = scorer.predict(texts)
    assert got.dtype == np.float32 and got.shape == (60, 2)
    np.testing.assert_allclose(got, reference_logits(tiny_teacher, texts), atol=1e-5, rtol=1e-5)
    assert np.ptp(got[:, 0]) > 0.1  # rows really differ, so a row mix-up would show


def test_teacher_pair_logits_equal_one_row_forward(scorer, tiny_teacher):
    texts, pairs = random_sentences(30, seed=2), random_sentences(30, seed=3)
    scorer.batch_tokens = 256
    got = scorer.predict(texts, pairs)
    np.testing.assert_allclose(got, reference_logits(tiny_teacher, texts, pairs), atol=1e-5, rtol=1e-5)


def test_teacher_truncates_at_max_length(tiny_teacher):
    scorer = TeacherScorer(tiny_teacher, device="cpu", max_length=8)
    enc = scorer.encode(["the movie was very very very good and fun and sad and boring"])
    assert enc.lengths.tolist() == [8]


def test_teacher_refuses_max_length_beyond_positions(tiny_teacher):
    with pytest.raises(ConfigError, match=r"max_length 129 exceeds .* \(128 tokens\)"):
        TeacherScorer(tiny_teacher, device="cpu", max_length=129)


def test_teacher_renders_mask_symbol_to_mask_token(scorer):
    enc = scorer.encode([f"the {MASK_SYMBOL} movie", "no mask here"])
    mask_id = scorer.tokenizer.mask_token_id
    assert enc.row(0).count(mask_id) == 1 and mask_id not in enc.row(1)
    assert render_masks([f"a {MASK_SYMBOL}{MASK_SYMBOL}"], "[MASK]") == ["a [MASK][MASK]"]


def test_teacher_scorer_call_is_a_batch_function(scorer):
    batch = {"text": np.array(["good movie", "bad film"], dtype=object), "label": np.array([1, 0])}
    out = scorer(batch)
    assert set(out) == {"text", "label", "teacher_logits"} and out["teacher_logits"].shape == (2, 2)


def test_teacher_empty_input(scorer):
    assert scorer.predict([]).shape == (0, 2)


# ----------------------------------------------------------------------------------------------- batching

@pytest.mark.parametrize("batch_tokens", [1, 7, 50, 10_000])
def test_teacher_scoring_batches_cover_rows_once_within_budget(batch_tokens):
    lengths = np.random.default_rng(0).integers(1, 40, size=500)
    batches = batching.by_tokens(lengths, batch_tokens)
    assert sorted(np.concatenate(batches).tolist()) == list(range(500))
    for b in batches:
        assert len(b) == 1 or len(b) * lengths[b].max() <= batch_tokens
    firsts = [lengths[b[0]] for b in batches]
    assert firsts == sorted(firsts, reverse=True)  # longest first


def test_teacher_training_batches_shuffled_and_reproducible():
    lengths = np.random.default_rng(0).integers(1, 40, size=5000)
    a = batching.by_tokens(lengths, 512, np.random.default_rng(1), group_rows=1000)
    b = batching.by_tokens(lengths, 512, np.random.default_rng(1), group_rows=1000)
    c = batching.by_tokens(lengths, 512, np.random.default_rng(2), group_rows=1000)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(len(x) == len(y) and np.array_equal(x, y) for x, y in zip(a, c, strict=False))
    assert sorted(np.concatenate(a).tolist()) == list(range(5000))
    padded = sum(len(x) * lengths[x].max() for x in a)
    assert padded < 1.1 * lengths.sum()  # grouped by length: little padding


def test_teacher_collate_pads_and_masks():
    enc = Encoded.from_lists([[1, 2, 3], [4], [5, 6]])
    batch = collate(enc, np.array([0, 1]), pad_id=0)
    assert batch["input_ids"].tolist() == [[1, 2, 3], [4, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1], [1, 0, 0]]
    assert "attention_mask" not in collate(enc, np.array([0]), pad_id=0)  # nothing padded: no mask


# ----------------------------------------------------------------------------------------------- OOM halving

def test_teacher_oom_halving_keeps_every_row_once():
    calls = []

    def forward(rows):  # a fake forward that "runs out of memory" above 3 rows
        calls.append(len(rows))
        if len(rows) > 3:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return torch.as_tensor(rows, dtype=torch.float32)[:, None]

    rows = np.arange(13)
    pieces = run_with_halving(forward, rows)
    assert np.concatenate([r for r, _ in pieces]).tolist() == rows.tolist()
    assert torch.cat([t for _, t in pieces])[:, 0].tolist() == rows.tolist()
    assert calls[0] == 13 and max(len(r) for r, _ in pieces) <= 3


def test_teacher_oom_on_one_row_is_a_clear_error():
    def forward(rows):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")

    with pytest.raises(DistillError, match="single row"):
        run_with_halving(forward, np.arange(4))


def test_teacher_predict_logits_with_oom_equals_without(scorer, monkeypatch):
    texts = random_sentences(80, seed=4)
    scorer.batch_tokens = 4096
    expected = scorer.predict(texts)
    real_forward = scorer.model.forward

    def forward_with_small_memory(*args, **kwargs):
        if kwargs["input_ids"].shape[0] > 5:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real_forward(*args, **kwargs)

    monkeypatch.setattr(scorer.model, "forward", forward_with_small_memory)
    np.testing.assert_allclose(scorer.predict(texts), expected, atol=1e-5)


@pytest.mark.parametrize("error", [
    torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)"),
    RuntimeError("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`"),
    RuntimeError("cuDNN error: CUDNN_STATUS_ALLOC_FAILED"),
])
def test_teacher_every_cuda_allocation_failure_halves_the_batch(error):
    def forward(rows):
        if len(rows) > 2:
            raise error
        return torch.as_tensor(rows, dtype=torch.float32)[:, None]

    failed = []
    pieces = run_with_halving(forward, np.arange(9), on_oom=failed.append)
    assert np.concatenate([r for r, _ in pieces]).tolist() == list(range(9)) and failed[0] == 9


def test_teacher_other_errors_are_not_taken_for_out_of_memory():
    def forward(rows):
        raise RuntimeError("mat1 and mat2 shapes cannot be multiplied")

    with pytest.raises(RuntimeError, match="shapes cannot be multiplied"):
        run_with_halving(forward, np.arange(4))


def test_teacher_budget_stays_lowered_after_an_oom_and_no_row_is_lost(scorer, monkeypatch):
    texts = random_sentences(60, seed=5)
    before = scorer.batch_tokens
    scorer.batch_tokens = 4096
    expected = scorer.predict(texts)
    real_forward = scorer.model.forward
    tokens_seen = []

    def forward_with_small_memory(*args, **kwargs):
        ids = kwargs["input_ids"]
        tokens_seen.append(ids.numel())
        if ids.numel() > 600:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return real_forward(*args, **kwargs)

    monkeypatch.setattr(scorer.model, "forward", forward_with_small_memory)
    try:
        first = scorer.predict(texts)
        lowered = scorer.batch_tokens
        assert lowered < 4096
        calls_before = len(tokens_seen)
        second = scorer.predict(texts)  # planned with the lowered budget: fewer failed attempts
        failures_first = sum(t > 600 for t in tokens_seen[:calls_before])
        failures_second = sum(t > 600 for t in tokens_seen[calls_before:])
    finally:
        scorer.batch_tokens = before
    np.testing.assert_allclose(first, expected, atol=1e-5)
    np.testing.assert_allclose(second, expected, atol=1e-5)
    assert failures_second < failures_first


# ----------------------------------------------------------------------------------------------- checks

def test_teacher_validate_logits_rejects_bad_batches():
    good = np.zeros((3, 2), dtype=np.float32)
    assert validate_logits(good, 3, 2, "t") is good
    with pytest.raises(DistillError, match=r"shape \(3, 3\)"):
        validate_logits(np.zeros((3, 3), np.float32), 3, 2, "t")
    with pytest.raises(DistillError, match="float64"):
        validate_logits(np.zeros((3, 2)), 3, 2, "t")
    bad = good.copy()
    bad[1, 0] = np.nan
    with pytest.raises(DistillError, match="row 1"):
        validate_logits(bad, 3, 2, "t")


def test_teacher_label_map_checks(tmp_path):
    sst2 = ("negative", "positive")
    three = hub.load_config(make_teacher(tmp_path / "three", ("a", "b", "c")))
    with pytest.raises(TeacherMismatchError, match=r"3 labels .* has 2"):
        checks.check_label_map(three, sst2, "three", "sst2")
    swapped = hub.load_config(make_teacher(tmp_path / "swapped", ("positive", "negative")))
    with pytest.raises(TeacherMismatchError, match="positive, negative"):
        checks.check_label_map(swapped, sst2, "swapped", "sst2")
    checks.check_label_map(hub.load_config(make_teacher(tmp_path / "generic", None)), sst2, "generic", "sst2")
    checks.check_label_map(hub.load_config(make_teacher(tmp_path / "case", ("Negative", "POSITIVE"))), sst2, "case", "sst2")


def test_teacher_mask_token_checks(tmp_path, scorer):
    assert checks.mask_token_problem(scorer.tokenizer) is None
    split = hub.load_tokenizer(make_teacher(tmp_path / "split", split_special_tokens=True))
    assert "splits its mask token '[MASK]' into 3 pieces" in checks.mask_token_problem(split)
    none = hub.load_tokenizer(make_teacher(tmp_path / "none", mask_token=None))
    assert checks.mask_token_problem(none) == "has no mask token"
    with pytest.raises(TeacherMismatchError, match="--p-mask 0"):
        checks.check_mask_token(split, "split")


def test_teacher_scorer_refuses_masked_text_it_cannot_render(tmp_path):
    scorer = TeacherScorer(make_teacher(tmp_path / "split", split_special_tokens=True), device="cpu")
    assert scorer.predict(["fine without masks"]).shape == (1, 2)
    with pytest.raises(TeacherMismatchError, match="splits its mask token"):
        scorer.predict([f"the {MASK_SYMBOL} movie"])


def test_teacher_locate_model_errors_and_hashes(tmp_path, tiny_teacher):
    files = hub.locate_model(tiny_teacher)
    assert files.path == tiny_teacher.resolve() and len(files.weights_sha256) == 64
    assert hub.locate_model(str(tiny_teacher)).identity() == files.identity()
    with pytest.raises(MissingResourceError, match="no such model directory"):
        hub.locate_model(tmp_path / "nowhere")
    with pytest.raises(MissingResourceError, match="could not be fetched"):
        hub.locate_model("someone/not-cached-model")  # HF_HUB_OFFLINE=1 in tests
    (tmp_path / "empty").mkdir()
    with pytest.raises(MissingResourceError, match=r"no config\.json"):
        hub.locate_model(tmp_path / "empty")


def test_teacher_remote_code_is_hashed_and_fetched_only_when_trusted(tmp_path, tiny_teacher, monkeypatch):
    import huggingface_hub

    plain = hub.locate_model(tiny_teacher)
    assert "code_sha256" not in plain.identity()
    coded = tmp_path / "coded"
    shutil.copytree(tiny_teacher, coded)
    (coded / "modeling_custom.py").write_text("X = 1\n")
    first = hub.locate_model(coded).identity()
    assert first["code_sha256"] and first["weights_sha256"] == plain.weights_sha256
    (coded / "modeling_custom.py").write_text("X = 2\n")  # other code computes other logits
    assert hub.locate_model(coded).identity()["code_sha256"] != first["code_sha256"]

    asked = []
    monkeypatch.setattr(huggingface_hub, "snapshot_download",
                        lambda repo_id, allow_patterns: asked.append(allow_patterns) or str(tiny_teacher))
    hub.locate_model("someone/model")
    hub.locate_model("someone/model", trust_remote_code=True)
    assert "*.py" not in asked[0] and "*.py" in asked[1] and "*.safetensors" in asked[0]


def test_teacher_corrupt_weights_are_named(tmp_path, tiny_teacher):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_teacher, broken)
    weights = broken / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    with pytest.raises(MissingResourceError, match=r"broken: cannot read its weights"):
        hub.load_classifier(broken, torch.device("cpu"))


def test_teacher_device_and_dtype_choices():
    assert devices.resolve_device("cpu").type == "cpu"
    assert devices.autocast_dtype("bf16", torch.device("cpu")) is torch.bfloat16
    with pytest.raises(DistillError, match="fp16 needs a CUDA device"):
        devices.autocast_dtype("fp16", torch.device("cpu"))
    with pytest.raises(DistillError, match="device must be one of"):
        devices.resolve_device("tpu")


# ----------------------------------------------------------------------------------------------- fine-tuning

def _multipliers(total: int, warmup_ratio: float) -> list[float]:
    """The learning-rate multiplier at steps 0..total of the fine-tuning schedule (base lr 1)."""
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    schedule = lr_schedule(optimizer, total, warmup_ratio)
    out = []
    for _ in range(total + 1):
        out.append(schedule.get_last_lr()[0])
        optimizer.step()
        schedule.step()
    return out


def test_teacher_warmup_linear_schedule():
    assert [_multipliers(10, 0.2)[s] for s in (0, 1, 2, 6, 10)] == [0.0, 0.5, 1.0, 0.5, 0.0]
    assert _multipliers(4, 0.0)[0] == 1.0


def _toy_rows(tokenizer, n: int, seed: int) -> LabelledRows:
    """A task the tiny model can learn in seconds: does the sentence contain 'good'?"""
    rng = np.random.default_rng(seed)
    filler = ["the", "movie", "was", "a", "film", "story", "very"]
    texts, labels = [], []
    for i in range(n):
        words = rng.choice(filler, size=int(rng.integers(2, 8))).tolist()
        words.insert(int(rng.integers(0, len(words))), "good" if i % 2 else "bad")
        texts.append(" ".join(words))
        labels.append(i % 2)
    return LabelledRows(encode(tokenizer, texts, None, 32), np.array(labels, dtype=np.int64))


def _finetuned(teacher_dir, settings, **kwargs):
    torch.manual_seed(settings.seed)
    tok = hub.load_tokenizer(teacher_dir)
    model = hub.load_classifier(teacher_dir, torch.device("cpu"), label_names=("negative", "positive"))
    result = finetune(model, _toy_rows(tok, 128, 0), {"dev": _toy_rows(tok, 64, 1)}, ("accuracy",), settings,
                      device=torch.device("cpu"), amp_dtype=None, pad_id=0, **kwargs)
    return model, result


@pytest.fixture(scope="module")
def trainable_teacher(tmp_path_factory):
    return make_teacher(tmp_path_factory.mktemp("trainable"), init_std=None)


def test_teacher_finetune_learns_and_is_reproducible(trainable_teacher):
    tiny_teacher = trainable_teacher
    settings = TrainSettings(epochs=4, lr=5e-3, batch_size=8, eval_steps=5, warmup_ratio=0.1, seed=3)
    model, result = _finetuned(tiny_teacher, settings)
    assert result.best["dev"]["dev"]["accuracy"] >= 0.9
    assert len(result.history) > settings.epochs  # per-epoch and every-5-steps evaluations
    assert result.best["dev"]["dev"]["accuracy"] == max(h["dev"]["dev"]["accuracy"] for h in result.history)
    again, _ = _finetuned(tiny_teacher, settings)
    for (name, a), (_, b) in zip(model.state_dict().items(), again.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_teacher_finetune_stop_at_takes_the_first_steps_of_the_whole_schedule_and_keeps_them(
        trainable_teacher, tmp_path, monkeypatch):
    """A refit's `stop_at`: the weights after step 10 of a 4-epoch schedule (as a full run's checkpoint of its
    evaluation at step 10 holds them), not the best evaluation's, and not a 10-step schedule's."""
    import pipelines.teacher.finetune as loop
    from pipelines.training.fitter import Fitter

    settings = TrainSettings(epochs=4, lr=5e-3, batch_size=8, eval_steps=5, warmup_ratio=0.1, seed=3)
    real = Fitter.step
    ckpt = loop.Checkpointing(tmp_path / "full.pt", "fp")
    monkeypatch.setattr(Fitter, "step", _steps_killed_at(11, []))
    with pytest.raises(KeyboardInterrupt):
        _finetuned(trainable_teacher, settings, checkpoint=ckpt)
    at_step_10 = checkpoints.load(ckpt.path, "fp")
    monkeypatch.setattr(Fitter, "step", real)
    model, result = _finetuned(trainable_teacher, settings, stop_at=10)
    assert result.steps == 10 and [h["step"] for h in result.history] == [5, 10]
    assert result.best == result.history[-1] and at_step_10["state"]["history"] == result.history
    for name, value in model.state_dict().items():
        assert torch.equal(value, at_step_10["model"][name]), name


def _bin_only_copy(tiny_teacher: Path, out: Path, extra: dict | None = None) -> Path:
    """The teacher with its weights as pytorch_model.bin only, as many fine-tuned hub classifiers ship."""
    from safetensors.torch import load_file

    shutil.copytree(tiny_teacher, out)
    state = load_file(out / "model.safetensors")
    (out / "model.safetensors").unlink()
    torch.save({**state, **(extra or {})}, out / "pytorch_model.bin")
    return out


def test_teacher_bin_only_weights_load_safely_and_score_the_same(tmp_path, tiny_teacher):
    binary = hub.locate_model(_bin_only_copy(tiny_teacher, tmp_path / "bin"))
    assert binary.weights_format == "bin" and hub.locate_model(tiny_teacher).weights_format == "safetensors"
    texts = ["a good film", "the plot was not fun"]
    expected = TeacherScorer(tiny_teacher, device="cpu").predict(texts)
    np.testing.assert_allclose(TeacherScorer(binary, device="cpu").predict(texts), expected, atol=1e-6)


class _RunsCode:
    def __reduce__(self):
        return (os.system, (f"touch {_RunsCode.marker}",))


def test_teacher_bin_weights_that_would_run_code_are_refused(tmp_path, tiny_teacher):
    _RunsCode.marker = tmp_path / "ran"
    evil = _bin_only_copy(tiny_teacher, tmp_path / "evil", {"payload": _RunsCode()})
    with pytest.raises(MissingResourceError, match=r"evil: its \.bin weights hold Python objects"):
        hub.load_classifier(evil, torch.device("cpu"))
    assert not _RunsCode.marker.exists()


def test_teacher_hub_bin_weights_are_fetched_only_without_safetensors(tmp_path, tiny_teacher, monkeypatch):
    import huggingface_hub

    binary = _bin_only_copy(tiny_teacher, tmp_path / "bin")
    asked = []
    monkeypatch.setattr(huggingface_hub, "snapshot_download",
                        lambda repo_id, allow_patterns: asked.append(allow_patterns) or str(binary))
    assert hub.locate_model("someone/bin-only").weights_format == "bin"
    assert asked == [hub.HUB_PATTERNS, ["pytorch_model*.bin"]]
    asked.clear()
    monkeypatch.setattr(huggingface_hub, "snapshot_download",
                        lambda repo_id, allow_patterns: asked.append(allow_patterns) or str(tiny_teacher))
    hub.locate_model("someone/safe")
    assert asked == [hub.HUB_PATTERNS]  # with safetensors, no pickle is ever downloaded


def test_a_missing_path_under_a_local_directory_is_a_typo_not_a_hub_id(tmp_path, monkeypatch):
    import huggingface_hub

    def fetch(*args, **kwargs):
        raise AssertionError("a typo must not be fetched from the hub")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", fetch)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "runs" / "teacher").mkdir(parents=True)
    with pytest.raises(MissingResourceError, match=r"runs/teachr: no such model directory \(not taken for a hub "
                                                   r"id: runs/ is a local directory\); did you mean runs/teacher\?"):
        hub.locate_model("runs/teachr")


def test_a_hub_id_says_what_it_fetches_and_its_revision_is_recorded(tmp_path, tiny_teacher, tiny_transfer,
                                                                     monkeypatch, capsys):
    import json

    import huggingface_hub

    from pipelines.stages import score

    snapshot = tmp_path / "hub" / "models--someone--teacher" / "snapshots" / "0123abcd"
    shutil.copytree(tiny_teacher, snapshot)
    monkeypatch.setattr(huggingface_hub, "snapshot_download", lambda repo_id, allow_patterns: str(snapshot))
    monkeypatch.chdir(tmp_path)
    files = hub.locate_model("someone/teacher")
    assert files.revision == "0123abcd" and hub.locate_model(tiny_teacher).revision is None
    err = capsys.readouterr().err
    assert "[hub] someone/teacher: not a local directory, so fetching it from the Hugging Face hub" in err
    assert "[hub] someone/teacher: revision 0123abcd" in err
    out = score.run(score.ScoreConfig(teacher="someone/teacher", transfer=tiny_transfer, out=tmp_path / "s")).out_dir
    assert json.loads((out / "manifest.json").read_text())["teacher"]["revision"] == "0123abcd"


def test_teacher_rate_reaches_zero_exactly_at_its_last_step(trainable_teacher, monkeypatch):
    """The teacher steps through the same plan and fitter as the students: the schedule is the plan's length."""
    import pipelines.teacher.finetune as loop

    from pipelines.training.fitter import Fitter

    seen, real = [], Fitter.step
    monkeypatch.setattr(Fitter, "step", lambda fitter, group, o: seen.append(fitter.lr) or real(fitter, group, o))
    settings = TrainSettings(epochs=3, lr=5e-3, batch_size=8, warmup_ratio=0.2, seed=3)
    _, result = _finetuned(trainable_teacher, settings)
    assert result.steps == len(seen) == loop.planned_steps(np.zeros(128, np.int64) + 5, settings) == 3 * 16
    warmup = int(0.2 * len(seen))
    assert seen[0] == 0.0 and all(lr > 0 for lr in seen[1:]) and seen[warmup] == max(seen)
    assert result.history[-1]["lr"] == 0.0


def test_teacher_killed_after_an_epoch_resumes_from_its_end_to_the_same_weights(trainable_teacher, tmp_path,
                                                                                 monkeypatch):
    import pipelines.teacher.finetune as loop
    from pipelines.training.fitter import Fitter

    settings = TrainSettings(epochs=3, lr=5e-3, batch_size=8, warmup_ratio=0.1, seed=3)  # 16 steps an epoch
    straight, done = _finetuned(trainable_teacher, settings)
    real, calls = Fitter.step, []
    ckpt = loop.Checkpointing(tmp_path / "ckpt.pt", "fp")
    monkeypatch.setattr(Fitter, "step", _steps_killed_at(16 + 5, calls))  # in epoch 2
    with pytest.raises(KeyboardInterrupt):
        _finetuned(trainable_teacher, settings, checkpoint=ckpt)
    assert checkpoints.load(ckpt.path, "fp")["state"]["step"] == 16  # the end of epoch 1
    calls.clear()
    monkeypatch.setattr(Fitter, "step", lambda *a, **k: calls.append(1) or real(*a, **k))
    resumed, again = _finetuned(trainable_teacher, settings, checkpoint=ckpt)
    assert len(calls) == 32 and again.history == done.history and again.best == done.best
    for (name, a), (_, b) in zip(straight.state_dict().items(), resumed.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def _steps_killed_at(step: int, calls: list):
    """`Fitter.step`, counting its calls into `calls`, that raises KeyboardInterrupt at call `step` (a kill)."""
    from pipelines.training.fitter import Fitter

    real = Fitter.step

    def step_or_die(*args, **kwargs):
        calls.append(1)
        if len(calls) == step:
            raise KeyboardInterrupt
        return real(*args, **kwargs)
    return step_or_die
