"""`distill run` end to end through the report for every kind of task and every shipped config, at a tiny
scale: generic single-sentence tasks with more than two classes (JSONL), generic pair tasks (CSV), and the
built-in `sst2`, `mrpc` and `custom-template` configs (`demo` runs in test_run.py with the real MiniLM).
Real spaCy tags the text; the teachers are tiny random BERTs (conftest.make_teacher), fine-tuned by the run
where the config asks for it. Also: checks that run before any stage, and the run directory's safety.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from pipelines.cli import main

from .conftest import SENTENCE_WORDS, make_teacher

TINY = ["--set", "augment.n_iter=2", "--set", "augment.limit=40", "--set", "student.epochs=1",
        "--set", "student.vectors=none", "--set", "student.expand_vocab=0", "--set", "student.export=none",
        "--set", "student.embed_dim=16", "--set", "student.hidden=8", "--set", "student.fc=8"]
TINY_FINETUNE = ["--set", "finetune.epochs=1", "--set", "finetune.limit=40",
                 "--set", "teacher.force=true"]  # a 1-step teacher of a tiny model learns nothing: run it anyway
SIX = ["anger", "fear", "joy", "love", "sadness", "surprise"]


def sentences(n: int, seed: int) -> list[str]:
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(SENTENCE_WORDS, size=int(rng.integers(3, 12)))) for _ in range(n)]


def write_jsonl(path: Path, n: int, seed: int) -> None:
    rows = [{"review": t, "emotion": SIX[i % 6]} for i, t in enumerate(sentences(n, seed))]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")


def write_pair_csv(path: Path, n: int, seed: int) -> None:
    a, b = sentences(n, seed), sentences(n, seed + 100)
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["first", "second", "same"])
        writer.writerows([x, y, ("same", "different")[i % 2]] for i, (x, y) in enumerate(zip(a, b)))


def report_of(out: Path) -> dict:
    stages = {s["stage"]: s["status"] for s in json.loads((out / "run.json").read_text())["stages"]}
    assert all(status == "done" for status in stages.values()), stages
    assert (out / "report.md").is_file()
    return json.loads((out / "report.json").read_text())


@pytest.fixture(scope="module")
def tiny_backbone(tmp_path_factory) -> Path:
    """A bare tiny BertModel, as the MiniLM package ships: fine-tuning gives it a head with the task's labels."""
    return make_teacher(tmp_path_factory.mktemp("backbone"), None, encoder_only=True, init_std=None)


@pytest.mark.slow
def test_generic_six_class_jsonl_task_runs_through_the_report(tmp_path, tiny_backbone):
    data = tmp_path / "emotions"
    data.mkdir()
    write_jsonl(data / "train.jsonl", 60, 0)
    write_jsonl(data / "dev.jsonl", 24, 1)
    config = tmp_path / "emotions.yaml"
    config.write_text(f"task: emotions\ndata: {data}\ntext_col: review\nlabel_col: emotion\n"
                      f"teacher:\n  model: {tiny_backbone}\n  finetune: true\n", encoding="utf-8")
    out = tmp_path / "run"
    assert main(["run", str(config), "--out", str(out), *TINY, *TINY_FINETUNE]) == 0
    report = report_of(out)
    assert [m["name"].split(":")[0].split(" ")[0] for m in report["models"]][:1] == ["Teacher"]
    assert len(report["models"]) == 3
    student = json.loads((out / "student" / "config.json").read_text())
    assert student["task"]["label_names"] == SIX and student["model"]["num_labels"] == 6


@pytest.mark.slow
def test_generic_pair_csv_task_runs_through_the_report(tmp_path):
    data = tmp_path / "pairs"
    data.mkdir()
    write_pair_csv(data / "train.csv", 50, 0)
    write_pair_csv(data / "dev.csv", 20, 1)
    teacher = make_teacher(tmp_path / "teacher", ("different", "same"))
    out = tmp_path / "run"
    argv = ["run", "custom-template", "--out", str(out), "--data", str(data), "--teacher", str(teacher),
            "--set", "text_col=first", "--set", "text_pair_col=second", "--set", "label_col=same",
            "--set", "labels=[different, same]", "--set", "teacher.finetune=false", *TINY]
    assert main(argv) == 0
    report = report_of(out)
    assert len(report["models"]) == 3 and report["transfer"]["originals"] == 40
    assert json.loads((out / "student" / "config.json").read_text())["model"]["arch"] == "siamese_bilstm"


