"""pipelines/student/export.py: TorchScript, ONNX and predict.py give the trained model's logits, at any
batch/length; predict.py is copied unchanged and runs without this project."""

from __future__ import annotations

import ast
import importlib.util
import inspect
import json
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from augment import MASK_SYMBOL
from pipelines.errors import ConfigError
from pipelines.devices import torch_threads
from pipelines.settings import parse_formats
from pipelines.stages import train as train_stage
from pipelines.student import predict as predict_module, tokenizer as tokenizer_module, vocab as vocab_module
from pipelines.student.export import check_exports, export_student, predict_source
from pipelines.student.io import load_student
from pipelines.student.models import StudentConfig, build_model, predict_logits
from pipelines.student.tokenizer import Tokenizer
from pipelines.student.vocab import encode_texts

from .student_fixtures import demo_scored_set, tiny_train_config

ort = pytest.importorskip("onnxruntime")


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny models run fastest on one thread, and OpenMP spinning on a busy 2-core machine costs seconds."""
    with torch_threads(1):
        yield


TEXTS = ["the photography is a mess .", "you wo n't regret buying a ticket .", "It's GREAT!", "", "⟨mask⟩ film",
         "a " * 40 + "long one", "unknownword zzz"]


@pytest.fixture(scope="module")
def student_dir(tmp_path_factory):
    base = tmp_path_factory.mktemp("export")
    scored = demo_scored_set(base / "scored")
    out = base / "student"
    train_stage.run(tiny_train_config(scored, out, epochs=1, export="torchscript,onnx"))
    return out


def _random_inputs(gen: torch.Generator, batch: int, length: int, vocab: int):
    ids = torch.randint(3, vocab, (batch, length), generator=gen)
    lengths = torch.randint(1, length + 1, (batch,), generator=gen)
    lengths[0] = length
    ids = ids * (torch.arange(length)[None, :] < lengths[:, None])  # PAD beyond each length
    return ids, lengths


def _load_script(path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.load(str(path))


@pytest.mark.parametrize("batch, length", [(1, 1), (1, 9), (3, 4), (17, 23)])
def test_export_torchscript_and_onnx_match_model(student_dir, batch, length):
    s = load_student(student_dir)
    gen = torch.Generator().manual_seed(batch * 100 + length)
    ids, lengths = _random_inputs(gen, batch, length, s.cfg.vocab_size)
    with torch.no_grad():
        want = s.model(ids, lengths).numpy()
        got_ts = _load_script(student_dir / "model.pt")(ids, lengths).numpy()
    sess = ort.InferenceSession(str(student_dir / "model.onnx"), providers=["CPUExecutionProvider"])
    got_onnx = sess.run(None, {"ids": ids.numpy(), "lengths": lengths.numpy()})[0]
    np.testing.assert_allclose(got_ts, want, atol=1e-5, rtol=0)
    np.testing.assert_allclose(got_onnx, want, atol=1e-5, rtol=0)


def test_export_stats_record_the_check(student_dir):
    stats = json.loads((student_dir / "stats.json").read_text())
    assert stats["export"]["formats"] == ["torchscript", "onnx"]
    assert max(stats["export"]["max_abs_diff"].values()) < 1e-5


def _import_predict(student_dir):
    spec = importlib.util.spec_from_file_location("student_predict", student_dir / "predict.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("backend", ["onnx", "torchscript"])
def test_export_predict_helper_matches_model(student_dir, backend):
    s = load_student(student_dir)
    want = predict_logits(s.model, encode_texts(TEXTS, s.tokenizer, s.vocab), None, s.cfg.max_len)
    helper = _import_predict(student_dir).Student(student_dir, backend=backend)
    got = np.asarray(helper.logits(TEXTS, batch_size=3))
    np.testing.assert_allclose(got, want, atol=1e-5, rtol=0)
    probs = np.asarray(helper.predict_proba(TEXTS))
    np.testing.assert_allclose(probs, torch.softmax(torch.from_numpy(want), 1).numpy(), atol=1e-5)
    assert set(helper.predict(TEXTS)) <= {"negative", "positive"}


def test_export_predict_helper_tokenizer_is_the_students(student_dir):
    helper = _import_predict(student_dir)
    cases = TEXTS + ["Don't go", "it 's well-made , sci-fi", "mr. u.s. 3,000 ... --", "⟨mask⟩n't ⟨mask⟩'s"]
    for text in cases:
        assert helper.Tokenizer()(text) == Tokenizer()(text)
    assert "class Tokenizer" in predict_source() and "pipelines" not in predict_source().split('"""', 2)[2]


def test_export_predict_helper_command_line(student_dir, tmp_path):
    proc = subprocess.run([sys.executable, str(student_dir / "predict.py"), "--json", "a gorgeous film", "a mess"],
                          capture_output=True, text=True, cwd=tmp_path, check=True)
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["text"] for r in rows] == ["a gorgeous film", "a mess"]
    assert all(abs(sum(r["probs"]) - 1) < 1e-6 and r["label"] in ("negative", "positive") for r in rows)



