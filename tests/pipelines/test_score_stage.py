"""`distill score`: the scored set's contract, no-op reruns, refusals, plain-text input, kill-and-resume bytes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import datasets
import numpy as np
import pytest

from augment import MASK_SYMBOL
from pipelines import cli, hub, store
from pipelines.errors import TeacherMismatchError
from pipelines.stages import score
from pipelines.stages.score import ScoreConfig
from pipelines.tasks import TASKS
from pipelines.teacher.scorer import TeacherScorer

from .conftest import REPO_ROOT, make_teacher, random_sentences, write_transfer_set
from .test_teacher import reference_logits

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def scored(out: Path) -> dict:
    return datasets.load_from_disk(str(out)).with_format("numpy")[:]


def data_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.iterdir())
            if p.suffix == ".arrow" or p.name in ("state.json", "dataset_info.json")}


def test_score_stage_writes_the_scored_set(tiny_transfer, tiny_teacher, tmp_path):
    result = score.run(ScoreConfig(dtype="float32", teacher=str(tiny_teacher), transfer=tiny_transfer, out=tmp_path / "s",
                                   shard_rows=128, batch_tokens=300))
    assert not result.skipped and "300 rows × 2 logits" in result.summary
    source, out = datasets.load_from_disk(str(tiny_transfer)), datasets.load_from_disk(str(result.out_dir))
    assert out.column_names == [*source.column_names, "teacher_logits"]
    assert out.features["teacher_logits"].length == 2
    for col in source.column_names:  # same rows, same order
        assert out[col] == source[col], col
    logits = np.asarray(out.with_format("numpy")["teacher_logits"])
    assert logits.dtype == np.float32
    np.testing.assert_allclose(logits, reference_logits(tiny_teacher, source["text"]), atol=1e-5, rtol=1e-5)
    assert [p.name for p in store.dataset_files(result.out_dir)] == [store.shard_name(i, 3) for i in range(3)]

    manifest = json.loads((result.out_dir / "manifest.json").read_text())
    teacher = manifest["teacher"]
    assert manifest["stage"] == "score" and manifest["num_labels"] == 2 and manifest["task"]["name"] == "sst2"
    assert teacher["id2label"] == {"0": "negative", "1": "positive"} and teacher["mask_token"] == "[MASK]"
    assert teacher["weights_sha256"] == hub.locate_model(tiny_teacher).weights_sha256
    assert {teacher["dtype"], teacher["device"], teacher["max_length"]} == {"float32", "cpu", 128}
    assert manifest["inputs"] == {"transfer": store.read_manifest(tiny_transfer)["fingerprint"]}
    stats = json.loads((result.out_dir / "stats.json").read_text())
    assert stats["rows_scored"] == 300 and stats["tokens_per_s"] > 0
    # Plain pyarrow reads the same rows as datasets: the files are Arrow IPC streams.
    import pyarrow as pa

    plain = pa.concat_tables([pa.ipc.open_stream(p.read_bytes()).read_all() for p in store.dataset_files(result.out_dir)])
    assert plain["text"].to_pylist() == source["text"] and plain.num_rows == 300
    state = json.loads((result.out_dir / "state.json").read_text())  # written by datasets' save_to_disk
    assert state["_fingerprint"] == manifest["fingerprint"][:16] and not (result.out_dir / "shards").exists()


def test_score_stage_rerun_is_a_noop_unless_results_change(tiny_transfer, tiny_teacher, tmp_path):
    cfg = ScoreConfig(dtype="float32", teacher=str(tiny_teacher), transfer=tiny_transfer, out=tmp_path / "s")
    first = score.run(cfg)
    fp = store.read_manifest(first.out_dir)["fingerprint"]
    assert score.run(cfg).skipped
    cfg.batch_tokens = 64  # speed only: same results, so the same output
    assert score.run(cfg).skipped
    for change in ({"max_length": 16}, {"dtype": "bf16"}, {"shard_rows": 100}):
        again = score.run(ScoreConfig(**{**cfg.__dict__, **change}))
        assert not again.skipped and store.read_manifest(again.out_dir)["fingerprint"] != fp, change


def test_score_stage_refuses_teacher_with_other_label_count(tiny_transfer, tmp_path):
    three = make_teacher(tmp_path / "three", ("a", "b", "c"))
    with pytest.raises(TeacherMismatchError, match=r"3 labels .* 'sst2' has 2"):
        score.run(ScoreConfig(teacher=str(three), transfer=tiny_transfer, out=tmp_path / "s"))
    assert not (tmp_path / "s").exists() and not list(tmp_path.glob(".s.partial-*"))


def test_score_stage_refuses_split_mask_token_only_when_masks_are_present(tiny_teacher, tmp_path):
    split = make_teacher(tmp_path / "split", split_special_tokens=True)
    masked = write_transfer_set(tmp_path / "masked", random_sentences(20, seed=5, mask_rate=0.3))
    with pytest.raises(TeacherMismatchError, match="splits its mask token"):
        score.run(ScoreConfig(teacher=str(split), transfer=masked, out=tmp_path / "s"))
    clean = write_transfer_set(tmp_path / "clean", random_sentences(20, seed=5, mask_rate=0.0))
    assert not score.run(ScoreConfig(teacher=str(split), transfer=clean, out=tmp_path / "s2")).skipped


def test_score_stage_pairs_with_a_generic_label_teacher(tmp_path):
    generic = make_teacher(tmp_path / "generic", None)
    texts, pairs = random_sentences(40, seed=6), random_sentences(40, seed=7)
    transfer = write_transfer_set(tmp_path / "t", texts, pairs, task=TASKS["mrpc"])
    out = score.run(ScoreConfig(dtype="float32", teacher=str(generic), transfer=transfer, out=tmp_path / "s")).out_dir
    rows = scored(out)
    assert list(rows["text_pair"]) == pairs
    np.testing.assert_allclose(rows["teacher_logits"], reference_logits(generic, texts, pairs), atol=1e-5)


def test_score_stage_plain_text_file(tiny_teacher, tmp_path):
    texts = random_sentences(25, seed=8, mask_rate=0.0)
    (tmp_path / "in.txt").write_text("\n".join(texts) + "\n", encoding="utf-8")
    out = score.run(ScoreConfig(dtype="float32", teacher=str(tiny_teacher), input=tmp_path / "in.txt", out=tmp_path / "s")).out_dir
    ds = datasets.load_from_disk(str(out))
    assert ds.column_names == ["text", "label", "source_index", "draw", "is_original", "ops", "teacher_logits"]
    assert ds["text"] == texts and ds["label"] == [None] * 25 and ds["source_index"] == list(range(25))
    assert all(ds["is_original"]) and ds["ops"] == [[]] * 25
    np.testing.assert_allclose(np.asarray(ds.with_format("numpy")["teacher_logits"]),
                               reference_logits(tiny_teacher, texts), atol=1e-5)
    task = store.read_manifest(out)["task"]
    assert task["label_names"] == ["negative", "positive"]


def test_score_stage_plain_csv_pairs(tiny_teacher, tmp_path):
    (tmp_path / "in.csv").write_text('q1,q2,other\n"good, fun",bad film,x\nthe movie,"a ""story""",y\n')
    cfg = ScoreConfig(teacher=str(tiny_teacher), input=tmp_path / "in.csv", out=tmp_path / "s", input_col="q1",
                      input_pair_col="q2")
    rows = scored(score.run(cfg).out_dir)
    assert list(rows["text"]) == ["good, fun", "the movie"] and list(rows["text_pair"]) == ["bad film", 'a "story"']