@pytest.mark.slow
def test_shipped_sst2_config_at_a_tiny_scale(tmp_path, sst2_dir):
    teacher = make_teacher(tmp_path / "teacher")
    out = tmp_path / "run"
    assert main(["run", "sst2", "--out", str(out), "--data", str(sst2_dir), "--teacher", str(teacher), *TINY]) == 0
    assert report_of(out)["transfer"]["originals"] == 40


@pytest.mark.slow
def test_shipped_mrpc_config_at_a_tiny_scale(tmp_path, mrpc_dir, tiny_backbone):
    out = tmp_path / "run"
    argv = ["run", "mrpc", "--out", str(out), "--data", str(mrpc_dir), "--teacher", str(tiny_backbone),
            *TINY, *TINY_FINETUNE]
    assert main(argv) == 0
    report = report_of(out)
    assert report["transfer"]["originals"] == 40 and "f1" in report["models"][1]["dev"]["dev"]


# ----------------------------------------------------------------------------------------------- before any work

def test_every_config_problem_is_listed_before_any_stage(tmp_path, capsys):
    out = tmp_path / "x"
    argv = ["run", "sst2", "--out", str(out), "--data", str(tmp_path / "missing"), "--set", "student.alpha=2",
            "--set", "student.temperature=0", "--set", "score.dtype=int4", "--set", "augment.p_mask=1.5"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    for expected in ("[data]", "missing", "[student.alpha] must be in [0, 1]", "[student.temperature] must be > 0",
                     "[score.dtype] must be one of", "[augment.", "p_mask", "[teacher.model] is required"):
        assert expected in err, (expected, err)
    assert not out.exists()


def test_unknown_task_and_a_teacher_with_the_wrong_labels_fail_at_once(tmp_path, capsys, sst2_dir):
    three = make_teacher(tmp_path / "three", ("a", "b", "c"))
    assert main(["run", "sst2", "--out", str(tmp_path / "x"), "--data", str(sst2_dir), "--teacher", str(three),
                 "--set", "student.loss=nope"]) == 2
    err = capsys.readouterr().err
    assert "[teacher.model]" in err and "[student.loss] unknown loss 'nope'" in err
    assert main(["run", "sst2", "--out", str(tmp_path / "y"), "--set", "task=sst3"]) == 2
    assert "[task] unknown task 'sst3'" in capsys.readouterr().err


def test_a_run_never_writes_into_a_directory_it_did_not_make(tmp_path, capsys, sst2_dir):
    teacher = make_teacher(tmp_path / "teacher")
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "report.md").write_text("my own report")
    argv = ["run", "sst2", "--out", str(mine), "--data", str(sst2_dir), "--teacher", str(teacher), *TINY]
    assert main(argv) == 2
    assert "holds no run.json written by `distill run`" in capsys.readouterr().err
    assert sorted(p.name for p in mine.iterdir()) == ["report.md"] and (mine / "report.md").read_text() == "my own report"
    (mine / "report.md").unlink()
    (mine / "run.json").write_text('{"stages": []}')  # a run.json, but not one of ours
    assert main(argv) == 2


@pytest.mark.slow
def test_a_teacher_that_learnt_nothing_stops_the_run_before_scoring(tmp_path, mrpc_dir, tiny_backbone, capsys):
    """One step of a tiny random backbone predicts one class: the run says so and scores nothing, keeps the
    teacher, and with teacher.force=true goes on from it."""
    out = tmp_path / "run"
    argv = ["run", "mrpc", "--out", str(out), "--data", str(mrpc_dir), "--teacher", str(tiny_backbone),
            *TINY, *TINY_FINETUNE[:4]]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "did not learn the task" in err and "no better than predicting class 1 for every row" in err
    assert "finetune.lr=auto" in err and "teacher.force=true" in err
    check = json.loads((out / "teacher" / "metrics.json").read_text())["check"]
    assert check["failed"] and check["split"] == "holdout" and len(check["predicted_distribution"]) == 2
    assert not (out / "scored").exists()
    stages = {s["stage"]: s["status"] for s in json.loads((out / "run.json").read_text())["stages"]}
    assert stages == {"augment": "done", "finetune-teacher": "done"}
    assert main(argv + ["--set", "teacher.force=true"]) == 0
    stages = {s["stage"]: s["status"] for s in json.loads((out / "run.json").read_text())["stages"]}
    assert stages["finetune-teacher"] == "cached" and stages["report"] == "done"
