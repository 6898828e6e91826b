"""Golden outputs: what the pipeline computes today, pinned so that a restructure of the code cannot change it.

- the transfer sets of an SST-2 and an MRPC sample (real spaCy tagging), hashed row by row;
- the scored set of a transfer-set sample with the reference MiniLM-L6 teacher (logits within 1e-5);
- the demo student's dev predictions, hashed.

The expected values live in tests/golden/golden.json. Regenerate them only on purpose (a change that is meant
to change results), with `DISTILL_WRITE_GOLDEN=1 pytest tests/pipelines/test_golden.py`, and say why in the
commit. Stage fingerprints are not compared: they include package versions, which is their job.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import numpy as np
import pytest

from pipelines import store
from pipelines.tasks import TASKS

from .student_fixtures import demo_scored_set, tiny_train_config

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "golden.json"
WRITE = os.environ.get("DISTILL_WRITE_GOLDEN") == "1"
TRANSFER_COLUMNS = ["text", "text_pair", "label", "source_index", "is_original", "ops"]


def rows_digest(out: Path) -> str:
    """sha256 over the rows of a stage output's data columns, in order (not its file bytes, whose metadata holds
    the fingerprint)."""
    table = store.read_table(out)
    columns = [c for c in TRANSFER_COLUMNS if c in table.column_names]
    body = json.dumps(table.select(columns).to_pylist(), ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(body.encode("utf-8")).hexdigest()


def check(key: str, value):
    golden = json.loads(GOLDEN.read_text("utf-8")) if GOLDEN.is_file() else {}
    if WRITE:
        golden[key] = value
        GOLDEN.parent.mkdir(parents=True, exist_ok=True)
        GOLDEN.write_text(json.dumps(golden, indent=1, sort_keys=True) + "\n", encoding="utf-8")
        return golden[key]
    assert key in golden, f"no golden value for {key}; see this module's docstring"
    return golden[key]


@pytest.fixture(scope="module")
def sst2_transfer(tmp_path_factory, sst2_dir) -> Path:
    from pipelines.stages.augment import AugmentConfig, RecipeConfig
    from pipelines.stages.augment import run as augment

    out = tmp_path_factory.mktemp("golden") / "sst2"
    return augment(AugmentConfig(task=TASKS["sst2"], data=sst2_dir, out=out, limit=200, workers=2,
                                 recipe=RecipeConfig(n_iter=5, seed=7))).out_dir


@pytest.mark.slow
def test_golden_sst2_transfer_set(sst2_transfer):
    digest = rows_digest(sst2_transfer)
    assert digest == check("transfer_sst2", digest)


@pytest.mark.slow
def test_golden_mrpc_transfer_set(tmp_path, mrpc_dir):
    from pipelines.stages.augment import AugmentConfig, RecipeConfig
    from pipelines.stages.augment import run as augment

    out = augment(AugmentConfig(task=TASKS["mrpc"], data=mrpc_dir, out=tmp_path / "mrpc", limit=80, workers=1,
                                recipe=RecipeConfig(n_iter=4, seed=3))).out_dir
    digest = rows_digest(out)
    assert digest == check("transfer_mrpc", digest)


@pytest.mark.slow
def test_golden_scored_set(sst2_transfer, reference_teacher, tmp_path):
    from pipelines.stages.score import ScoreConfig
    from pipelines.stages.score import run as score

    out = score(ScoreConfig(teacher=str(reference_teacher), transfer=sst2_transfer, out=tmp_path / "scored",
                            device="cpu", dtype="float32")).out_dir
    table = store.read_table(out)
    assert rows_digest(out) == rows_digest(sst2_transfer)  # the same rows, in the same order
    logits = np.asarray(table.column("teacher_logits").to_pylist(), dtype=np.float32)
    sample = logits[::25].round(6).tolist()  # every 25th row: the short and the long, masked and not
    expected = np.asarray(check("scored_sst2_logits_every_25th", sample), dtype=np.float32)
    assert logits[::25].shape == expected.shape
    np.testing.assert_allclose(logits[::25], expected, atol=1e-5)


@pytest.mark.slow
def test_golden_demo_student_dev_predictions(tmp_path):
    from pipelines.stages.train import run as train
    from pipelines.student.io import load_student
    from pipelines.student.models import predict_logits
    from pipelines.student.vocab import encode_texts
    from pipelines.tasks import get_task, read_split

    scored = demo_scored_set(tmp_path / "scored", synthetic_per_row=2)
    out = train(tiny_train_config(scored, tmp_path / "student", epochs=3, seed=5)).out_dir
    student = load_student(out)
    dev, _ = read_split(get_task("demo"), get_task("demo").default_data, "dev")
    predicted = predict_logits(student.model, encode_texts(dev.texts, student.tokenizer, student.vocab), None,
                               student.cfg.max_len).argmax(1)
    assert np.mean(predicted == dev.labels) > 0.6  # a student that learnt: the hash pins real predictions
    digest = hashlib.sha256(np.asarray(predicted, dtype=np.int64).tobytes()).hexdigest()
    assert digest == check("demo_student_dev_predictions", digest)