def test_export_predict_helper_is_the_packages_predict_py(student_dir):
    """Every student directory gets pipelines/student/predict.py byte for byte (no generated code)."""
    assert (student_dir / "predict.py").read_bytes() == Path(predict_module.__file__).read_bytes()
    assert predict_source() == Path(predict_module.__file__).read_text("utf-8")


def test_export_predict_helper_tokenizer_copy_is_verbatim():
    """predict.py carries its own copy of the tokeniser and the constants it needs: they must not drift."""
    assert inspect.getsource(predict_module.Tokenizer) == inspect.getsource(tokenizer_module.Tokenizer)
    assert predict_module.MASK_SYMBOL == MASK_SYMBOL
    assert (predict_module.PAD, predict_module.UNK) == (vocab_module.PAD, vocab_module.UNK)


def test_export_predict_helper_imports_only_its_runtimes():
    """predict.py may import the standard library and numpy, onnxruntime or torch; nothing of this project."""
    tree = ast.parse(Path(predict_module.__file__).read_text("utf-8"))
    imported = {alias.name.split(".")[0] for node in ast.walk(tree) if isinstance(node, ast.Import)
                for alias in node.names}
    imported |= {node.module.split(".")[0] for node in ast.walk(tree)
                 if isinstance(node, ast.ImportFrom) and node.module and node.level == 0}
    assert not any(isinstance(node, ast.ImportFrom) and node.level for node in ast.walk(tree))
    assert imported <= {"__future__", "argparse", "json", "math", "re", "sys", "pathlib", "warnings", "numpy",
                        "onnxruntime", "torch"}


# Runs predict.py with `pipelines` and `augment` made unimportable, from a copy of the student directory.
_BLOCKED_RUN = """
import importlib.abc, runpy, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("pipelines", "augment"):
            raise ImportError(f"predict.py imported {name}")
sys.meta_path.insert(0, Block())
script = sys.argv[1]
sys.argv = sys.argv[1:]
runpy.run_path(script, run_name="__main__")
"""


@pytest.mark.parametrize("backend", ["onnx", "torchscript"])
def test_export_predict_helper_runs_stand_alone(student_dir, tmp_path, backend):
    copy = tmp_path / "served"
    copy.mkdir()
    for name in ("predict.py", "config.json", "vocab.json", "model.onnx", "model.pt"):
        (copy / name).write_bytes((student_dir / name).read_bytes())
    proc = subprocess.run([sys.executable, "-I", "-c", _BLOCKED_RUN, str(copy / "predict.py"), "--backend", backend,
                           "--json", *TEXTS[:3]], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    got = [json.loads(line)["probs"] for line in proc.stdout.splitlines()]
    s = load_student(student_dir)
    want = predict_logits(s.model, encode_texts(TEXTS[:3], s.tokenizer, s.vocab), None, s.cfg.max_len)
    np.testing.assert_allclose(got, torch.softmax(torch.from_numpy(want), 1).numpy(), atol=1e-5)

def test_export_pair_model(tmp_path):
    torch.manual_seed(0)
    cfg = StudentConfig("siamese_bilstm", vocab_size=30, num_labels=3, embed_dim=6, hidden=5, fc=7)
    model = build_model(cfg).eval()
    gen = torch.Generator().manual_seed(0)
    a = _random_inputs(gen, 4, 6, 30)
    b = _random_inputs(gen, 4, 11, 30)
    report = export_student(model, cfg, tmp_path, ("torchscript", "onnx"), (*a, *b))
    assert max(report["max_abs_diff"].values()) < 1e-5
    a2, b2 = _random_inputs(gen, 9, 3, 30), _random_inputs(gen, 9, 2, 30)
    diffs = check_exports(model, tmp_path, ["torchscript", "onnx"], (*a2, *b2))  # other batch and lengths
    assert max(diffs.values()) < 1e-5


def test_export_formats():
    assert parse_formats("torchscript,onnx") == ("torchscript", "onnx")
    assert parse_formats("auto") == ("auto",)
    with pytest.raises(ConfigError, match="torchscript, onnx"):
        parse_formats("tflite")


def test_export_model_with_frozen_rows(tmp_path):
    torch.manual_seed(0)
    cfg = StudentConfig("bilstm", vocab_size=30, num_labels=2, embed_dim=6, hidden=5, fc=7, frozen_rows=10)
    model = build_model(cfg, np.random.default_rng(0).normal(size=(30, 6)).astype(np.float32)).eval()
    gen = torch.Generator().manual_seed(1)
    report = export_student(model, cfg, tmp_path, ("torchscript", "onnx"), _random_inputs(gen, 5, 7, 30))
    assert max(report["max_abs_diff"].values()) < 1e-5
    diffs = check_exports(model, tmp_path, ["torchscript", "onnx"], _random_inputs(gen, 2, 13, 30))
    assert max(diffs.values()) < 1e-5


def test_onnx_export_is_part_of_the_default_install():
    """`pip install distill-pipelines` alone brings what `distill train`'s default export needs for model.onnx."""
    from importlib import metadata

    from pipelines.student.export import onnx_available

    required = metadata.requires("distill-pipelines") or []
    default = {r.split(">")[0].split("=")[0].strip() for r in required if "extra ==" not in r}
    assert {"onnx", "onnxruntime", "onnxscript"} <= default
    assert onnx_available() is None
