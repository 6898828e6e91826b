"""pipelines/stages/train.py and stages/evaluate.py: the student directory, caching, resume, baseline, CLI."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from pipelines.stages.run import load_config
from pipelines import cli, store
from pipelines.student import bilstm_training as training
from pipelines.training import fitter, rows
from pipelines.errors import ConfigError, DistillError, TeacherMismatchError
from pipelines.stages import evaluate as eval_stage
from pipelines.stages import train as train_stage
from pipelines.devices import torch_threads
from pipelines.holdout import holdout_size
from pipelines.tasks import get_task

from .student_fixtures import ROOT, SST2, TEACHER, demo_scored_set, tiny_train_config, write_scored_set


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run fastest on one thread, and OpenMP spinning on a busy 2-core machine costs seconds."""
    with torch_threads(1):
        yield


@pytest.fixture(scope="module")
def demo_scored(tmp_path_factory):
    return demo_scored_set(tmp_path_factory.mktemp("scored") / "scored")


def _weights(d):
    return load_file(str(d / "model.safetensors"))


def test_train_stage_writes_student_dir(demo_scored, tmp_path):
    out = tmp_path / "student"
    result = train_stage.run(tiny_train_config(demo_scored, out, export="torchscript"))
    assert not result.skipped and "demo" in result.summary and "accuracy=" in result.summary
    for name in ("model.safetensors", "vocab.json", "config.json", "metrics.json", "model.pt", "predict.py",
                 "manifest.json", "stats.json"):
        assert (out / name).is_file(), name
    assert not (out / training.CHECKPOINT).exists()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stage"] == "train" and manifest["inputs"]["scored"]
    metrics = json.loads((out / "metrics.json").read_text())
    assert [h["epoch"] for h in metrics["history"]] == [1, 2]
    assert all("train_loss" in h and "accuracy" in h["dev"]["dev"] for h in metrics["history"])
    # selection on the holdout: 16 of the 320 originals (5%) and their 16 masked copies left out of training
    sha = metrics["selection"].pop("sha256")
    assert metrics["selection"] == {"select_on": "holdout", "split": "holdout", "metric": "accuracy", "examples": 16,
                                    "of_examples": 320, "rows": 32, "fraction": 0.05, "max": 2000, "seed": 0,
                                    "twin_rows_excluded": 0, "twin_originals_excluded": 0}
    assert len(sha) == 64 and manifest["holdout"]["sha256"] == sha  # in the manifest too
    # the best epoch: the holdout's accuracy, ties broken by its lower cross-entropy
    best = max(metrics["history"], key=lambda h: (h["holdout"]["accuracy"], -h["holdout"]["cross_entropy"]))
    assert metrics["best_epoch"] == best["epoch"] and metrics["holdout"] == best["holdout"]
    assert metrics["dev"] == best["dev"]  # dev: the chosen epoch's, reported, not chosen on
    stats = json.loads((out / "stats.json").read_text())
    assert stats["rows"] == 608 and stats["original_rows"] == 304 and stats["gold_rows"] == 304
    assert stats["params"] == stats["params_embedding"] + stats["params_without_embedding"]
    assert stats["export"]["max_abs_diff"]["torchscript"] < 1e-5
    config = json.loads((out / "config.json").read_text())
    assert config["label_names"] == ["negative", "positive"] and config["model"]["arch"] == "bilstm"
    vocab = json.loads((out / "vocab.json").read_text())["tokens"]
    assert vocab[:3] == ["<pad>", "<unk>", "⟨mask⟩"]


def test_train_stage_is_cached_and_fingerprint_follows_config(demo_scored, tmp_path):
    out = tmp_path / "student"
    cfg = tiny_train_config(demo_scored, out, epochs=1)
    train_stage.run(cfg)
    again = train_stage.run(cfg)
    assert again.skipped and "[cached]" in again.summary
    changed = train_stage.run(tiny_train_config(demo_scored, out, epochs=1, lr=1e-3))
    assert not changed.skipped


