"""Stages after augmentation take the task from their input's manifest: `distill train --scored DIR --out DIR`
and `distill eval --student DIR` need no task flags, and task flags that disagree with the manifest are an error
naming both values."""

from __future__ import annotations

import json
import shutil

import pytest

from pipelines import cli
from pipelines.tasks import get_task

from .student_fixtures import demo_scored_set

TINY = ["--epochs", "1", "--vectors", "none", "--hidden", "8", "--fc", "8", "--embed-dim", "8", "--export", "none",
        "--threads", "1"]


@pytest.fixture(scope="module")
def own_task(tmp_path_factory):
    """The demo task's files as a task of one's own (CSV columns of other names), and a scored set that records
    that task and its data directory, as `distill augment` and `distill score` record them."""
    from pipelines.tasks import generic_task, read_split

    root = tmp_path_factory.mktemp("own")
    data = root / "reviews"
    data.mkdir()
    demo = get_task("demo")
    for split in ("train", "dev"):
        rows, _ = read_split(demo, demo.default_data, split)
        lines = ["review,stars"] + [f'"{t}",{"good" if y else "bad"}' for t, y in zip(rows.texts, rows.labels)]
        (data / f"{split}.csv").write_text("\n".join(lines) + "\n")
    _, task = read_split(generic_task("review", None, "stars", name="reviews"), data, "train")
    scored = demo_scored_set(root / "scored", recorded={"task": task.to_dict(), "data": str(data)})
    return task, data, scored


def test_train_and_eval_read_the_task_from_their_inputs(own_task, tmp_path, capsys):
    task, data, scored = own_task
    out = tmp_path / "student"
    assert cli.main(["train", "--scored", str(scored), "--out", str(out), *TINY]) == 0
    assert capsys.readouterr().out.startswith("train reviews: distilled (mse) student")
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["task_spec"] == task.to_dict() and manifest["data"] == str(data.resolve())
    assert cli.main(["eval", "--student", str(out), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    trained = json.loads((out / "metrics.json").read_text())["dev"]["dev"]["accuracy"]
    assert doc["task"] == "reviews" and doc["splits"]["dev"]["accuracy"] == pytest.approx(trained)


def test_data_moved_is_given_with_data_alone(own_task, tmp_path, capsys):
    task, data, scored = own_task
    moved = tmp_path / "moved"
    shutil.copytree(data, moved)
    out = tmp_path / "student"
    assert cli.main(["train", "--scored", str(scored), "--out", str(out), "--data", str(moved), *TINY]) == 0
    assert json.loads((out / "manifest.json").read_text())["data"] == str(moved.resolve())


@pytest.mark.parametrize("flags, named", [
    (["--task", "sst2"], "--task 'sst2' but --scored"),
    (["--text-col", "body"], "--text-col 'body' but --scored"),
    (["--label-col", "label"], "--label-col 'label' but --scored"),
    (["--labels", "good,bad"], "--labels 'good,bad' but --scored"),
])
def test_task_flags_that_disagree_with_the_manifest_are_an_error_naming_both(own_task, tmp_path, capsys, flags,
                                                                             named):
    _, _, scored = own_task
    assert cli.main(["train", "--scored", str(scored), "--out", str(tmp_path / "s"), *flags, *TINY]) == 2
    err = capsys.readouterr().err
    assert named in err and "was made for" in err
    assert not (tmp_path / "s").exists()


def test_task_flags_that_agree_are_accepted(own_task, tmp_path):
    task, _, scored = own_task
    flags = ["--task", "reviews", "--text-col", "review", "--label-col", "stars", "--labels",
             ",".join(task.label_values)]
    assert cli.main(["train", "--scored", str(scored), "--out", str(tmp_path / "s"), *flags, *TINY]) == 0
