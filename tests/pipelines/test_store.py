"""Stage outputs: fingerprints, atomic commit, refusal to clobber, datasets-compatible Arrow layout."""

from __future__ import annotations

import datasets
import pyarrow as pa
import pytest

from pipelines import store
from pipelines.errors import DistillError


def test_fingerprint_is_stable_and_sensitive():
    a = store.fingerprint("augment@1", {"p": 0.1, "n": [1, 2]})
    assert a == store.fingerprint("augment@1", {"n": [1, 2], "p": 0.1})  # key order does not matter
    assert a != store.fingerprint("augment@1", {"p": 0.2, "n": [1, 2]})
    assert a != store.fingerprint("augment@2", {"p": 0.1, "n": [1, 2]})


def test_fingerprint_refuses_live_objects():
    with pytest.raises(TypeError, match="cannot fingerprint"):
        store.fingerprint(object())


def test_commit_is_atomic_and_complete(tmp_path):
    out = tmp_path / "out"
    schema = pa.schema([pa.field("x", pa.int64())])
    with store.stage_run("demo", out, "f" * 64, {"k": 1}) as run:
        assert not out.exists()
        store.write_dataset(run.work_dir, pa.table({"x": [1, 2, 3]}), schema, "demo", "f" * 64)
        run.commit()
    assert store.is_complete(out, "f" * 64) and not store.is_complete(out, "e" * 64)
    assert not list(tmp_path.glob(".out.partial-*"))
    ds = datasets.load_from_disk(str(out))
    assert ds["x"] == [1, 2, 3]
    meta = store.read_arrow_file(store.dataset_files(out)[0]).schema.metadata
    assert b'"stage":"demo"' in meta[store.SCHEMA_METADATA_KEY]


def test_failure_leaves_nothing_behind(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with store.stage_run("demo", out, "a" * 64, {}) as run:
            (run.work_dir / "half-written").write_text("x")
            raise RuntimeError("boom")
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_resumable_failure_keeps_work_for_the_next_run(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with store.stage_run("demo", out, "a" * 64, {}, resumable=True) as run:
            (run.work_dir / "shard-0").write_text("done")
            raise RuntimeError("killed")
    with store.stage_run("demo", out, "a" * 64, {}, resumable=True) as run:
        assert (run.work_dir / "shard-0").read_text() == "done"
    # A run with other settings drops the stale work directory.
    with store.stage_run("demo", out, "b" * 64, {}, resumable=True) as run:
        assert not (tmp_path / f".out.partial-{'a' * 16}").exists()


def test_replaces_an_older_output_but_never_a_foreign_directory(tmp_path):
    out = tmp_path / "out"
    for fp in ("a" * 64, "b" * 64):
        with store.stage_run("demo", out, fp, {}) as run:
            run.commit()
    assert store.read_manifest(out)["fingerprint"] == "b" * 64
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    with pytest.raises(DistillError, match="is not a distill stage output"):
        with store.stage_run("demo", foreign, "c" * 64, {}):
            pass
    assert (foreign / "precious.txt").read_text() == "keep me"


def test_require_stage_output_names_the_expected_stage(tmp_path):
    with pytest.raises(DistillError, match="no manifest.json"):
        store.require_stage_output(tmp_path, "augment", "--transfer")
    with store.stage_run("score", tmp_path / "s", "c" * 64, {}) as run:
        run.commit()
    with pytest.raises(DistillError, match="must come from `distill augment`"):
        store.require_stage_output(tmp_path / "s", "augment", "--transfer")