def test_train_stage_learns_the_demo_task(demo_scored, tmp_path):
    cfg = tiny_train_config(demo_scored, tmp_path / "s", epochs=8, hidden=16, fc=16)
    train_stage.run(cfg)
    acc = json.loads((tmp_path / "s" / "metrics.json").read_text())["dev"]["dev"]["accuracy"]
    assert acc >= 0.7  # the demo's dev set is easy; chance is 0.5


def test_train_stage_device_is_recorded_and_its_resolved_type_fingerprinted(demo_scored, tmp_path):
    out = tmp_path / "s"
    train_stage.run(tiny_train_config(demo_scored, out, epochs=1, device="cpu"))
    assert json.loads((out / "stats.json").read_text())["device"] == "cpu"
    assert json.loads((out / "manifest.json").read_text())["config"]["device"] == "cpu"
    # `auto` is fingerprinted as the device it resolves to: the CPU student is reused only where auto means cpu.
    reused = train_stage.run(tiny_train_config(demo_scored, out, epochs=1, device="auto")).skipped
    assert reused == (not torch.cuda.is_available())
    with pytest.raises(ConfigError, match=r"\[device\] must be one of auto, cpu, cuda"):
        train_stage.run(tiny_train_config(demo_scored, tmp_path / "t", device="tpu"))


def _fingerprint(scored, tmp_path, device_type="cpu", **overrides):
    cfg = tiny_train_config(scored, tmp_path / "s", **overrides)
    manifest = store.require_stage_output(scored, "score", "--scored")
    return train_stage.stage_fingerprint(cfg, cfg.task, manifest, device_type)


def test_train_stage_fingerprint_follows_device_type_versions_and_hard_labels(demo_scored, tmp_path, monkeypatch):
    # A GPU student differs from a CPU one (cuDNN sums in another order); no GPU is needed to fingerprint one.
    cpu = _fingerprint(demo_scored, tmp_path)
    assert _fingerprint(demo_scored, tmp_path) == cpu
    assert _fingerprint(demo_scored, tmp_path, "cuda") != cpu
    assert _fingerprint(demo_scored, tmp_path, hard_labels="teacher") != cpu
    versions = store.result_versions()
    monkeypatch.setattr(store, "result_versions", lambda: {**versions, "torch": "0.0.1"})
    assert _fingerprint(demo_scored, tmp_path) != cpu