def test_score_stage_loads_the_teacher_once(tiny_transfer, tiny_teacher, tmp_path, monkeypatch):
    calls = []
    init = TeacherScorer.__init__
    monkeypatch.setattr(TeacherScorer, "__init__", lambda self, *a, **k: calls.append(1) or init(self, *a, **k))
    score.run(ScoreConfig(teacher=str(tiny_teacher), transfer=tiny_transfer, out=tmp_path / "s", shard_rows=50))
    assert len(calls) == 1 and len(store.dataset_files(tmp_path / "s")) == 6


def test_score_stage_cli(tiny_transfer, tiny_teacher, tmp_path, capsys):
    assert cli.main(["score", "--transfer", str(tiny_transfer), "--teacher", str(tiny_teacher),
                     "--out", str(tmp_path / "s"), "--device", "cpu"]) == 0
    assert capsys.readouterr().out.startswith("score: 300 rows × 2 logits")
    three = make_teacher(tmp_path / "three", ("a", "b", "c"))
    assert cli.main(["score", "--transfer", str(tiny_transfer), "--teacher", str(three),
                     "--out", str(tmp_path / "s3")]) == 2
    assert "teacher" in capsys.readouterr().err


# A run whose scorer sleeps after each shard, so the test can kill it between shards.
_SLOW_RUN = """
import sys, time
from pathlib import Path
from pipelines.stages import score
from pipelines.teacher.scorer import TeacherScorer
real = TeacherScorer.score
def slow(self, *a, **k):
    out = real(self, *a, **k)
    time.sleep(0.5)
    return out
TeacherScorer.score = slow
score.run(score.ScoreConfig(teacher=sys.argv[1], transfer=Path(sys.argv[2]), out=Path(sys.argv[3]), shard_rows=32))
"""


