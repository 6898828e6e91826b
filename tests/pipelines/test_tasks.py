"""Readers: built-in GLUE layouts, generic formats with column mapping, and errors that name file and line."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipelines.errors import DataError
from pipelines.tasks import TASKS, TEST_SPLIT, find_split_file, generic_task, get_task, read_split, with_test_split


def write(path, text: str | bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)
    return path


def test_sst2_real_files(sst2_dir):
    split, task = read_split(get_task("sst2"), sst2_dir, "train")
    assert len(split) == 67349 and split.text_pairs is None
    assert np.bincount(split.labels).tolist() == [29780, 37569]
    assert split.texts[0] == "hide new secretions from the parental units "
    dev, _ = read_split(task, sst2_dir, "dev")
    assert len(dev) == 872 and np.bincount(dev.labels).tolist() == [428, 444]


def test_mrpc_real_files_strip_the_bom(mrpc_dir):
    split, task = read_split(get_task("mrpc"), mrpc_dir, "train")
    assert task.is_pair and len(split) == 3668
    assert np.bincount(split.labels).tolist() == [1194, 2474]
    assert split.texts[0].startswith("Amrozi accused") and split.text_pairs[0].startswith("Referring to him")


def test_limit_takes_the_first_rows(sst2_dir):
    split, _ = read_split(get_task("sst2"), sst2_dir, "train", limit=5)
    assert len(split) == 5 and split.texts[1] == "contains no wit , only labored gags "


def test_cola_has_no_header(tmp_path):
    write(tmp_path / "train.tsv", "gj04\t1\t\tThe sailors rode the breeze clear of the rocks.\n"
                                  "gj04\t0\t*\tThe more we study verbs, the crazier they get get.\n")
    split, task = read_split(get_task("cola"), tmp_path, "train")
    assert split.labels.tolist() == [1, 0] and split.texts[1].startswith("The more")
    assert task.metrics[0] == "mcc"


def test_rte_and_mnli_string_labels(tmp_path):
    write(tmp_path / "rte" / "dev.tsv", "index\tsentence1\tsentence2\tlabel\n0\tA b.\tC d.\tnot_entailment\n")
    split, _ = read_split(get_task("rte"), tmp_path / "rte", "dev")
    assert split.labels.tolist() == [1] and split.text_pairs == ["C d."]
    header = "index\tpromptID\tpairID\tgenre\ts1b\ts2b\ts1p\ts2p\tsentence1\tsentence2\tlabel1\tgold_label\n"
    write(tmp_path / "mnli" / "dev_matched.tsv", header + "0\t1\t1\tg\tx\tx\tx\tx\tA.\tB.\tneutral\tneutral\n")
    split, task = read_split(get_task("mnli"), tmp_path / "mnli", "dev_matched")
    assert split.labels.tolist() == [1] and task.num_labels == 3


@pytest.mark.parametrize("name,body,problem,line", [
    ("cols.tsv", "sentence\tlabel\ngood film\t1\nbad\tfilm\t0\n", "expected 2 tab-separated fields, found 3", 3),
    ("missing.tsv", "sentence\tlabel\ngood film\t1\n   \t0\n", "text is missing", 3),
    ("label.tsv", "sentence\tlabel\ngood film\t1\nbad film\t2\n", "unknown label '2'", 3),
    ("empty.tsv", "", "the file is empty", None),
    ("header_only.tsv", "sentence\tlabel\n", "has a header but no rows", None),
])
def test_bad_glue_input_names_file_line_and_problem(tmp_path, name, body, problem, line):
    path = write(tmp_path / name, body)
    with pytest.raises(DataError) as err:
        read_split(get_task("sst2"), path, "train")
    assert problem in str(err.value)
    assert err.value.path == str(path) and err.value.line == line
    if line is not None:
        assert f"{path}:{line}" in str(err.value)


def test_invalid_utf8_names_the_line(tmp_path):
    path = write(tmp_path / "train.tsv", b"sentence\tlabel\ngood\t1\nbad \xff film\t0\n")
    with pytest.raises(DataError, match=r"train.tsv:3: invalid UTF-8 \(byte 0xff at byte column 5\)") as err:
        read_split(get_task("sst2"), tmp_path, "train")
    assert err.value.path == str(path) and err.value.line == 3


def test_missing_column_lists_the_columns(tmp_path):
    write(tmp_path / "train.tsv", "text\tlabel\ngood\t1\n")
    with pytest.raises(DataError, match="no text column 'sentence'; the columns are: text, label"):
        read_split(get_task("sst2"), tmp_path, "train")


def test_missing_split_lists_expected_files(tmp_path):
    with pytest.raises(DataError, match=r"no 'dev' split found; expected one of dev\.tsv.*validation\.csv"):
        find_split_file(tmp_path, "dev")


def test_the_hugging_face_split_names_are_read_as_dev(tmp_path):
    write(tmp_path / "validation.csv", "text,label\ngood,1\n")
    assert find_split_file(tmp_path, "dev") == tmp_path / "validation.csv"
    write(tmp_path / "dev.tsv", "text\tlabel\ngood\t1\n")  # our own name first, when both are there
    assert find_split_file(tmp_path, "dev") == tmp_path / "dev.tsv"
    write(tmp_path / "validation_matched.jsonl", '{"text": "good", "label": 1}\n')
    assert find_split_file(tmp_path, "dev_matched") == tmp_path / "validation_matched.jsonl"


def test_a_labelled_test_split_is_evaluated_after_dev_and_an_unlabelled_one_is_not(tmp_path, sst2_dir):
    task = generic_task("review", None, "sentiment")
    write(tmp_path / "own" / "train.csv", "review,sentiment\na fine film,pos\na dull film,neg\n")
    write(tmp_path / "own" / "validation.csv", "review,sentiment\ngood,pos\n")
    assert with_test_split(task, tmp_path / "own").dev_splits == ("dev",)  # no test file
    write(tmp_path / "own" / "test.csv", "review,sentiment\nbad,neg\n")
    assert with_test_split(task, tmp_path / "own").dev_splits == ("dev", TEST_SPLIT)  # after dev: never chosen on
    write(tmp_path / "hf" / "train.jsonl", '{"review": "a", "sentiment": 1}\n')
    write(tmp_path / "hf" / "test.jsonl", '{"review": "b", "sentiment": -1}\n{"review": "c", "sentiment": -1}\n')
    assert with_test_split(task, tmp_path / "hf").dev_splits == ("dev",)  # a hub test split: labels all -1
    assert with_test_split(get_task("sst2"), sst2_dir).dev_splits == ("dev",)  # GLUE's test.tsv has no labels


def test_unknown_task_lists_the_built_ins():
    with pytest.raises(DataError, match="cola, demo, mnli, mrpc, qqp, rte, sst2"):
        get_task("imdb")


ROWS = [("a fine film", "yes", "pos"), ("a dull film", "no", "neg"), ("fine again", "maybe", "pos")]


def test_generic_csv_with_quotes(tmp_path):
    write(tmp_path / "train.csv", 'review,other,sentiment\n"fine, really",x,pos\n"dull ""film""",y,neg\n')
    split, task = read_split(generic_task("review", label_col="sentiment"), tmp_path, "train")
    assert split.texts == ["fine, really", 'dull "film"']
    assert task.label_names == ("neg", "pos") and split.labels.tolist() == [1, 0]


