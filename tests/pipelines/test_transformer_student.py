"""The transformer student's initialisation from the teacher's own layers (#13, first part)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from pipelines.errors import ConfigError, DataError, TeacherMismatchError
from pipelines.student.transformer import (check_tokenizers_agree, default_layers, encoder_blocks, parse_layers,
                                           student_from_teacher)
from pipelines import hub

from .conftest import make_teacher, make_tokenizer

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def load(path):
    return hub.load_classifier(path, torch.device("cpu")).eval()


def test_a_one_layer_student_keeps_the_chosen_layer_embeddings_and_head(tiny_teacher):
    teacher = load(tiny_teacher)
    student = student_from_teacher(teacher, [1]).eval()
    parent, attr, _ = encoder_blocks(student)
    assert len(getattr(parent, attr)) == 1 and student.config.num_hidden_layers == 1
    assert teacher.config.num_hidden_layers == 2 and len(teacher.bert.encoder.layer) == 2  # teacher untouched
    kept, source = student.bert.encoder.layer[0].state_dict(), teacher.bert.encoder.layer[1].state_dict()
    assert kept.keys() == source.keys() and all(torch.equal(kept[k], source[k]) for k in kept)
    for name in ("bert.embeddings", "bert.pooler", "classifier"):
        s, t = student.get_submodule(name).state_dict(), teacher.get_submodule(name).state_dict()
        assert all(torch.equal(s[k], t[k]) for k in t), name
    assert student.bert.encoder.layer[0] is not teacher.bert.encoder.layer[1]  # a copy, trained on its own


def test_the_student_runs_and_saves_like_any_classifier(tiny_teacher, tmp_path):
    from transformers import AutoTokenizer

    teacher = load(tiny_teacher)
    student = student_from_teacher(teacher, default_layers(2)).eval()
    tok = AutoTokenizer.from_pretrained(tiny_teacher)
    batch = tok(["the film is good", "a very bad plot"], padding=True, return_tensors="pt")
    with torch.no_grad():
        logits = student(**batch).logits
        assert logits.shape == (2, 2)
        assert not torch.allclose(logits, teacher(**batch).logits)  # one layer fewer computes something else
        hub.save_teacher(student, tok, tmp_path / "student")
        again = load(tmp_path / "student")
        assert again.config.num_hidden_layers == 1
        assert torch.allclose(again(**batch).logits, logits, atol=1e-6)


def test_layers_are_checked():
    assert default_layers(6) == [0, 2, 4] and default_layers(12) == [0, 2, 4, 6, 8, 10] and default_layers(1) == [0]
    assert parse_layers("1,3,5", 6) == [1, 3, 5] and parse_layers(None, 4) == [0, 2]
    for bad, match in (("0,6", "0..5"), ("2,1", "increasing"), ("1,1", "increasing"), ("a,b", "comma-separated")):
        with pytest.raises(ConfigError, match=match):
            parse_layers(bad, 6)


def test_a_student_tokenizer_other_than_the_teachers_is_refused(tiny_teacher, tmp_path):
    from transformers import AutoTokenizer

    teacher_tok = AutoTokenizer.from_pretrained(tiny_teacher)
    check_tokenizers_agree(teacher_tok, AutoTokenizer.from_pretrained(tiny_teacher), "t", "s")  # the same: fine
    other = make_tokenizer(tmp_path / "other", mask_token="[MSK]", additional_special_tokens=["[MSK]"])
    with pytest.raises(TeacherMismatchError, match=r"does not share the teacher t's tokenizer: .*mask_token"):
        check_tokenizers_agree(teacher_tok, other, "t", "s")
    cased = make_teacher(tmp_path / "cased", do_lower_case=False)
    with pytest.raises(TeacherMismatchError, match="lower-cases"):
        check_tokenizers_agree(teacher_tok, AutoTokenizer.from_pretrained(cased), "t", "s")


def test_settings_of_the_other_family_are_refused_not_ignored(tmp_path):
    from pathlib import Path

    from pipelines.stages.run import load_config, plan_run
    from pipelines.student.config import TrainConfig
    from pipelines.tasks import get_task

    base = dict(scored=Path("s"), task=get_task("demo"), out=Path("o"))
    assert TrainConfig(**base).problems() == [] and TrainConfig(**base, family="transformer").problems() == []
    assert TrainConfig(**base, family="transformer", export="none", layers="0", grad_accum=2).problems() == []
    assert TrainConfig(**base, vectors="none", ema=0.0, hidden=8).problems() == []
    assert TrainConfig(**base, grad_accum=2, batch_size=16).problems() == []  # settings of both families
    assert TrainConfig(**base, student_init="x", batch_tokens=512).problems() == [
        "[student_init] is a transformer setting (got 'x'); the bilstm student does not use it: leave it out, or "
        "train a transformer student",
        "[batch_tokens] is a transformer setting (got 512); the bilstm student does not use it: leave it out, or "
        "train a transformer student"]
    problems = TrainConfig(**base, family="transformer", vectors="glove", ema=0.9).problems()
    assert [p.split("]")[0] for p in problems] == ["[vectors", "[ema"] and "a BiLSTM setting" in problems[0]
    with pytest.raises(ConfigError, match=r"\[transformer.hidden\] is a BiLSTM setting \(got 3\)"):
        plan_run(load_config("demo", ["students=[bilstm, transformer]", "transformer.hidden=3"]), tmp_path / "r")


# ----------------------------------------------------------------------------------------------- training

@pytest.fixture(scope="module")
def demo_scored_by_tiny_teacher(tmp_path_factory, tiny_teacher):
    """The demo train split (each sentence and a masked copy) scored by the tiny teacher with the real stage."""
    from augment import MASK_SYMBOL
    from pipelines.stages import score
    from pipelines.stages.score import ScoreConfig
    from pipelines.tasks import get_task, read_split

    from .conftest import write_transfer_set

    demo = get_task("demo")
    split, _ = read_split(demo, demo.default_data, "train")
    texts, labels = [], []
    for text, y in zip(split.texts, split.labels.tolist()):
        words = text.split()
        texts += [text, " ".join([MASK_SYMBOL] + words[1:])]
        labels += [y, None]
    root = tmp_path_factory.mktemp("tf-student")
    transfer = write_transfer_set(root / "transfer", texts, task=demo, labels=labels)
    return score.run(ScoreConfig(teacher=str(tiny_teacher), transfer=transfer, out=root / "scored",
                                 dtype="float32")).out_dir


def tf_config(scored, out, **overrides):
    from pipelines.stages.train import TrainConfig
    from pipelines.tasks import get_task

    values = dict(scored=scored, task=get_task("demo"), out=out, family="transformer", epochs=3, lr=1e-3,
                  batch_tokens=512, threads=1, patience=5, warmup_ratio=0.1)
    return TrainConfig(**{**values, **overrides})


class _Kill(Exception):
    pass


def test_the_transformer_student_learns_from_the_cached_logits(demo_scored_by_tiny_teacher, tmp_path):
    import json

    from pipelines.stages import train as train_stage

    out = tmp_path / "student"
    result = train_stage.run(tf_config(demo_scored_by_tiny_teacher, out))
    assert "transformer distilled (kl)" in result.summary
    history = json.loads((out / "metrics.json").read_text())["history"]
    assert history[-1]["train_loss"] < 0.7 * history[0]["train_loss"]  # the loss falls
    stats = json.loads((out / "stats.json").read_text())
    assert stats["layers"] == [0] and stats["init_layers"] == 2 and stats["student"] == "transformer"
    assert json.loads((out / "student.json").read_text())["kind"] == "transformer"
    student = load(out)  # a Hugging Face classifier directory
    assert student.config.num_hidden_layers == 1 and (out / "tokenizer.json").is_file()
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["loss"] == "kl" and manifest["config"]["lr"] == 1e-3 and "vectors" not in manifest["config"]
    assert stats["export"]["max_abs_diff"]["onnx"] < 1e-4  # ONNX, with dynamic axes, agrees with PyTorch

    # predict.py needs only onnxruntime, tokenizers and the directory; it agrees with the PyTorch model
    import subprocess
    import sys

    from transformers import AutoTokenizer

    texts = ["a gorgeous , witty film", "a chore to sit through , dull and long", "fun"]
    # the BiLSTM's predict.py's command line: texts as arguments (the directory its own), or stdin, --json, --dir
    done = subprocess.run([sys.executable, str(out / "predict.py"), *texts], capture_output=True, text=True,
                          check=True)
    tok = AutoTokenizer.from_pretrained(out)
    with torch.no_grad():
        probs = student(**tok(texts, padding=True, return_tensors="pt")).logits.softmax(1)
    ids = probs.argmax(1).tolist()
    rows = [line.split("\t") for line in done.stdout.splitlines()]
    assert [(r[0], r[2]) for r in rows] == [(student.config.id2label[i], t) for i, t in zip(ids, texts)]
    assert [float(r[1]) for r in rows] == pytest.approx(probs.max(1).values.tolist(), abs=1e-3)
    piped = subprocess.run([sys.executable, str(out / "predict.py"), "--json", "--dir", str(out), "-"],
                           input="\n".join(texts) + "\n", capture_output=True, text=True, check=True, cwd="/")
    docs = [json.loads(line) for line in piped.stdout.splitlines()]
    assert [(d["text"], d["label"]) for d in docs] == [(r[2], r[0]) for r in rows] and len(docs[0]["probs"]) == 2
    old = subprocess.run([sys.executable, str(out / "predict.py"), str(out), *texts], capture_output=True, text=True,
                         check=True, cwd="/")  # the old command line still works, and says the new one
    assert old.stdout == done.stdout and "--dir" in old.stderr


def test_distill_eval_reads_a_transformer_student(demo_scored_by_tiny_teacher, tmp_path, capsys):
    """`distill eval` on a transformer directory: the float32 PyTorch model's predictions on the demo dev split,
    scored with the task's metrics; a task with other labels is refused by name."""
    import json

    import numpy as np
    from transformers import AutoTokenizer

    from pipelines import cli, metrics
    from pipelines.stages import evaluate as eval_stage, train as train_stage
    from pipelines.tasks import get_task, read_split

    out = train_stage.run(tf_config(demo_scored_by_tiny_teacher, tmp_path / "student", epochs=1)).out_dir
    assert cli.main(["eval", "--student", str(out), "--task", "demo", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    demo = get_task("demo")
    dev, _ = read_split(demo, demo.default_data, "dev")
    tok, student = AutoTokenizer.from_pretrained(out), load(out)
    with torch.no_grad():
        pred = student(**tok(dev.texts, padding=True, return_tensors="pt")).logits.argmax(1).numpy()
    assert doc["family"] == "transformer" and doc["splits"]["dev"]["rows"] == len(dev)
    assert doc["splits"]["dev"]["accuracy"] == pytest.approx(metrics.compute(("accuracy",), pred, dev.labels)["accuracy"])
    assert doc["splits"]["dev"]["predicted_distribution"] == np.bincount(pred, minlength=2).tolist()
    with pytest.raises(DataError, match=r"predicts \['negative', 'positive'\] but task 'mrpc' has"):
        eval_stage.evaluate_student(eval_stage.EvalConfig(student=out, task=get_task("mrpc"), data=tmp_path))
    with pytest.raises(DataError, match="not a student directory"):
        eval_stage.evaluate_student(eval_stage.EvalConfig(student=tmp_path, task=demo))
    with pytest.raises(DataError, match="missing: no such directory"):
        eval_stage.evaluate_student(eval_stage.EvalConfig(student=tmp_path / "missing", task=demo))


def test_predict_py_renders_the_transfer_sets_mask_symbol():
    from augment import MASK_SYMBOL
    from pipelines.student import predict_transformer

    assert predict_transformer.MASK_SYMBOL == MASK_SYMBOL


@pytest.mark.parametrize("minutes", [10.0, 1e-9], ids=["epoch-checkpoints", "and-a-finished-epochs-in-epoch-one"])
def test_a_killed_transformer_run_resumes_to_the_same_weights(demo_scored_by_tiny_teacher, tmp_path, minutes):
    from safetensors.torch import load_file

    from pipelines.stages import train as train_stage

    straight = train_stage.run(tf_config(demo_scored_by_tiny_teacher, tmp_path / "straight", grad_accum=2)).out_dir
    cfg = tf_config(demo_scored_by_tiny_teacher, tmp_path / "resumed", grad_accum=2, checkpoint_minutes=minutes)

    def kill_after_first_epoch(state):
        if state.epoch == 1:
            raise _Kill()

    with pytest.raises(_Kill):
        train_stage.run(cfg, on_epoch_end=kill_after_first_epoch)
    seen = []
    train_stage.run(cfg, on_epoch_end=lambda s: seen.append(s.epoch))
    assert seen == [2, 3]
    a, b = load_file(str(straight / "model.safetensors")), load_file(str(tmp_path / "resumed" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert json.loads((straight / "stats.json").read_text())["resumed"] is None
    assert json.loads((tmp_path / "resumed" / "stats.json").read_text())["resumed"] == {"epochs_done": 1}


def test_a_run_killed_inside_an_epoch_resumes_from_there_to_the_same_weights(demo_scored_by_tiny_teacher, tmp_path,
                                                                             monkeypatch):
    from safetensors.torch import load_file

    from pipelines import checkpoints
    from pipelines.stages import train as train_stage
    from pipelines.training.resume import CHECKPOINT

    straight = train_stage.run(tf_config(demo_scored_by_tiny_teacher, tmp_path / "straight", grad_accum=2,
                                         checkpoint_minutes=0)).out_dir
    straight_history = json.loads((straight / "metrics.json").read_text())["history"]
    ends = [h["step"] for h in straight_history]  # optimiser steps after each epoch
    steps = [ends[0], ends[1] - ends[0]]
    assert steps[1] >= 4  # enough steps in epoch 2 to stop in its middle
    saving, saved = checkpoints.save, []

    def save_or_die(path, fp, state, rng=None):
        position = state["position"]
        if position is not None and position["epoch"] == 2:  # a save inside epoch 2
            if len(saved) == steps[1] // 2:  # killed before this save: the step before it is redone
                raise _Kill()
            saved.append(position["done"])
        saving(path, fp, state, rng)

    monkeypatch.setattr(checkpoints, "save", save_or_die)
    cfg = tf_config(demo_scored_by_tiny_teacher, tmp_path / "resumed", grad_accum=2, checkpoint_minutes=1e-9)
    with pytest.raises(_Kill):
        train_stage.run(cfg)
    monkeypatch.setattr(checkpoints, "save", saving)
    assert saved == [2 * i for i in range(1, steps[1] // 2 + 1)]  # epoch 2's saves: batches done
    assert len(list(tmp_path.glob(f".resumed.partial-*/{CHECKPOINT}"))) == 1
    seen = []
    resumed = train_stage.run(cfg, on_epoch_end=lambda s: seen.append(s.epoch)).out_dir
    assert seen == [2, 3]
    a, b = load_file(str(straight / "model.safetensors")), load_file(str(resumed / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    history = json.loads((resumed / "metrics.json").read_text())["history"]
    figures = ("step", "train_loss", "grad_norm", "dev")
    assert [[h[k] for k in figures] for h in history] == [[h[k] for k in figures] for h in straight_history]
    assert not list(tmp_path.rglob(CHECKPOINT))
    assert json.loads((resumed / "stats.json").read_text())["resumed"] == {"epochs_done": 1, "batches_done": saved[-1],
                                                                           "in_epoch": 2}


def test_student_init_with_another_tokenizer_is_refused(demo_scored_by_tiny_teacher, tmp_path):
    from pipelines.stages import train as train_stage

    other = make_teacher(tmp_path / "other", mask_token="[MSK]", additional_special_tokens=["[MSK]"])
    with pytest.raises(TeacherMismatchError, match="does not share the teacher"):
        train_stage.run(tf_config(demo_scored_by_tiny_teacher, tmp_path / "s", student_init=str(other)))
    assert not (tmp_path / "s").exists()


def test_a_student_made_from_another_encoder_keeps_its_layers_and_records_it(demo_scored_by_tiny_teacher,
                                                                            tiny_teacher, tmp_path):
    from safetensors.torch import load_file

    from pipelines.stages import train as train_stage

    other = make_teacher(tmp_path / "other", encoder_only=True, seed=1)  # a bare encoder, the teacher's tokenizer
    out = tmp_path / "s"
    train_stage.run(tf_config(demo_scored_by_tiny_teacher, out, student_init=str(other), epochs=1))
    stats = json.loads((out / "stats.json").read_text())
    assert stats["layers"] == [0, 1] and stats["init_layers"] == 2 and stats["init"] == str(other.resolve())
    record = json.loads((out / "manifest.json").read_text())["student_init"]
    assert record["name"] == str(other) and record["weights_sha256"] == hub.locate_model(other).weights_sha256
    key = "bert.embeddings.word_embeddings.weight"
    student = load_file(str(out / "model.safetensors"))[key]
    start = load_file(str(other / "model.safetensors"))["embeddings.word_embeddings.weight"]
    teacher = load_file(str(tiny_teacher / "model.safetensors"))[key]
    assert (student - start).abs().mean() < 0.1 * start.abs().mean()  # trained a little from `other`'s weights
    assert (student - teacher).abs().mean() > 10 * (student - start).abs().mean()  # not from the teacher's
    cfg = tf_config(demo_scored_by_tiny_teacher, out, student_init=str(other), epochs=1)
    assert train_stage.run(cfg).skipped  # the same encoder: the finished student is reused
    make_teacher(other, encoder_only=True, seed=2)  # other weights under the same name: trained again
    assert not train_stage.run(cfg).skipped


def test_a_student_init_that_cannot_be_found_is_a_clear_error(demo_scored_by_tiny_teacher, tmp_path):
    from pipelines.errors import MissingResourceError
    from pipelines.stages import train as train_stage

    with pytest.raises(MissingResourceError, match="missing: no such model directory"):
        train_stage.run(tf_config(demo_scored_by_tiny_teacher, tmp_path / "s", student_init=str(tmp_path / "missing")))
    with pytest.raises(MissingResourceError, match="someone/not-cached-model: .* could not be fetched"):
        train_stage.run(tf_config(demo_scored_by_tiny_teacher, tmp_path / "s", student_init="someone/not-cached-model"))
    assert not (tmp_path / "s").exists() and not list(tmp_path.glob(".s.*"))


@pytest.mark.slow
def test_a_transformer_student_from_the_real_minilm_teacher(reference_teacher, sst2_dir, tmp_path):
    """The reference MiniLM-L6 teacher scores 120 real SST-2 sentences; a 3-layer student made from it trains
    for an epoch (one step: how well is the benchmark's business), exports to ONNX and agrees with PyTorch."""
    import json

    from pipelines.stages import score, train as train_stage
    from pipelines.stages.score import ScoreConfig
    from pipelines.stages.train import TrainConfig
    from pipelines.tasks import TASKS, read_split

    from .conftest import write_transfer_set

    sst2 = TASKS["sst2"]
    split, _ = read_split(sst2, sst2_dir, "train", limit=120)
    transfer = write_transfer_set(tmp_path / "t", split.texts, task=sst2, labels=split.labels.tolist())
    scored = score.run(ScoreConfig(teacher=str(reference_teacher), transfer=transfer, out=tmp_path / "s")).out_dir
    out = train_stage.run(TrainConfig(scored=scored, task=sst2, data=sst2_dir, out=tmp_path / "student",
                                      family="transformer", epochs=1)).out_dir
    stats = json.loads((out / "stats.json").read_text())
    assert stats["layers"] == [0, 2, 4] and stats["init_layers"] == 6
    assert stats["export"]["max_abs_diff"]["onnx"] < 1e-3
    assert stats["params"] < 0.85 * 22_713_986  # three of the teacher's six layers (the embeddings stay whole)
    assert 0.0 <= stats["dev"]["dev"]["accuracy"] <= 1.0 and stats["rows"] == 114  # 6 held out


@pytest.mark.parametrize("overrides", [{"grad_accum": 1}, {"grad_accum": 3}, {"batch_tokens": 512, "grad_accum": 2}],
                         ids=["rows", "rows-accum3", "tokens-accum2"])
def test_the_transformer_rate_reaches_zero_exactly_at_its_last_step(demo_scored_by_tiny_teacher, tmp_path,
                                                                    monkeypatch, overrides):
    """The schedule is sized from the batches the epochs run (planned up front), so the rate warms up, decays
    and reaches zero at the last step, not three quarters of the way through."""
    from pipelines.stages import train as train_stage
    from pipelines.training import fitter as fitter_module

    seen, real = [], fitter_module.Fitter.step
    monkeypatch.setattr(fitter_module.Fitter, "step", lambda self, g, o: seen.append(self.lr) or real(self, g, o))
    cfg = tf_config(demo_scored_by_tiny_teacher, tmp_path / "s", **{"epochs": 2, "batch_tokens": None,
                                                                     "batch_size": 16, **overrides})
    train_stage.run(cfg)
    stats = json.loads((tmp_path / "s" / "stats.json").read_text())
    history = json.loads((tmp_path / "s" / "metrics.json").read_text())["history"]
    assert stats["planned_steps"] == stats["steps"] == len(seen) == history[-1]["step"]
    warmup = int(0.1 * len(seen))
    assert seen[:warmup + 1] == sorted(seen[:warmup + 1]) and seen[warmup:] == sorted(seen[warmup:], reverse=True)
    assert all(lr > 0 for lr in seen[1:]) and history[-1]["lr"] == 0.0
    if "batch_tokens" not in overrides:  # rows: batches of 16, as many per epoch as the rows make
        batches = -(-stats["rows"] // 16)  # one group of 2,048 rows at most: ceil(rows / 16) batches
        assert history[0]["step"] == -(-batches // overrides["grad_accum"])


def test_the_word_pieces_come_from_one_token_cache_entry_equal_to_tokenising_the_kept_rows(
        demo_scored_by_tiny_teacher, tmp_path, monkeypatch):
    from pipelines.encoding import encode, render_masks
    from pipelines.stages import train as train_stage
    from pipelines.student import transformer_training as tt
    from pipelines.tasks import get_task
    from pipelines.training.rows import select_rows

    monkeypatch.setenv("DISTILL_CACHE", str(tmp_path / "cache"))
    cfg = tf_config(demo_scored_by_tiny_teacher, tmp_path / "s0", epochs=1).resolved()
    tokenizer = hub.load_tokenizer(tt.made_from_what(cfg, _stage_of(demo_scored_by_tiny_teacher))[0])
    data = tt.load_rows(cfg, get_task("demo"), tokenizer)
    rows = select_rows(cfg, get_task("demo"))
    direct = encode(tokenizer, render_masks(rows.table.column("text").to_pylist(), tokenizer.mask_token), None,
                    cfg.max_length)
    assert np.array_equal(data.enc.ids, direct.ids) and np.array_equal(data.enc.offsets, direct.offsets)
    assert data.counts["token_cache"]["hit"] is False
    runs = [train_stage.run(tf_config(demo_scored_by_tiny_teacher, tmp_path / f"s{seed}", epochs=1, seed=seed))
            for seed in (1, 2)]
    caches = [json.loads((r.out_dir / "stats.json").read_text())["token_cache"] for r in runs]
    assert [c["hit"] for c in caches] == [True, True] and caches[0]["key"] == data.counts["token_cache"]["key"]
    assert len(list((tmp_path / "cache" / "tokens").iterdir())) == 1  # one entry, no temporary folder left


def _stage_of(scored):
    """What `made_from_what` reads of a stage: the scored set's teacher record."""
    from types import SimpleNamespace

    return SimpleNamespace(extra={"teacher": json.loads((scored / "manifest.json").read_text())["teacher"]})


def test_the_piece_cache_of_a_pair_set_equals_tokenising_it_whole(tmp_path, monkeypatch):
    """Pieces written a slice at a time (ids, row offsets, token types) are the bulk encoding of every row."""
    from augment import MASK_SYMBOL
    from pipelines.encoding import encode, render_masks
    from pipelines.stages.train import TrainConfig
    from pipelines.student.piece_cache import kept_encoding, piece_tokens
    from pipelines.tasks import generic_task
    from pipelines.training import rows as rows_module
    from pipelines.training.rows import select_rows

    from .student_fixtures import write_scored_set

    monkeypatch.setenv("DISTILL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(rows_module, "TOKENISE_ROWS", 4)
    rng = np.random.default_rng(0)
    words = ["the", "movie", "was", "good", "bad", "fun", MASK_SYMBOL, "unknownword"]
    a = [" ".join(rng.choice(words, rng.integers(0, 6))) for _ in range(19)]
    b = [" ".join(rng.choice(words, rng.integers(1, 4))) for _ in range(19)]
    scored = write_scored_set(tmp_path / "scored", a, rng.normal(size=(19, 2)), labels=[i % 2 for i in range(19)],
                              pairs=b)
    task = generic_task("s1", "s2", "label", ["0", "1"], name="pairs")
    cfg = TrainConfig(scored=scored, task=task, out=tmp_path / "s", family="transformer", select_on="dev")
    tokenizer = make_tokenizer(tmp_path / "tok")
    selected = select_rows(cfg.resolved(), task)
    cache = piece_tokens(scored, selected, tokenizer, 16, True)
    kept = np.array([0, 3, 4, 18, 7])
    got = kept_encoding(cache, kept)
    want = encode(tokenizer, render_masks([a[i] for i in kept], "[MASK]"), render_masks([b[i] for i in kept],
                                                                                       "[MASK]"), 16)
    assert got.ids.tolist() == want.ids.tolist() and got.offsets.tolist() == want.offsets.tolist()
    assert got.types is not None and got.types.tolist() == want.types.tolist() and set(want.types.tolist()) == {0, 1}
    assert piece_tokens(scored, selected, tokenizer, 16, True).hit  # the same key: read, not built
    assert not piece_tokens(scored, selected, tokenizer, 12, True).hit  # another max_len: another entry


def test_a_teacher_fine_tuned_again_in_place_is_refused_as_the_students_source(tiny_teacher, tmp_path):
    import shutil

    from pipelines.stages import score, train as train_stage
    from pipelines.stages.score import ScoreConfig
    from pipelines.tasks import get_task

    from .conftest import random_sentences, write_transfer_set

    teacher = tmp_path / "teacher"
    shutil.copytree(tiny_teacher, teacher)
    transfer = write_transfer_set(tmp_path / "transfer", random_sentences(60), task=get_task("demo"))
    scored = score.run(ScoreConfig(teacher=str(teacher), transfer=transfer, out=tmp_path / "scored",
                                   dtype="float32")).out_dir
    make_teacher(teacher, seed=1)  # fine-tuned again in place: other weights under the same path
    with pytest.raises(TeacherMismatchError, match="the teacher's weights changed since it scored"):
        train_stage.plan(tf_config(scored, tmp_path / "s"))
    assert train_stage.plan(tf_config(scored, tmp_path / "s", student_init=str(teacher))).init is not None


def test_the_export_setting_enters_the_transformer_students_fingerprint(demo_scored_by_tiny_teacher, tmp_path):
    from pipelines.stages import train as train_stage

    fp = {export: train_stage.plan(tf_config(demo_scored_by_tiny_teacher, tmp_path / "s", export=export)).fingerprint
          for export in ("auto", "none", "onnx")}
    assert len(set(fp.values())) == 3  # a student saved without ONNX is not reused when ONNX is wanted