def test_train_help_points_at_the_tuning_doc_and_claims_no_device_equivalence(capsys):
    with pytest.raises(SystemExit):
        cli.main(["train", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "docs/student-tuning.md" in text and "--hard-labels {gold,teacher}" in text
    assert "same student" not in text and "p30" not in text  # the tuning diary moved to the doc
    assert (ROOT / "docs" / "student-tuning.md").is_file()


def test_run_config_sets_hard_labels():

    assert load_config("demo", ["student.hard_labels=teacher"]).sections["student"]["hard_labels"] == "teacher"
    with pytest.raises(ConfigError, match="hard_labels"):
        train_stage.run(tiny_train_config(Path("x"), Path("y"), hard_labels="argmax"))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_train_stage_on_cuda_matches_cpu(demo_scored, tmp_path):
    train_stage.run(tiny_train_config(demo_scored, tmp_path / "cpu", epochs=2, device="cpu"))
    train_stage.run(tiny_train_config(demo_scored, tmp_path / "cuda", epochs=2, device="cuda", export="torchscript"))
    stats = json.loads((tmp_path / "cuda" / "stats.json").read_text())
    assert stats["device"] == "cuda" and stats["export"]["max_abs_diff"]["torchscript"] < 1e-5
    a, b = _weights(tmp_path / "cpu"), _weights(tmp_path / "cuda")
    for k in a:  # cuDNN's LSTM sums in another order: equal up to accumulated float rounding
        torch.testing.assert_close(a[k], b[k], atol=1e-3, rtol=1e-3)


class _Kill(Exception):
    pass


@pytest.mark.parametrize("ema", [0.0, 0.9])
def test_train_stage_resume_gives_identical_weights(demo_scored, tmp_path, ema):
    straight = tmp_path / "straight"
    train_stage.run(tiny_train_config(demo_scored, straight, epochs=3, dropout=0.2, embed_dropout=0.2, ema=ema))

    resumed = tmp_path / "resumed"
    cfg = tiny_train_config(demo_scored, resumed, epochs=3, dropout=0.2, embed_dropout=0.2, ema=ema)

    def kill_after_first_epoch(state):
        if state.epoch == 1:
            raise _Kill()

    with pytest.raises(_Kill):
        train_stage.run(cfg, on_epoch_end=kill_after_first_epoch)
    assert not resumed.exists()
    partial = list(tmp_path.glob(".resumed.partial-*"))
    assert len(partial) == 1 and (partial[0] / training.CHECKPOINT).is_file()

    epochs_seen = []
    train_stage.run(cfg, on_epoch_end=lambda s: epochs_seen.append(s.epoch))
    assert epochs_seen == [2, 3]  # resumed after epoch 1
    assert json.loads((resumed / "stats.json").read_text())["resumed"] == {"epochs_done": 1}
    assert json.loads((straight / "stats.json").read_text())["resumed"] is None
    a, b = _weights(straight), _weights(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    ha = json.loads((straight / "metrics.json").read_text())["history"]
    hb = json.loads((resumed / "metrics.json").read_text())["history"]
    assert [(h["train_loss"], h["dev"]) for h in ha] == [(h["train_loss"], h["dev"]) for h in hb]


def test_train_stage_ema_keeps_the_averaged_weights(demo_scored, tmp_path):
    train_stage.run(tiny_train_config(demo_scored, tmp_path / "plain", epochs=2))
    train_stage.run(tiny_train_config(demo_scored, tmp_path / "ema", epochs=2, ema=0.9))
    plain, ema = _weights(tmp_path / "plain"), _weights(tmp_path / "ema")
    assert not torch.equal(plain["out.weight"], ema["out.weight"])  # same seed and batches: only the averaging differs
    # The saved student is the averaged model: its recorded dev score is what `distill eval` measures.
    want = json.loads((tmp_path / "ema" / "metrics.json").read_text())["dev"]["dev"]["accuracy"]
    r = eval_stage.run(eval_stage.EvalConfig(student=tmp_path / "ema", task=get_task("demo"), json=True))
    assert json.loads(r.summary)["splits"]["dev"]["accuracy"] == want


def test_ema_update_ramps_its_decay_up():
    update = fitter.ema_update(0.999)
    avg, cur = [torch.zeros(2)], [torch.ones(2)]
    update(avg, cur, torch.tensor(0))  # decay 1/10: 90% of the way to the current weights
    torch.testing.assert_close(avg[0], torch.full((2,), 0.9))
    avg = [torch.zeros(2)]
    update(avg, cur, torch.tensor(100_000))  # capped at 0.999
    torch.testing.assert_close(avg[0], torch.full((2,), 0.001))


def test_the_fast_average_update_gives_the_bits_of_averaged_models_own():
    from torch.optim.swa_utils import AveragedModel

    torch.manual_seed(0)
    model = torch.nn.LSTM(4, 3)
    ours, theirs = (AveragedModel(model, multi_avg_fn=fitter.ema_update(0.99)) for _ in range(2))
    for _ in range(30):
        with torch.no_grad():
            for p in model.parameters():
                p.add_(torch.randn_like(p))
        fitter.update_average(ours, model)
        theirs.update_parameters(model)
    assert int(ours.n_averaged) == int(theirs.n_averaged) == 30
    assert all(torch.equal(a, b) for a, b in zip(ours.module.parameters(), theirs.module.parameters()))
    assert not torch.equal(next(ours.module.parameters()), next(model.parameters()))  # an average, not a copy


def test_adam_is_fused_and_the_fingerprint_says_so(demo_scored, tmp_path):
    model = torch.nn.LSTM(4, 3)
    optimizer, _ = training.make_optimizer(tiny_train_config(demo_scored, tmp_path / "s"), model, 10)
    assert optimizer.defaults["fused"] is True  # one kernel a step; it rounds otherwise than the loop
    fused, adadelta = _fingerprint(demo_scored, tmp_path), _fingerprint(demo_scored, tmp_path, optimizer="adadelta")
    with pytest.MonkeyPatch.context() as m:  # students made with the loop are not reused; Adadelta's are
        m.setattr(train_stage, "ADAM", "loop")
        assert _fingerprint(demo_scored, tmp_path) != fused
        assert _fingerprint(demo_scored, tmp_path, optimizer="adadelta") == adadelta


def test_train_stage_early_stopping_keeps_best(demo_scored, tmp_path):
    # lr 0 never improves after epoch 1, so patience 1 stops after epoch 2 with epoch 1's weights.
    out = tmp_path / "s"
    train_stage.run(tiny_train_config(demo_scored, out, epochs=5, patience=1, lr=1e-12, schedule="constant"))
    m = json.loads((out / "metrics.json").read_text())
    assert m["epochs_run"] == 2 and m["best_epoch"] == 1 and m["stopped_early"]


def test_train_stage_baseline_uses_gold_originals_only(demo_scored, tmp_path):
    out = tmp_path / "base"
    result = train_stage.run(tiny_train_config(demo_scored, out, baseline=True, epochs=1))
    stats = json.loads((out / "stats.json").read_text())
    assert stats["rows"] == 304 and stats["gold_rows"] == 304  # the 320 originals less the 16 held out
    assert "baseline" in result.summary
    assert json.loads((out / "manifest.json").read_text())["baseline"] is True


def test_train_stage_limit(demo_scored, tmp_path):
    train_stage.run(tiny_train_config(demo_scored, tmp_path / "s", limit=100, epochs=1))
    # the first 100 rows: 50 originals and a copy of each, 2 of them (and their copies) held out
    assert holdout_size(50) == 2 and json.loads((tmp_path / "s" / "stats.json").read_text())["rows"] == 96
    train_stage.run(tiny_train_config(demo_scored, tmp_path / "d", limit=100, epochs=1, select_on="dev"))
    assert json.loads((tmp_path / "d" / "stats.json").read_text())["rows"] == 100


@pytest.mark.parametrize("loss", ["kl", "ce"])
def test_train_stage_other_losses(demo_scored, tmp_path, loss):
    train_stage.run(tiny_train_config(demo_scored, tmp_path / "s", loss=loss, alpha=0.5, temperature=2.0, epochs=1))
    assert json.loads((tmp_path / "s" / "metrics.json").read_text())["loss"] == loss


ORIGINALS, SYNTHETIC_PER_ORIGINAL = 40, 13  # 40 of 560 rows (7%) are originals, as in a x20 sentence-level set


@pytest.fixture(scope="module")
def sentence_transfer(tmp_path_factory):
    """A scored set shaped like a real sentence-level transfer set: few originals (the demo's first 40 train
    rows, with gold labels) and for each 13 synthetic rows without a label, most of them short n-grams (1-3
    words) and the rest masked copies. Length-sorted batches then hold only synthetic rows at the short end.
    Random teacher logits: these tests are about what trains, not how well."""
    from augment import MASK_SYMBOL
    from pipelines.tasks import read_split

    task = get_task("demo")
    split, _ = read_split(task, task.default_data, "train")
    rng = np.random.default_rng(0)
    texts, labels, src = [], [], []
    for i in range(ORIGINALS):
        words = split.texts[i].split()
        texts.append(split.texts[i])
        labels.append(int(split.labels[i]))
        src.append(i)
        for k in range(SYNTHETIC_PER_ORIGINAL):
            if k < 8:  # an n-gram of the sentence
                n = int(rng.integers(1, 4))
                start = int(rng.integers(0, len(words) - n + 1))
                w = words[start:start + n]
            else:
                w = [MASK_SYMBOL if rng.random() < 0.3 else x for x in words]
            texts.append(" ".join(w))
            labels.append(None)
            src.append(i)
    logits = rng.normal(0, 2, (len(texts), 2))
    return write_scored_set(tmp_path_factory.mktemp("sentence") / "scored", texts, logits, labels=labels,
                            source_index=src)


def _batches_without_originals(scored, batch_size: int) -> int:
    table = store.read_table(scored)
    is_original = np.array(table.column("is_original").to_pylist())
    assert is_original.mean() == pytest.approx(ORIGINALS / len(is_original)) and is_original.mean() < 0.08
    lengths = np.array([len(t.split()) for t in table.column("text").to_pylist()])
    batches = training.epoch_batches(lengths, batch_size)(np.random.default_rng(0))
    return sum(not is_original[b].any() for b in batches)


@pytest.mark.parametrize("overrides", [{"loss": "ce"}, {"alpha": 1.0}, {"loss": "kl", "alpha": 1.0},
                                       {"alpha": 0.5}, {"loss": "ce", "hard_labels": "teacher"}],
                         ids=["ce", "mse-alpha1", "kl-alpha1", "mse-alpha0.5", "ce-teacher-labels"])
def test_train_stage_trains_every_objective_on_a_sentence_transfer_set(sentence_transfer, tmp_path, overrides):
    assert _batches_without_originals(sentence_transfer, 32) >= 5  # the premise: batches with no gold label
    out = tmp_path / "s"
    train_stage.run(tiny_train_config(sentence_transfer, out, epochs=2, batch_size=32, **overrides))
    stats = json.loads((out / "stats.json").read_text())
    m = json.loads((out / "metrics.json").read_text())
    gold_only = overrides == {"loss": "ce"}
    # `ce` on gold labels trains on the labelled rows only: every batch has a target, none is a wasted step.
    kept = ORIGINALS - holdout_size(ORIGINALS)  # the held-out originals and their synthetic rows are left out
    rows = kept if gold_only else kept * (1 + SYNTHETIC_PER_ORIGINAL)
    assert stats["rows"] == rows and stats["gold_rows"] == kept
    assert stats["hard_label_rows"] == (rows if overrides.get("hard_labels") == "teacher" else kept)
    assert m["epochs_run"] == 2 and stats["steps"] == 2 * -(-rows // 32)
    # The schedule's total is the steps actually taken: the linear decay ends at 0.
    assert m["history"][-1]["lr"] == pytest.approx(0.0, abs=1e-12)
    assert all(np.isfinite(h["train_loss"]) and h["train_loss"] > 0 for h in m["history"])


def test_train_stage_ce_on_gold_labels_needs_some(tmp_path):
    scored = write_scored_set(tmp_path / "plain", ["a b", "c d e"], np.zeros((2, 2)))  # scored from plain text
    with pytest.raises(DistillError, match="no original rows with gold labels to hold out .* use --select-on dev"):
        train_stage.run(tiny_train_config(scored, tmp_path / "s"))
    with pytest.raises(DistillError, match="--hard-labels teacher"):
        train_stage.run(tiny_train_config(scored, tmp_path / "s", loss="ce", select_on="dev"))
    train_stage.run(tiny_train_config(scored, tmp_path / "t", loss="ce", hard_labels="teacher", epochs=1,
                                      select_on="dev"))
    assert json.loads((tmp_path / "t" / "stats.json").read_text())["hard_label_rows"] == 2


def test_hard_labels_are_gold_or_the_teachers_argmax(demo_scored, tmp_path):
    gold = np.array([1, -1, -1, 0])
    teacher = np.array([[0.0, 1.0], [2.0, -1.0], [0.1, 0.3], [5.0, 5.5]], dtype=np.float32)
    cfg = tiny_train_config(demo_scored, tmp_path / "s")
    assert rows.hard_labels(cfg, gold, teacher).tolist() == [1, -1, -1, 0]
    # The teacher's argmax on every row, originals included (row 3: the teacher says 1 where gold says 0).
    teacher_cfg = tiny_train_config(demo_scored, tmp_path / "s", hard_labels="teacher")
    assert rows.hard_labels(teacher_cfg, gold, teacher).tolist() == [1, 0, 1, 1]
    # The baseline has no teacher: gold labels whatever the setting.
    baseline = tiny_train_config(demo_scored, tmp_path / "s", hard_labels="teacher", baseline=True)
    assert rows.hard_labels(baseline, gold, teacher).tolist() == [1, -1, -1, 0]


def test_train_stage_logs_gradient_norms_and_clipping(demo_scored, tmp_path):
    train_stage.run(tiny_train_config(demo_scored, tmp_path / "s", epochs=1, grad_clip=1e-6))
    h = json.loads((tmp_path / "s" / "metrics.json").read_text())["history"][0]
    assert h["grad_norm"] > 1e-6 and h["clipped"] == 1.0  # every step's gradient is above a tiny bound
    train_stage.run(tiny_train_config(demo_scored, tmp_path / "t", epochs=1, grad_clip=0.0))
    h = json.loads((tmp_path / "t" / "metrics.json").read_text())["history"][0]
    assert h["grad_norm"] > 0 and h["clipped"] == 0.0


def test_train_stage_refuses_teacher_with_wrong_label_count(tmp_path):
    scored = write_scored_set(tmp_path / "scored3", ["a b", "c d"], np.zeros((2, 3)), labels=[0, 1])
    with pytest.raises(TeacherMismatchError, match="3 classes"):
        train_stage.run(tiny_train_config(scored, tmp_path / "s"))


def test_train_stage_config_errors_are_listed_together(demo_scored, tmp_path):
    with pytest.raises(ConfigError) as e:
        train_stage.run(tiny_train_config(demo_scored, tmp_path / "s", loss="nope", epochs=0, optimizer="sgd"))
    msg = str(e.value)
    assert "mse, kl, ce" in msg and "[epochs]" in msg and "adam, adadelta" in msg


def test_train_stage_requires_a_scored_set(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(DistillError, match="distill score"):
        train_stage.run(tiny_train_config(tmp_path / "x", tmp_path / "s"))


def test_train_stage_pair_task(tmp_path):
    """A siamese student on a tiny pair task (MRPC-shaped generic data)."""
    from pipelines.tasks import generic_task

    rng = np.random.default_rng(0)
    words = ["the", "cat", "dog", "sat", "ran", "on", "mat", "park"]
    a = [" ".join(rng.choice(words, 5)) for _ in range(60)]
    b = [s if i % 2 else " ".join(rng.choice(words, 4)) for i, s in enumerate(a)]
    y = [i % 2 for i in range(60)]
    data = tmp_path / "data"
    data.mkdir()
    for split in ("train", "dev"):
        rows = ["s1\ts2\tlabel"] + [f"{p}\t{q}\t{lab}" for p, q, lab in zip(a, b, y)]
        (data / f"{split}.tsv").write_text("\n".join(rows) + "\n", "utf-8")
    logits = np.array([[-1.0, 1.0] if v else [1.0, -1.0] for v in y])
    scored = write_scored_set(tmp_path / "scored", a, logits, labels=y, pairs=b)
    task = generic_task("s1", "s2", "label", ["0", "1"], name="pairs")
    out = tmp_path / "s"
    train_stage.run(tiny_train_config(scored, out, task=task, data=data, epochs=2, export="torchscript"))
    config = json.loads((out / "config.json").read_text())
    assert config["model"]["arch"] == "siamese_bilstm" and config["inputs"][2:] == ["ids_b", "lengths_b"]
    r = eval_stage.evaluate_student(eval_stage.EvalConfig(student=out, task=task, data=data))
    assert set(r["splits"]["dev"]) >= {"accuracy", "f1", "rows"}


@pytest.mark.parametrize("baseline", [False, True])
def test_training_data_is_tokenised_a_slice_at_a_time_with_the_same_result(tmp_path, monkeypatch, baseline):
    """load_train_data reads the scored set in slices (TOKENISE_ROWS): any slice size gives the ids of the
    tokeniser and vocabulary applied to each kept row, both sides of a pair in one vocabulary."""
    from pipelines.student.tokenizer import Tokenizer
    from pipelines.tasks import generic_task

    rng = np.random.default_rng(1)
    words = ["the", "cat", "dog's", "sat", "ran", "on", "mat", "park", "Über", "n't", "a,b"]
    a = [" ".join(rng.choice(words, rng.integers(0, 7))) for _ in range(53)]
    b = [" ".join(rng.choice(words[3:], rng.integers(1, 5))) for _ in range(53)]
    original = [i % 3 == 0 for i in range(53)]
    scored = write_scored_set(tmp_path / "scored", a, rng.normal(size=(53, 2)), labels=[i % 2 for i in range(53)],
                              pairs=b, is_original=original)
    task = generic_task("s1", "s2", "label", ["0", "1"], name="pairs")
    cfg = tiny_train_config(scored, tmp_path / "s", task=task, select_on="dev", baseline=baseline, min_count=2)
    tok = Tokenizer()
    monkeypatch.setenv("DISTILL_CACHE", str(tmp_path / "cache-whole"))
    whole = training.load_train_data(cfg, task, tok)
    monkeypatch.setattr(rows, "TOKENISE_ROWS", 7)
    monkeypatch.setenv("DISTILL_CACHE", str(tmp_path / "cache-sliced"))
    sliced = training.load_train_data(cfg, task, tok)
    again = training.load_train_data(cfg, task, tok)  # from the entry the sliced build wrote
    figures = [{k: v for k, v in d.counts.items() if k != "token_cache"} for d in (whole, sliced, again)]
    assert whole.vocab.tokens == sliced.vocab.tokens == again.vocab.tokens and figures[0] == figures[1] == figures[2]
    assert [d.counts["token_cache"]["hit"] for d in (whole, sliced, again)] == [False, False, True]
    assert all(np.array_equal(x.ids, y.ids) for x, y in ((sliced.a, again.a), (sliced.b, again.b)))
    kept = [i for i in range(53) if original[i] or not baseline]
    # the vocabulary of the kept rows tokenised directly, as before the cache: the whole set's table changes nothing
    from pipelines.student.vocab import CorpusBuilder, Vocab

    direct = CorpusBuilder(tok, 2)
    direct.add([a[i] for i in kept], 0)
    direct.add([b[i] for i in kept], 1)
    assert sliced.vocab.tokens == Vocab.build(direct.tokens, direct.counts, 2, cfg.max_vocab).tokens
    assert len(sliced) == len(kept) == whole.counts["rows"]
    for side, texts in ((sliced.a, a), (sliced.b, b)):
        assert side.ids.dtype == np.int32 and len(side) == len(kept)
        for j, i in enumerate(kept):
            assert side.ids[side.offsets[j]:side.offsets[j + 1]].tolist() == sliced.vocab.encode(tok(texts[i]))
    for x, y in ((whole.a, sliced.a), (whole.b, sliced.b)):
        assert x.ids.tolist() == y.ids.tolist() and x.offsets.tolist() == y.offsets.tolist()


def test_eval_stage_matches_training_metrics(demo_scored, tmp_path):
    out = tmp_path / "s"
    train_stage.run(tiny_train_config(demo_scored, out, epochs=1))
    want = json.loads((out / "metrics.json").read_text())["dev"]["dev"]["accuracy"]
    r = eval_stage.run(eval_stage.EvalConfig(student=out, task=get_task("demo")))
    assert f"accuracy={want:.4f}" in r.summary
    r = eval_stage.run(eval_stage.EvalConfig(student=out, task=get_task("demo"), json=True))
    assert json.loads(r.summary)["splits"]["dev"]["accuracy"] == want


def test_train_and_eval_through_the_cli(demo_scored, tmp_path, capsys):
    out = tmp_path / "s"
    rc = cli.main(["train", "--scored", str(demo_scored), "--task", "demo", "--out", str(out), "--epochs", "1",
                   "--vectors", "none", "--hidden", "8", "--fc", "8", "--embed-dim", "8", "--export", "none",
                   "--threads", "1"])
    assert rc == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("train demo: distilled (mse) student") and "\n" not in line
    assert cli.main(["eval", "--student", str(out), "--task", "demo", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    trained = json.loads((out / "metrics.json").read_text())["dev"]["dev"]["accuracy"]
    assert doc["task"] == "demo" and doc["splits"]["dev"]["accuracy"] == pytest.approx(trained)
    assert cli.main(["train", "--scored", str(tmp_path), "--task", "demo", "--out", str(out)]) == 2
    assert "error" in capsys.readouterr().err


def test_train_seeds_trains_one_student_per_seed_side_by_side(demo_scored, tmp_path):
    out = tmp_path / "seeds"
    result = train_stage.run(tiny_train_config(demo_scored, out, epochs=1, seed=5, seeds=(5, 6)))
    docs = [json.loads((out / f"seed-{s}" / "metrics.json").read_text()) for s in (5, 6)]
    accs = [d["dev"]["dev"]["accuracy"] for d in docs]
    assert f"dev accuracy {np.mean(accs):.4f} ± {np.std(accs, ddof=1):.4f} (sample std" in result.summary
    assert "seeds 5, 6" in result.summary
    assert [json.loads((out / f"seed-{s}" / "manifest.json").read_text())["seed"] for s in (5, 6)] == [5, 6]
    single = train_stage.run(tiny_train_config(demo_scored, tmp_path / "one", epochs=1, seed=6))
    assert json.loads((single.out_dir / "metrics.json").read_text())["dev"] == docs[1]["dev"]  # the same student
    again = train_stage.run(tiny_train_config(demo_scored, out, epochs=1, seed=5, seeds=(5, 6)))
    assert again.skipped
    with pytest.raises(ConfigError, match="is a student directory; --seeds writes OUT/seed-N"):
        train_stage.run(tiny_train_config(demo_scored, tmp_path / "one", epochs=1, seeds=2))


def test_ablation_subsets_select_rows_by_rule_and_draw(tmp_path):
    scored = demo_scored_set(tmp_path / "scored", synthetic_per_row=3)  # each original, 3 masked draws
    kept = 320 - holdout_size(320)
    want = {"max_draws": kept * 2, "max_draws0": kept, "mask": kept, "pos": kept * 4}
    for name, settings in (("max_draws", {"max_draws": 1}), ("max_draws0", {"max_draws": 0}),
                           ("mask", {"drop_rule": "mask"}), ("pos", {"drop_rule": "pos"})):
        out = train_stage.run(tiny_train_config(scored, tmp_path / name, epochs=1, **settings)).out_dir
        assert json.loads((out / "stats.json").read_text())["rows"] == want[name], name
    with pytest.raises(ConfigError, match=r"\[drop_rule\] must be one of mask, pos, ngram"):
        train_stage.run(tiny_train_config(scored, tmp_path / "x", drop_rule="masks"))


def test_stage_manifest_is_a_finished_output(demo_scored, tmp_path):
    out = tmp_path / "s"
    cfg = tiny_train_config(demo_scored, out, epochs=1)
    train_stage.run(cfg)
    fp = json.loads((out / "manifest.json").read_text())["fingerprint"]
    assert store.is_complete(out, fp)


@pytest.mark.slow
def test_train_stage_real_pipeline_beats_majority_on_sst2(tmp_path):
    """augment -> score (the reference MiniLM teacher) -> train on a slice of SST-2; the student must beat the
    majority class on the full SST-2 dev set."""
    if not (SST2.is_dir() and TEACHER.is_dir()):
        pytest.skip(f"{SST2} or {TEACHER} is not present")
    from augment.recipe import RecipeConfig
    from pipelines.stages import augment as augment_stage
    from pipelines.stages import score as score_stage
    from pipelines.tasks import read_split

    task = get_task("sst2")
    transfer, scored, out = tmp_path / "transfer", tmp_path / "scored", tmp_path / "student"
    augment_stage.run(augment_stage.AugmentConfig(task=task, out=transfer, data=SST2, limit=1500,
                                                  recipe=RecipeConfig(n_iter=3), workers=1))
    score_stage.run(score_stage.ScoreConfig(teacher=str(TEACHER), out=scored, transfer=transfer, device="cpu"))
    train_stage.run(train_stage.TrainConfig(scored=scored, task=task, data=SST2, out=out, epochs=6, patience=6,
                                            export="none", threads=1))
    acc = json.loads((out / "metrics.json").read_text())["dev"]["dev"]["accuracy"]
    dev, _ = read_split(task, SST2, "dev")
    majority = max(np.mean(dev.labels == 0), np.mean(dev.labels == 1))
    assert acc > majority + 0.05, (acc, majority)