def test_score_stage_kill_and_resume_is_byte_identical(tiny_transfer, tiny_teacher, tmp_path):
    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_RUN, str(tiny_teacher), str(tiny_transfer), str(killed)],
                            cwd=REPO_ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 120
        while not list(tmp_path.glob(".killed.partial-*/shards/data-00000-*.arrow")):
            assert proc.poll() is None, "the run ended before its first shard appeared"
            assert time.monotonic() < deadline, "no shard written within 120 s"
            time.sleep(0.02)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    partial = next(tmp_path.glob(".killed.partial-*"))
    done_before = len(list(partial.glob("shards/data-*.arrow")))
    assert 1 <= done_before < 10 and not killed.exists()

    resumed = score.run(ScoreConfig(teacher=str(tiny_teacher), transfer=tiny_transfer, out=killed, shard_rows=32))
    stats = json.loads((killed / "stats.json").read_text())
    assert stats["shards_resumed"] == done_before and "resumed" in resumed.summary
    straight = score.run(ScoreConfig(teacher=str(tiny_teacher), transfer=tiny_transfer, out=tmp_path / "straight",
                                     shard_rows=32))
    assert data_bytes(killed) == data_bytes(straight.out_dir) and len(data_bytes(killed)) == 12
    assert not list(tmp_path.glob(".*.partial-*"))


@pytest.mark.slow
def test_score_stage_after_the_real_augment_stage(sst2_dir, tiny_teacher, tmp_path):
    from pipelines.stages.augment import AugmentConfig, RecipeConfig
    from pipelines.stages.augment import run as augment

    transfer = augment(AugmentConfig(task=TASKS["sst2"], data=sst2_dir, out=tmp_path / "t", limit=15,
                                     recipe=RecipeConfig(n_iter=5, seed=1))).out_dir
    out = score.run(ScoreConfig(dtype="float32", teacher=str(tiny_teacher), transfer=transfer, out=tmp_path / "s")).out_dir
    source, rows = datasets.load_from_disk(str(transfer)), datasets.load_from_disk(str(out))
    assert rows["text"] == source["text"] and any(MASK_SYMBOL in t for t in rows["text"])
    np.testing.assert_allclose(np.asarray(rows.with_format("numpy")["teacher_logits"]),
                               reference_logits(tiny_teacher, source["text"]), atol=1e-5)


@pytest.mark.slow
def test_score_stage_reference_teacher_gets_sst2_dev_right(sst2_dir, reference_teacher, tmp_path):
    lines = (sst2_dir / "dev.tsv").read_text(encoding="utf-8").splitlines()
    (tmp_path / "dev200.tsv").write_text("\n".join(lines[:201]) + "\n", encoding="utf-8")
    gold = np.array([int(line.split("\t")[1]) for line in lines[1:201]])
    out = score.run(ScoreConfig(teacher=str(reference_teacher), input=tmp_path / "dev200.tsv", out=tmp_path / "s",
                                input_col="sentence", device="cpu")).out_dir
    logits = scored(out)["teacher_logits"]
    accuracy = float(np.mean(logits.argmax(1) == gold))
    assert accuracy > 0.8, accuracy
    assert store.read_manifest(out)["teacher"]["id2label"] == {"0": "negative", "1": "positive"}


def test_score_fingerprint_names_the_device_only_in_reduced_precision(tmp_path):
    f32 = ScoreConfig(teacher="t", out=tmp_path, transfer=tmp_path)
    assert score.fingerprint_settings(f32, "cpu", "float32") == score.fingerprint_settings(f32, "cuda", "float32")
    bf16 = ScoreConfig(teacher="t", out=tmp_path, transfer=tmp_path, dtype="bf16")
    # bf16 rounds differently on a CPU and a GPU: a run resumed on the other device must not mix their shards.
    assert score.fingerprint_settings(bf16, "cpu", "bf16") != score.fingerprint_settings(bf16, "cuda", "bf16")


def arrow_bytes(directory: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(directory.glob("data-*.arrow"))}


def _killed_partial(tiny_transfer, tiny_teacher, out, monkeypatch) -> Path:
    """The work directory a run killed after scoring its last shard leaves: every shard, no output."""
    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed")

    with monkeypatch.context() as m:
        m.setattr(store, "assemble_shards", killed)
        with pytest.raises(KeyboardInterrupt):
            score.run(ScoreConfig(teacher=str(tiny_teacher), transfer=tiny_transfer, out=out, shard_rows=32))
    assert not out.exists()
    (partial,) = out.parent.glob(f".{out.name}.partial-*")
    return partial / "shards"


