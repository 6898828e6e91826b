"""`distill init`: a commented run config for a task of one's own, its columns proposed from the data."""

from __future__ import annotations

import json

import pytest
import yaml

from pipelines import cli
from pipelines.stages.run import load_config
from pipelines.tasks import get_task, read_split


def _csv(path, header, rows):
    path.write_text("\n".join([",".join(header)] + [",".join(json.dumps(v) for v in r) for r in rows]) + "\n")


@pytest.fixture
def reviews(tmp_path):
    """The demo task's sentences as a CSV task of one's own: an id column, the text, a star label."""
    demo = get_task("demo")
    d = tmp_path / "My Reviews"
    d.mkdir()
    for split, name in (("train", "train"), ("dev", "validation")):
        rows, _ = read_split(demo, demo.default_data, split)
        _csv(d / f"{name}.csv", ["id", "review", "stars"],
             [[i, t, "good" if y else "bad"] for i, (t, y) in enumerate(zip(rows.texts, rows.labels))])
    return d


def test_init_proposes_the_columns_counts_rows_and_labels_and_writes_a_valid_config(reviews, tmp_path, capsys):
    out = tmp_path / "cfg" / "my-reviews.yaml"
    assert cli.main(["init", "--data", str(reviews), "--out", str(out)]) == 0
    assert "distill run" in capsys.readouterr().out
    text = out.read_text()
    raw = yaml.safe_load(text)
    assert (raw["task"], raw["text_col"], raw["text_pair_col"], raw["label_col"]) == ("my-reviews", "review", None,
                                                                                      "stars")
    assert raw["labels"] == ["bad", "good"] and raw["data"] == str(reviews) and raw["out"] == "runs/my-reviews"
    train, _ = read_split(get_task("demo"), get_task("demo").default_data, "train")
    good = int(train.labels.sum())
    assert f"train.csv: {len(train):,} rows" in text and f"bad ({len(train) - good:,}), good ({good:,})" in text
    assert "validation.csv" in text and "(the dev split)" in text
    # Nothing whose default depends on the data is set: the teacher's epochs and the draws per example.
    assert "epochs" not in (raw.get("finetune") or {}) and "n_iter" not in (raw.get("augment") or {})
    cfg = load_config(str(out))  # what `distill run` reads
    assert cfg.top["text_col"] == "review" and cfg.name == "my-reviews"


def test_init_never_writes_over_a_file(reviews, tmp_path, capsys):
    out = tmp_path / "mine.yaml"
    out.write_text("my own notes\n")
    assert cli.main(["init", "--data", str(reviews), "--out", str(out)]) == 2
    assert "exists" in capsys.readouterr().err and out.read_text() == "my own notes\n"


def test_init_proposes_a_pair_task_from_two_text_columns_and_reads_jsonl(tmp_path, capsys):
    d = tmp_path / "pairs"
    d.mkdir()
    rows = [{"question1": f"how do i learn thing number {i} quickly", "question2": f"what is the way to learn {i}",
             "is_duplicate": i % 2} for i in range(40)]
    (d / "train.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    assert cli.main(["init", "--data", str(d)]) == 0
    raw = yaml.safe_load(capsys.readouterr().out)
    assert (raw["text_col"], raw["text_pair_col"], raw["label_col"]) == ("question1", "question2", "is_duplicate")
    assert raw["labels"] == ["0", "1"]


def test_init_reads_a_datasets_dict_directory(tmp_path, capsys):
    import datasets

    demo = get_task("demo")
    splits = {}
    for split, name in (("train", "train"), ("dev", "validation")):
        rows, _ = read_split(demo, demo.default_data, split)
        splits[name] = datasets.Dataset.from_dict({"sentence": rows.texts, "label": rows.labels.tolist()})
    datasets.DatasetDict(splits).save_to_disk(str(tmp_path / "hf"))
    assert cli.main(["init", "--data", str(tmp_path / "hf")]) == 0
    raw = yaml.safe_load(capsys.readouterr().out)
    assert (raw["text_col"], raw["label_col"]) == ("sentence", "label")
    # and the pipeline reads it as it is: train and the Hugging Face `validation` split as dev
    task = get_task("demo").__class__(name="hf", text_col="sentence", label_col="label", file_format="auto")
    train, _ = read_split(task, tmp_path / "hf", "train")
    dev, _ = read_split(task, tmp_path / "hf", "dev")
    assert len(train) == len(splits["train"]) and len(dev) == len(splits["validation"])


def test_the_template_alone_is_printed_without_data(capsys):
    assert cli.main(["init"]) == 0
    out = capsys.readouterr().out
    assert "distill init --data" in out and yaml.safe_load(out)["task"] == "my-task"
