"""pipelines/report.py: the comparison line and the speed note on hand-made rows, a run trained without a
baseline, and the teacher's measurement: dev metrics cached by fingerprint, speed timed on a sample."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

from pipelines.stages.run import load_config
from pipelines import hub, metrics, report
from pipelines.cli import main
from pipelines.devices import resolve_dtype
from pipelines.settings import TrainSettings
from pipelines.tasks import DEMO_DIR, get_task, read_split
from pipelines.teacher.finetune import plan_epochs
from pipelines.teacher.scorer import TeacherScorer, encode

from .conftest import make_teacher

DEMO = get_task("demo")
DEV_ROWS = 100  # data/demo/dev.tsv


def _row(name: str, accuracy: float, params: int, rate: float, **how) -> report.ModelRow:
    return report.ModelRow(name, {"dev": {"accuracy": accuracy}}, params, params // 10, rate, 1.0, "/x",
                      **{"speed_rows": 2, **how})


def _write(tmp_path, rows):
    agreement = {"gold_agreement_on_originals": 0.9, "_confidence": np.array([0.9, 0.6]),
                 "_original": np.array([True, False])}
    transfer = {"originals": 1, "synthetic": 1, "rows": 2, "rows_per_rule": {"mask": 1}}
    path = report.write_report(tmp_path, run_name="t", task=get_task("sst2"), teacher="teacher", rows=rows,
                          transfer_stats=transfer, agreement=agreement, stages=[], settings={}, speed_rows=2,
                          command="distill run t", machine="2 CPU cores")
    return path.read_text(), json.loads((tmp_path / "report.json").read_text())


def test_report_compares_the_distilled_student_with_teacher_and_baseline(tmp_path):
    rows = [_row("Teacher", 0.90, 1000, 10.0), _row("distilled", 0.88, 10, 1000.0, family="bilstm"),
            _row("baseline", 0.83, 10, 990.0, family="bilstm", baseline=True)]
    md, doc = _write(tmp_path, rows)
    cmp = doc["comparison"]
    assert round(cmp["student_vs_teacher"], 6) == -2.0 and round(cmp["distilled_vs_baseline"], 6) == 5.0
    assert cmp["speedup_vs_teacher"] == 100.0 and cmp["params_fraction_of_teacher"] == 0.01
    assert "-2.0 points against the teacher, +5.0 against the same student trained without distillation" in md
    assert "| distilled | 88.0 |" in md


def test_report_gives_the_majority_class_baseline_beside_every_metric(tmp_path):
    from pipelines.tasks import Split

    task = get_task("mrpc")  # accuracy and f1
    dev = {"dev": Split("x", ["a"] * 5, ["b"] * 5, np.array([1, 1, 0, 1, -1]))}
    majority = report.majority_baseline(task, dev)
    assert majority == {"dev": {"label": task.label_names[1], "accuracy": 0.75, "f1": round(2 * 0.75 / 1.75, 6)}}
    rows = [_row("Teacher", 0.90, 1000, 10.0), _row("distilled", 0.88, 10, 1000.0)]
    agreement = {"gold_agreement_on_originals": 0.9, "_confidence": np.array([0.9]), "_original": np.array([True])}
    path = report.write_report(tmp_path, run_name="t", task=get_task("sst2"), teacher="teacher", rows=rows,
                               transfer_stats={"originals": 1, "synthetic": 0, "rows": 1, "rows_per_rule": {}},
                               agreement=agreement, stages=[], settings={}, speed_rows=2, command="distill run t",
                               machine="2 CPU cores", majority={"dev": {"label": "positive", "accuracy": 0.509}})
    assert "| Majority class (every row the split's most frequent label) | 50.9 | – | – | – | – |" in path.read_text()
    assert json.loads((tmp_path / "report.json").read_text())["majority"]["dev"]["accuracy"] == 0.509


def test_report_without_a_baseline_claims_no_comparison_with_one(tmp_path):
    md, doc = _write(tmp_path, [_row("Teacher", 0.90, 1000, 10.0), _row("distilled", 0.88, 10, 1000.0)])
    assert "distilled_vs_baseline" not in doc["comparison"]
    assert "-2.0 points against the teacher; 100× the teacher's CPU speed" in md
    assert "without distillation" not in md


def test_report_says_what_chose_the_students_epochs(tmp_path):
    held = {"select_on": "holdout", "examples": 100, "of_examples": 2000, "rows": 1900}
    rows = [_row("Teacher", 0.90, 1000, 10.0),
            _row("distilled", 0.88, 10, 1000.0, family="bilstm", holdout={"accuracy": 0.87}, selection=held),
            _row("baseline", 0.83, 10, 990.0, family="bilstm", baseline=True, holdout={"accuracy": 0.81},
                 selection=held)]
    md, doc = _write(tmp_path, rows)
    assert "| dev accuracy | holdout accuracy |" in md and "| distilled | 88.0 | 87.0 |" in md
    assert "| Teacher | 90.0 | – |" in md
    assert ("chosen on a holdout of 100 of the 2,000 training examples (and the 1,900 transfer-set rows made "
            "from them, left out of training); the dev figures were not used to choose anything") in md
    md, _ = _write(tmp_path, [_row("Teacher", 0.90, 1000, 10.0), _row("distilled", 0.88, 10, 1000.0)])
    assert "chosen on dev (select_on: dev), so their dev figures are optimistic" in md
    assert "holdout accuracy" not in md


def test_report_gives_each_models_classes_confusion_and_calibration(tmp_path):
    view = metrics.class_view(np.log([[0.9, 0.1], [0.4, 0.6], [0.1, 0.9], [0.1, 0.9]]), np.array([0, 0, 1, 1]), 2)
    rows = [_row("Teacher", 0.90, 1000, 10.0, classes={"dev": view}),
            _row("distilled", 0.75, 10, 1000.0, family="bilstm", classes={"dev": view})]
    md, doc = _write(tmp_path, rows)
    assert "## Per class" in md and "| Model | P negative | R negative | P positive | R positive | Confusion | ECE |" in md
    assert "| distilled | 100.0 | 50.0 | 66.7 | 100.0 | [[1, 1], [0, 2]] | 0.225 |" in md
    assert doc["models"][1]["classes"]["dev"]["confusion"] == [[1, 1], [0, 2]]


def test_report_says_where_and_on_how_many_sentences_each_speed_was_measured(tmp_path):
    rows = [_row("Teacher", 0.90, 1000, 10.0, device="cuda", dtype="bf16", speed_rows=256),
            _row("distilled", 0.88, 10, 1000.0, speed_rows=872)]
    md, doc = _write(tmp_path, rows)
    assert "100× the teacher's speed on CUDA (bf16) with" in md and "CPU speed" not in md
    assert ("the teacher on CUDA (bf16) over 256 dev sentences; the students on CPU over 872 dev sentences"
            in md)
    assert doc["models"][0]["device"] == "cuda" and doc["models"][1]["device"] == "cpu"


# ----------------------------------------------------------------------------------------------- the teacher

@pytest.fixture
def demo_dev():
    return {"dev": read_split(DEMO, DEMO_DIR, "dev")[0]}


@pytest.fixture
def predicted_rows(monkeypatch) -> list[int]:
    """The number of rows of every TeacherScorer.predict call, in order."""
    calls: list[int] = []
    predict = TeacherScorer.predict

    def counting(self, texts, pairs=None):
        calls.append(len(texts))
        return predict(self, texts, pairs)

    monkeypatch.setattr(TeacherScorer, "predict", counting)
    return calls


@pytest.mark.usefixtures("one_torch_thread")
def test_teacher_dev_metrics_are_cached_and_speed_is_timed_on_a_sample(tiny_teacher, demo_dev, tmp_path,
                                                                       predicted_rows):
    cache = tmp_path / "teacher-eval.json"
    first = report.measure_teacher(str(tiny_teacher), DEMO, demo_dev, 16, cache=cache)
    assert predicted_rows == [DEV_ROWS, 16, 16, 16]  # the whole dev split once; warm-up + 2 timed passes of 16
    auto = resolve_dtype("auto", "cpu")  # bf16 on CPUs with native bf16, float32 elsewhere
    logits = TeacherScorer(str(tiny_teacher), device="cpu", dtype=auto).predict(demo_dev["dev"].texts)
    assert first.dev == {"dev": metrics.compute(DEMO.metrics, logits.argmax(1), demo_dev["dev"].labels)}
    assert (first.speed_rows, first.device, first.dtype) == (16, "cpu", auto)
    assert json.loads(cache.read_text())["dev"] == first.dev

    predicted_rows.clear()
    second = report.measure_teacher(str(tiny_teacher), DEMO, demo_dev, 16, cache=cache)
    assert predicted_rows == [16, 16, 16]  # only the timing: the dev metrics come from the cache
    assert second.dev == first.dev


@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("change", ["max_length", "dtype", "teacher", "dev file", "corrupt cache"])
def test_teacher_is_evaluated_again_when_what_its_metrics_depend_on_changes(change, tiny_teacher, demo_dev,
                                                                            tmp_path, predicted_rows):
    cache = tmp_path / "teacher-eval.json"
    report.measure_teacher(str(tiny_teacher), DEMO, demo_dev, 8, cache=cache)
    teacher, dev, kwargs = str(tiny_teacher), demo_dev, {}
    if change == "max_length":
        kwargs["max_length"] = 64
    elif change == "dtype":  # another precision than the default (auto) means on this CPU
        kwargs["dtype"] = "float32" if resolve_dtype("auto", "cpu") == "bf16" else "bf16"
    elif change == "teacher":
        teacher = str(make_teacher(tmp_path / "other", seed=1))
    elif change == "dev file":
        (tmp_path / "demo").mkdir()
        shutil.copy(DEMO_DIR / "train.tsv", tmp_path / "demo")
        lines = (DEMO_DIR / "dev.tsv").read_text("utf-8").splitlines(keepends=True)
        (tmp_path / "demo" / "dev.tsv").write_text("".join(lines[:-1]) + "a new last sentence .\t1\n", "utf-8")
        dev = {"dev": read_split(DEMO, tmp_path / "demo", "dev")[0]}
    else:
        cache.write_text("{not json", "utf-8")
    predicted_rows.clear()
    row = report.measure_teacher(teacher, DEMO, dev, 8, cache=cache, **kwargs)
    assert predicted_rows == [DEV_ROWS, 8, 8, 8]
    assert json.loads(cache.read_text())["dev"] == row.dev  # the cache now holds the new evaluation


TINY_RUN = ["--set", "augment.n_iter=2", "--set", "augment.limit=40", "--set", "student.epochs=1",
            "--set", "student.vectors=none", "--set", "student.expand_vocab=0", "--set", "student.export=none",
            "--set", "student.embed_dim=16", "--set", "student.hidden=8", "--set", "student.fc=8",
            "--set", "baseline=false", "--set", "teacher.force=true"]  # a tiny random teacher learns nothing


@pytest.mark.slow
@pytest.mark.usefixtures("one_torch_thread")
def test_second_run_does_not_evaluate_the_teacher_on_dev_again(tiny_teacher, tmp_path, monkeypatch, predicted_rows):
    from pipelines.stages import run as run_stage

    # A speed sample of 8 rows, so that a dev evaluation (100 rows) stands out among the teacher's calls.
    monkeypatch.setattr(run_stage, "TEACHER_SPEED_ROWS", 8, raising=False)
    out = tmp_path / "run"
    argv = ["run", "demo", "--out", str(out), "--teacher", str(tiny_teacher), *TINY_RUN]
    assert main(argv) == 0
    assert DEV_ROWS in predicted_rows
    first = json.loads((out / "report.json").read_text())["models"][0]

    predicted_rows.clear()
    assert main(argv) == 0
    assert predicted_rows == [8, 8, 8]  # timing only: the dev metrics come from the run directory's cache
    assert json.loads((out / "teacher-eval.json").read_text())["dev"] == first["dev"]
    second = json.loads((out / "report.json").read_text())["models"][0]
    assert second["dev"] == first["dev"] and second["speed_rows"] == 8
    # the score section's device and dtype (auto: bf16 on CPUs with native bf16, float32 elsewhere)
    assert (second["device"], second["dtype"]) == ("cpu", resolve_dtype("auto", "cpu"))


def test_demo_teacher_is_fine_tuned_for_enough_steps_to_teach():
    """20 steps (the reference recipe on 320 rows) left the demo teacher at 0.52 mean confidence, below its own
    distilled student; 36 fit it (4 epochs of 32 examples now give 40). Counted from the demo config's settings
    and the backbone's tokenizer."""
    import dataclasses

    names = {f.name for f in dataclasses.fields(TrainSettings)}
    finetune = load_config("demo", []).sections["finetune"]
    settings = TrainSettings(**{k: v for k, v in finetune.items() if k in names})
    tokenizer = hub.load_tokenizer(hub.locate_model(hub.default_backbone()).path)
    train = read_split(DEMO, DEMO_DIR, "train")[0]
    lengths = encode(tokenizer, train.texts, None, 128).lengths
    assert sum(len(epoch) for epoch in plan_epochs(lengths, settings)) >= 30


def test_report_draws_its_plots_or_says_why_it_has_none(tmp_path, monkeypatch):
    from pipelines.report import plots

    rows = [_row("Teacher", 0.90, 1000, 10.0), _row("distilled", 0.88, 10, 1000.0, family="bilstm")]
    (tmp_path / "with").mkdir()
    md, doc = _write(tmp_path / "with", rows)
    assert doc["plots"] and doc["plots_missing"] is None and "No plots" not in md
    assert all((tmp_path / "with" / f).is_file() for f in doc["plots"].values())
    monkeypatch.setattr(plots, "_pyplot", lambda: None)  # matplotlib that cannot be imported
    (tmp_path / "without").mkdir()
    md, doc = _write(tmp_path / "without", rows)
    assert doc["plots"] == {} and "No plots: matplotlib cannot be imported here" in md