def test_generic_jsonl_pairs_and_explicit_labels(tmp_path):
    lines = [json.dumps({"q1": a, "q2": b, "y": y}) for a, b, y in ROWS]
    write(tmp_path / "train.jsonl", "\n".join(lines) + "\n")
    task = generic_task("q1", "q2", "y", labels=["neg", "pos"])
    split, task = read_split(task, tmp_path, "train")
    assert split.text_pairs == ["yes", "no", "maybe"] and split.labels.tolist() == [1, 0, 1]


def test_generic_jsonl_error_names_line_and_column(tmp_path):
    write(tmp_path / "train.jsonl", '{"text": "ok", "label": 1}\n{"text": "broken", "label": }\n')
    with pytest.raises(DataError, match=r"train.jsonl:2: invalid JSON at column 29"):
        read_split(generic_task("text"), tmp_path, "train")


def test_generic_parquet_and_integer_labels(tmp_path):
    pq.write_table(pa.table({"t": ["x y", "y z", "z w"], "label": [2, 0, 1]}), tmp_path / "train.parquet")
    split, task = read_split(generic_task("t"), tmp_path, "train")
    assert task.label_names == ("0", "1", "2") and split.labels.tolist() == [2, 0, 1]
    assert task.metrics == ("accuracy",)


def test_generic_datasets_directory(tmp_path):
    import datasets

    datasets.Dataset.from_dict({"sentence": ["good", "bad"], "label": [1, 0]}).save_to_disk(tmp_path / "train")
    split, _ = read_split(generic_task("sentence"), tmp_path, "train")
    assert split.texts == ["good", "bad"] and split.labels.tolist() == [1, 0]


def test_unlabelled_text_file(tmp_path):
    write(tmp_path / "in.txt", "first line\nsecond line\n")
    split, _ = read_split(generic_task("text"), tmp_path / "in.txt", "train", labelled=False)
    assert split.texts == ["first line", "second line"] and split.labels is None


def test_every_builtin_task_declares_consistent_labels():
    for task in TASKS.values():
        assert len(task.label_names) == len(task.label_values) >= 2
        assert task.metrics[0] in ("accuracy", "f1", "mcc")