def test_resumed_shards_are_checked_before_they_are_trusted(tiny_transfer, tiny_teacher, tmp_path, monkeypatch):
    straight = score.run(ScoreConfig(teacher=str(tiny_teacher), transfer=tiny_transfer, out=tmp_path / "straight",
                                     shard_rows=32)).out_dir
    out = tmp_path / "s"
    shards = sorted(_killed_partial(tiny_transfer, tiny_teacher, out, monkeypatch).glob("data-*.arrow"))
    assert len(shards) == 10
    # shard 1: truncated (a disk-full write); shard 2: another shard's rows (wrong count); shard 3: written with
    # other settings (another fingerprint in its metadata)
    shards[1].write_bytes(shards[1].read_bytes()[:300])
    shards[2].write_bytes(shards[9].read_bytes())
    table = store.read_arrow_file(shards[3])
    store.write_shard(shards[3], table, table.schema.with_metadata(None), "0" * 64)
    resumed = score.run(ScoreConfig(teacher=str(tiny_teacher), transfer=tiny_transfer, out=out, shard_rows=32))
    stats = json.loads((out / "stats.json").read_text())
    assert stats["shards_resumed"] == len(shards) - 3 and "resumed" in resumed.summary
    assert arrow_bytes(out) == arrow_bytes(straight)


def test_a_float32_run_resumed_on_another_device_starts_over(tiny_transfer, tiny_teacher, tmp_path, monkeypatch):
    out = tmp_path / "s"
    shard_dir = _killed_partial(tiny_transfer, tiny_teacher, out, monkeypatch)
    cpu_partial = shard_dir.parent
    fp = json.loads((cpu_partial / store.PARTIAL_MARKER).read_text())["fingerprint"]
    gpu_partial = store.StageRun("score", out, fp, {}, work_key="cuda").work_dir
    assert gpu_partial != cpu_partial
    cpu_partial.rename(gpu_partial)  # as if these shards had been scored on a GPU before the kill
    score.run(ScoreConfig(teacher=str(tiny_teacher), transfer=tiny_transfer, out=out, shard_rows=32, device="cpu"))
    assert json.loads((out / "stats.json").read_text())["shards_resumed"] == 0  # none of the GPU's shards kept
    # kept beside it, unmixed: a run on the GPU resumes it (`distill clean` removes it)
    assert gpu_partial.is_dir() and sorted(p.name for p in tmp_path.iterdir()) == sorted([gpu_partial.name, "s"])


def test_score_fingerprint_covers_the_library_versions(tmp_path, monkeypatch):
    cfg = ScoreConfig(teacher="t", out=tmp_path, transfer=tmp_path)
    before = score.fingerprint_settings(cfg, "cpu", "float32")
    monkeypatch.setattr(store, "result_versions", lambda: {"torch": "9.9", "transformers": "1", "tokenizers": "1"})
    assert score.fingerprint_settings(cfg, "cpu", "float32") != before


def test_a_disk_that_fills_mid_stage_stops_it_naming_the_path_and_the_rerun_resumes(tiny_transfer, tiny_teacher,
                                                                                     tmp_path, monkeypatch, capsys):
    import errno

    from datasets.arrow_writer import ArrowWriter

    from pipelines.cli import main

    straight = score.run(ScoreConfig(teacher=str(tiny_teacher), transfer=tiny_transfer, out=tmp_path / "straight",
                                     shard_rows=32)).out_dir
    out = tmp_path / "s"
    score.run(ScoreConfig(teacher=str(tiny_teacher), transfer=tiny_transfer, out=out, shard_rows=64))  # the old
    before = arrow_bytes(out)
    written, real = [], ArrowWriter.write_table

    def fills_up(self, *args, **kwargs):  # the fourth shard finds the disk full
        if len(written) == 3:
            raise OSError(errno.ENOSPC, "No space left on device")
        written.append(1)
        return real(self, *args, **kwargs)

    argv = ["score", "--teacher", str(tiny_teacher), "--transfer", str(tiny_transfer), "--out", str(out),
            "--shard-rows", "32"]
    with monkeypatch.context() as m:
        m.setattr(ArrowWriter, "write_table", fills_up)
        assert main(argv) == 3
    err = capsys.readouterr().err
    (partial,) = tmp_path.glob(".s.partial-*")
    assert f"{partial / 'shards' / 'data-00003'}" in err and "no space left on the device" in err
    assert "run the same command again to resume" in err
    assert arrow_bytes(out) == before  # the previous output is intact
    assert len(list((partial / "shards").glob("data-*.arrow"))) == 3  # the shards written before are kept
    assert main(argv) == 0  # space freed: it resumes from them
    assert json.loads((out / "stats.json").read_text())["shards_resumed"] == 3
    assert arrow_bytes(out) == arrow_bytes(straight)
