"""`distill augment` through the real command line, on the demo task and real GLUE slices."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import datasets
import nltk
import pytest

from augment import MASK_SYMBOL
from augment.recipe import dedupe_key
from pipelines import engine as engine_module
from pipelines import store
from pipelines.cli import main
from pipelines.devices import available_cpus
from pipelines.stages import augment as augment_stage
from pipelines.stages.augment import AugmentConfig
from pipelines.tasks import TASKS
from tests.augment.nltk_fixtures import install_as_nltk_data, train_tagger


def augment(*args: str) -> int:
    return main(["augment", *args])


def arrow_bytes(out) -> list[bytes]:
    return [p.read_bytes() for p in store.dataset_files(out)]


def assert_synthetic_rows_are_clean(ds) -> None:
    """Synthetic rows carry no leading or trailing whitespace, and no two rows read the same to a model."""
    columns = [c for c in ("text", "text_pair") if c in ds.column_names]
    for c in columns:
        assert all(t == t.strip() for t, o in zip(ds[c], ds["is_original"]) if not o)
    keys = list(zip(*(map(dedupe_key, ds[c]) for c in columns)))
    assert len(keys) == len(set(keys))


def test_demo_task_end_to_end(tmp_path, capsys):
    out = tmp_path / "transfer"
    assert augment("--task", "demo", "--out", str(out), "--n-iter", "5") == 0
    summary = capsys.readouterr().out.strip().splitlines()[-1]
    assert summary.startswith("augment: 320 originals + ") and str(out) in summary
    ds = datasets.load_from_disk(str(out))
    assert ds.column_names == ["text", "label", "source_index", "draw", "is_original", "ops"]
    draws = [d for d, o in zip(ds["draw"], ds["is_original"]) if not o]
    assert all(d is None for d, o in zip(ds["draw"], ds["is_original"]) if o) and set(draws) <= set(range(5))
    originals = ds.filter(lambda r: r["is_original"])
    assert len(originals) == 320 and set(originals["label"]) == {0, 1}
    synthetic = ds.filter(lambda r: not r["is_original"])
    assert all(label is None for label in synthetic["label"])
    assert all(ops and set(ops) <= {"mask", "pos", "ngram"} for ops in synthetic["ops"])
    assert any(MASK_SYMBOL in t for t in synthetic["text"])
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["stage"] == "augment" and manifest["seed"] == 0 and manifest["num_labels"] == 2
    assert manifest["config"]["recipe"]["n_iter"] == 5 and manifest["inputs"]["data"]
    assert {"spacy", "numpy", "pyarrow"} <= set(manifest["versions"])
    stats = json.loads((out / "stats.json").read_text())
    assert stats["rows_in"] == 320 and stats["rows_out"] == len(ds)
    assert stats["synthetic"] + stats["dropped_unchanged"] + stats["dropped_duplicates"] <= 320 * 5
    assert stats["tagging_sentences_per_s"] > 0 and stats["synthetic_rows_per_s"] > 0
    assert sum(stats["rows_per_rule"].values()) >= stats["synthetic"]


CORPUS = ["the staff were friendly and the room was clean", "a noisy street , but a quiet courtyard",
          "breakfast was cold and the coffee was worse", "we would stay here again", "the pool was closed"]


def test_unlabelled_text_alone_and_beside_a_tasks_split(tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(CORPUS) + "\n", encoding="utf-8")
    alone = tmp_path / "alone"
    assert augment("--input", str(corpus), "--out", str(alone), "--n-iter", "4") == 0
    ds = datasets.load_from_disk(str(alone))
    originals = [t for t, o in zip(ds["text"], ds["is_original"]) if o]
    assert originals == CORPUS and all(label is None for label in ds["label"]) and len(ds) > len(CORPUS)
    replaced = {w for t, o in zip(ds["text"], ds["is_original"]) if not o for w in t.split()}
    assert replaced <= {w for t in CORPUS for w in t.split()} | {MASK_SYMBOL}  # the POS table is the corpus's
    both = tmp_path / "both"
    assert augment("--task", "demo", "--input", str(corpus), "--out", str(both), "--n-iter", "2") == 0
    ds = datasets.load_from_disk(str(both))
    originals = [(t, lab, i) for t, lab, i, o in zip(ds["text"], ds["label"], ds["source_index"], ds["is_original"])
                 if o]
    assert len(originals) == 320 + len(CORPUS) and [t for t, _, _ in originals[320:]] == CORPUS
    assert all(lab is not None for _, lab, _ in originals[:320]) and all(lab is None for _, lab, _ in originals[320:])
    assert [i for _, _, i in originals[320:]] == list(range(320, 325))  # after the split: never held out
    from pipelines.holdout import holdout_rows
    import numpy as np

    gold = np.array([-1 if lab is None else lab for lab in ds["label"]])
    mask = holdout_rows(np.array(ds["source_index"]), np.array(ds["is_original"]), gold, "t")
    assert mask.of_examples == 320 and not mask.held_out[np.array(ds["source_index"]) >= 320].any()
    capsys.readouterr()
    assert augment("--task", "mrpc", "--data", str(tmp_path), "--input", str(corpus), "--out", str(tmp_path / "p")) == 2
    assert "single-sentence tasks only" in capsys.readouterr().err


def test_second_run_is_a_no_op_and_a_changed_setting_reruns(tmp_path, capsys):
    out = tmp_path / "t"
    assert augment("--task", "demo", "--out", str(out), "--n-iter", "3") == 0
    before = (out / "manifest.json").stat().st_mtime_ns
    assert augment("--task", "demo", "--out", str(out), "--n-iter", "3") == 0
    assert "up to date" in capsys.readouterr().out
    assert (out / "manifest.json").stat().st_mtime_ns == before
    assert augment("--task", "demo", "--out", str(out), "--n-iter", "3", "--p-mask", "0.3") == 0
    assert json.loads((out / "manifest.json").read_text())["config"]["recipe"]["p_mask"] == 0.3


def test_same_seed_same_bytes_with_one_and_two_workers(tmp_path):
    outs = []
    for workers in (1, 2):
        out = tmp_path / f"w{workers}"
        assert augment("--task", "demo", "--out", str(out), "--workers", str(workers), "--seed", "3") == 0
        outs.append(out)
    assert arrow_bytes(outs[0]) == arrow_bytes(outs[1])


def test_real_sst2_slice(tmp_path, sst2_dir):
    out = tmp_path / "sst2"
    assert augment("--task", "sst2", "--data", str(sst2_dir), "--out", str(out), "--limit", "300") == 0
    ds = datasets.load_from_disk(str(out))
    assert sum(ds["is_original"]) == 300
    assert len(ds) > 300 * 8  # about 12 kept draws per original at the paper's settings
    assert ds[0]["text"] == "hide new secretions from the parental units "  # originals as they are
    assert_synthetic_rows_are_clean(ds)


def test_real_mrpc_slice_pairs(tmp_path, mrpc_dir):
    out = tmp_path / "mrpc"
    assert augment("--task", "mrpc", "--data", str(mrpc_dir), "--out", str(out), "--limit", "20") == 0
    ds = datasets.load_from_disk(str(out))
    assert "text_pair" in ds.column_names and sum(ds["is_original"]) == 20
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["recipe"]["n_iter"] is None and manifest["is_pair"]
    per_source = {}
    for s in ds["source_index"]:
        per_source[s] = per_source.get(s, 0) + 1
    assert max(per_source.values()) <= 1 + 10  # the original + at most 10 draws
    assert_synthetic_rows_are_clean(ds)


@pytest.mark.parametrize("body,message", [
    ("sentence\tlabel\ngood\t1\nbad\t0\textra\n", "train.tsv:3: expected 2 tab-separated fields, found 3"),
    ("sentence\tlabel\ngood\t1\nbad\tmaybe\n", "train.tsv:3 (column label): unknown label 'maybe'"),
    (b"sentence\tlabel\ngood\t1\n\xc3\x28 bad\t0\n", "train.tsv:3: invalid UTF-8"),
    ("", "train.tsv: the file is empty"),
])
def test_bad_input_exits_2_with_location_and_leaves_nothing(tmp_path, body, message):
    data = tmp_path / "data"
    data.mkdir()
    path = data / "train.tsv"
    (path.write_bytes if isinstance(body, bytes) else path.write_text)(body)
    out = tmp_path / "runs" / "t"
    proc = subprocess.run([sys.executable, "-m", "pipelines.cli", "augment", "--task", "sst2", "--data", str(data),
                           "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 2
    assert message in proc.stderr and proc.stderr.startswith("distill augment: error: ")
    assert "Traceback" not in proc.stderr
    assert not out.exists() and not any((tmp_path / "runs").glob(".*"))


def test_invalid_recipe_is_a_config_error(tmp_path, capsys):
    assert augment("--task", "demo", "--out", str(tmp_path / "x"), "--p-mask", "0.7", "--p-pos", "0.7") == 2
    assert "p_mask + p_pos must be at most 1" in capsys.readouterr().err


def test_refuses_to_write_over_a_foreign_directory(tmp_path, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep")
    assert augment("--task", "demo", "--out", str(out), "--n-iter", "1") == 2
    assert "is not a distill stage output" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "keep"


# ----------------------------------------------------------------------------------------------- worker counts

def test_available_cpus_reads_the_cgroup_quota(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("150000 100000\n")  # 1.5 CPUs: rounded up
    assert available_cpus(root=tmp_path) == 2
    cpu_max.write_text("50000 100000\n")
    assert available_cpus(root=tmp_path) == 1
    cpu_max.write_text("max 100000\n")  # no quota: the affinity mask decides
    assert available_cpus(root=tmp_path) == 8


def test_workers_come_from_available_cpus_not_the_host_core_count(tmp_path, monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    monkeypatch.setattr(engine_module, "available_cpus", lambda: 2)
    for name, args in (("default", []), ("asked-for-8", ["--workers", "8"])):
        out = tmp_path / name
        assert augment("--task", "demo", "--out", str(out), "--n-iter", "1", "--limit", "20", *args) == 0
        assert json.loads((out / "stats.json").read_text())["workers"] == 2
        assert json.loads((out / "manifest.json").read_text())["config"]["workers"] == 2


# ----------------------------------------------------------------------------------------------- fingerprints

def fingerprint(tmp_path: Path, nltk_tagger=None, **settings) -> str:
    cfg = AugmentConfig(task=TASKS["demo"], out=tmp_path / "never-written", **settings)
    return augment_stage.plan(cfg, nltk_tagger).fingerprint


def fake_spacy_dir(path: Path, version: str = "3.8.0", weights: bytes = b"weights") -> Path:
    """A directory shaped like a saved spaCy pipeline; fingerprinting reads meta.json and hashes the files."""
    (path / "tagger").mkdir(parents=True)
    (path / "meta.json").write_text(json.dumps({"lang": "en", "name": "core_web_sm", "version": version}))
    (path / "config.cfg").write_text('[nlp]\nlang = "en"\n')
    (path / "tagger" / "model").write_bytes(weights)
    return path


def test_fingerprint_follows_the_spacy_version(tmp_path, monkeypatch):
    import spacy

    model_dir = str(fake_spacy_dir(tmp_path / "model"))
    before = fingerprint(tmp_path), fingerprint(tmp_path, spacy_model=model_dir)
    monkeypatch.setattr(spacy, "__version__", "3.0.0")
    after = fingerprint(tmp_path), fingerprint(tmp_path, spacy_model=model_dir)
    assert before[0] != after[0] and before[1] != after[1]


def test_fingerprint_hashes_a_spacy_model_directory_not_its_path(tmp_path):
    a = fingerprint(tmp_path, spacy_model=str(fake_spacy_dir(tmp_path / "a")))
    b = fingerprint(tmp_path, spacy_model=str(fake_spacy_dir(tmp_path / "elsewhere" / "b")))
    assert a == b  # the same files in another place
    edited = fingerprint(tmp_path, spacy_model=str(fake_spacy_dir(tmp_path / "c", weights=b"weightz")))
    newer = fingerprint(tmp_path, spacy_model=str(fake_spacy_dir(tmp_path / "d", version="3.8.1")))
    assert len({a, edited, newer}) == 3


def test_fingerprint_follows_the_nltk_tagger(tmp_path, monkeypatch):
    tagger, other = train_tagger(), train_tagger(n=30)
    install_as_nltk_data(tagger, tmp_path / "one")
    install_as_nltk_data(tagger, tmp_path / "two")
    install_as_nltk_data(other, tmp_path / "three")
    by_data = {}
    for root in ("one", "two", "three"):
        monkeypatch.setattr(nltk.data, "path", [str(tmp_path / root)])
        by_data[root] = fingerprint(tmp_path, tagger="nltk")
    assert by_data["one"] == by_data["two"] != by_data["three"]
    injected = fingerprint(tmp_path, nltk_tagger=train_tagger(), tagger="nltk")
    assert injected == fingerprint(tmp_path, nltk_tagger=tagger, tagger="nltk")
    assert injected != fingerprint(tmp_path, nltk_tagger=other, tagger="nltk")


def test_nltk_tagger_end_to_end_and_another_tagger_reruns(tmp_path, monkeypatch, capsys):
    data = tmp_path / "nltk_data"
    monkeypatch.setattr(nltk.data, "path", [str(data)])
    install_as_nltk_data(train_tagger(), data)
    out = tmp_path / "t"
    args = ("--task", "demo", "--out", str(out), "--tagger", "nltk", "--n-iter", "2")
    assert augment(*args) == 0
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["config"]["tagger"]["tagger"] == "nltk" and manifest["config"]["tagger"]["tagger_data"]
    assert sum(datasets.load_from_disk(str(out))["is_original"]) == 320
    assert augment(*args) == 0 and "up to date" in capsys.readouterr().out
    install_as_nltk_data(train_tagger(n=30), data)  # another tagger in the same place
    assert augment(*args) == 0 and "up to date" not in capsys.readouterr().out
    assert json.loads((out / "manifest.json").read_text())["fingerprint"] != manifest["fingerprint"]


def test_an_nltk_tagger_object_needs_the_nltk_tagger(tmp_path):
    with pytest.raises(ValueError, match="NLTK tagger object"):
        fingerprint(tmp_path, nltk_tagger=train_tagger())
