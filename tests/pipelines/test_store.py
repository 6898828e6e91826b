"""Stage outputs: fingerprints, atomic commit, refusal to clobber, datasets-compatible Arrow layout."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import datasets
import pyarrow as pa
import pytest

from pipelines import store
from pipelines.errors import DistillError
from pipelines.store import stage_dirs


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
    with store.stage_run("augment", out, "f" * 64, {"k": 1}) as run:
        assert not out.exists()
        store.write_dataset(run.work_dir, pa.table({"x": [1, 2, 3]}), schema, "f" * 64)
        run.commit()
    assert store.is_complete(out, "f" * 64) and not store.is_complete(out, "e" * 64)
    assert not list(tmp_path.glob(".out.partial-*"))
    ds = datasets.load_from_disk(str(out))
    assert ds["x"] == [1, 2, 3]
    assert pa.ipc.open_stream(store.dataset_files(out)[0].read_bytes()).read_all()["x"].to_pylist() == [1, 2, 3]


def test_failure_leaves_nothing_behind(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with store.stage_run("augment", out, "a" * 64, {}) as run:
            (run.work_dir / "half-written").write_text("x")
            raise RuntimeError("boom")
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_resumable_failure_keeps_work_for_the_next_run(tmp_path):
    out = tmp_path / "out"
    with pytest.raises(RuntimeError):
        with store.stage_run("augment", out, "a" * 64, {}, resumable=True) as run:
            (run.work_dir / "shard-0").write_text("done")
            raise RuntimeError("killed")
    with store.stage_run("augment", out, "a" * 64, {}, resumable=True) as run:
        assert (run.work_dir / "shard-0").read_text() == "done"
    # A run with other settings keeps it (it resumes when they come back; `distill clean` removes it).
    with store.stage_run("augment", out, "b" * 64, {}, resumable=True) as run:
        assert (tmp_path / f".out.partial-{'a' * 16}" / "shard-0").read_text() == "done"


def test_replaces_an_older_output_but_never_a_foreign_directory(tmp_path):
    out = tmp_path / "out"
    for fp in ("a" * 64, "b" * 64):
        with store.stage_run("augment", out, fp, {}) as run:
            run.commit()
    assert store.read_manifest(out)["fingerprint"] == "b" * 64
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "precious.txt").write_text("keep me")
    with pytest.raises(DistillError, match="is not a distill stage output"):
        with store.stage_run("augment", foreign, "c" * 64, {}):
            pass
    assert (foreign / "precious.txt").read_text() == "keep me"


def test_require_stage_output_names_the_expected_stage(tmp_path):
    with pytest.raises(DistillError, match="no manifest.json"):
        store.require_stage_output(tmp_path, "augment", "--transfer")
    with store.stage_run("score", tmp_path / "s", "c" * 64, {}) as run:
        run.commit()
    with pytest.raises(DistillError, match="must come from `distill augment`"):
        store.require_stage_output(tmp_path / "s", "augment", "--transfer")


# ----------------------------------------------------------------------------------------------- data safety

def _app_dir(tmp_path):
    """A user's directory that happens to hold a manifest.json of its own (a web app's)."""
    app = tmp_path / "myapp"
    app.mkdir()
    (app / "manifest.json").write_text('{"name": "my web app", "start_url": "/"}')
    (app / "index.html").write_text("<html>precious</html>")
    return app


def test_a_foreign_manifest_is_refused_before_any_work(tmp_path):
    app = _app_dir(tmp_path)
    worked = []
    with pytest.raises(DistillError, match="is not a distill stage output.*nothing was touched"):
        with store.stage_run("augment", app, "c" * 64, {}):
            worked.append(True)
    assert not worked  # refused at the start, not at commit
    assert (app / "index.html").read_text() == "<html>precious</html>"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["myapp"]


@pytest.mark.parametrize("manifest", [
    {"tool": "distill-pipelines", "stage": "augment", "fingerprint": "short"},
    {"tool": "distill-pipelines", "stage": "deploy", "fingerprint": "a" * 64},
    {"tool": "other-tool", "stage": "augment", "fingerprint": "a" * 64},
    {"stage": "augment", "fingerprint": "a" * 64},  # no tool field
    ["augment", "a" * 64],
])
def test_only_a_manifest_this_tool_wrote_marks_a_replaceable_output(tmp_path, manifest):
    out = tmp_path / "out"
    out.mkdir()
    (out / "manifest.json").write_text(json.dumps(manifest))
    assert store.read_manifest(out) is None
    with pytest.raises(DistillError, match="is not a distill stage output"):
        store.check_replaceable(out)


def test_an_empty_directory_or_an_own_output_is_replaced(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    with store.stage_run("augment", out, "a" * 64, {}) as run:
        (run.work_dir / "data.txt").write_text("new")
        run.commit()
    manifest = store.read_manifest(out)
    assert manifest["tool"] == "distill-pipelines" and manifest["fingerprint"] == "a" * 64
    assert not (out / store.PARTIAL_MARKER).exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # no lock file, no work directory left


def _kill_after_exchange(monkeypatch):
    """Make the deletion of the displaced old output die, as a kill right after the swap would."""
    def killed(path, *args, **kwargs):
        raise KeyboardInterrupt("killed")
    monkeypatch.setattr(stage_dirs.shutil, "rmtree", killed)


def test_a_kill_during_replacement_leaves_a_complete_output(tmp_path, monkeypatch):
    out = tmp_path / "out"
    with store.stage_run("augment", out, "a" * 64, {}) as run:
        run.commit()
    with monkeypatch.context() as m:
        _kill_after_exchange(m)
        with pytest.raises(KeyboardInterrupt):
            with store.stage_run("augment", out, "b" * 64, {}, resumable=True) as run:
                run.commit()
    assert store.read_manifest(out)["fingerprint"] == "b" * 64  # the new output is in place, complete
    # The next run of the old settings clears the displaced copy and writes again.
    with store.stage_run("augment", out, "a" * 64, {}) as run:
        run.commit()
    assert store.read_manifest(out)["fingerprint"] == "a" * 64
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_without_an_atomic_swap_a_kill_between_renames_is_recovered(tmp_path, monkeypatch):
    out = tmp_path / "out"
    with store.stage_run("augment", out, "a" * 64, {}) as run:
        (run.work_dir / "data.txt").write_text("old")
        run.commit()
    monkeypatch.setattr(stage_dirs, "_exchange", lambda a, b: False)
    real_replace = stage_dirs.os.replace

    def die_on_second(src, dst):
        if Path(src).name.startswith(".out.partial-"):
            raise KeyboardInterrupt("killed between the renames")
        real_replace(src, dst)

    with monkeypatch.context() as m:
        m.setattr(stage_dirs.os, "replace", die_on_second)
        with pytest.raises(KeyboardInterrupt):
            with store.stage_run("augment", out, "b" * 64, {}) as run:
                run.commit()
    assert not out.exists() and store.read_manifest(store.aside_path(out))["fingerprint"] == "a" * 64
    with store.stage_run("augment", out, "b" * 64, {}) as run:  # the next start puts the old output back first
        assert (out / "data.txt").read_text() == "old"
        (run.work_dir / "data.txt").write_text("new")
        run.commit()
    assert (out / "data.txt").read_text() == "new" and not store.aside_path(out).exists()


def test_other_settings_work_is_kept_said_and_resumed_when_they_come_back(tmp_path, capsys):
    out = tmp_path / "exp[1]"
    with pytest.raises(KeyboardInterrupt):  # a run with settings A, stopped mid-way
        with store.stage_run("score", out, "a" * 64, {}, resumable=True) as run_a:
            (run_a.work_dir / "shard-0.arrow").write_bytes(b"x" * 1000)
            raise KeyboardInterrupt
    lookalike = tmp_path / ".exp1.partial-0123456789abcdef"  # would match an unescaped `.exp[1].partial-*`
    lookalike.mkdir()
    (lookalike / store.PARTIAL_MARKER).write_text("{}")
    with store.stage_run("score", out, "b" * 64, {}, resumable=True) as run_b:  # settings B: A's work is kept
        run_b.commit()
    err = capsys.readouterr().err
    assert (run_a.work_dir / "shard-0.arrow").read_bytes() == b"x" * 1000 and lookalike.is_dir()
    assert f"the work of 1 stopped run(s) with other settings (0.0 MB: {run_a.work_dir.name})" in err
    assert f"`distill clean {tmp_path}` removes it" in err
    with store.stage_run("score", out, "a" * 64, {}, resumable=True) as again:  # A again: its work resumes
        assert again.work_dir == run_a.work_dir and (again.work_dir / "shard-0.arrow").is_file()
        again.commit()


def test_clean_removes_only_this_tools_work_and_never_a_running_stages(tmp_path, capsys):
    from pipelines.cli import main

    run_dir = tmp_path / "runs" / "exp[1]"
    run_dir.mkdir(parents=True)
    (run_dir / "student").mkdir()
    ours = []
    for name in ("scored", "student", "teacher"):
        work = store.work_dir_for(run_dir / name, name * 8)
        work.mkdir()
        (work / store.PARTIAL_MARKER).write_text("{}")
        (work / "data.bin").write_bytes(b"0" * 2_000_000)
        ours.append(work)
    foreign = run_dir / ".notes.partial-fedcba9876543210"  # the name, but not ours
    foreign.mkdir()
    (foreign / "notes.txt").write_text("mine")
    assert main(["clean", str(tmp_path / "runs"), "--dry-run"]) == 0
    assert "would remove 3 work directories of stopped runs (6.0 MB)" in capsys.readouterr().out
    assert all(w.is_dir() for w in ours)
    with store.output_lock(run_dir / "teacher"):  # a stage is writing the teacher: its work stays
        assert main(["clean", str(tmp_path / "runs")]) == 0
    out = capsys.readouterr().out
    assert "removed 2 work directories of stopped runs (4.0 MB)" in out and "1 in use, kept" in out
    assert [w.exists() for w in ours] == [False, False, True]
    assert (foreign / "notes.txt").read_text() == "mine" and (run_dir / "student").is_dir()
    assert main(["clean", str(tmp_path / "missing")]) == 2


def test_a_second_process_on_the_same_output_stops_at_once(tmp_path):
    out = tmp_path / "out"
    script = ("import sys; from pipelines import store\n"
              f"with store.stage_run('augment', {str(out)!r}, 'b' * 64, {{}}): pass\n")
    with store.stage_run("augment", out, "a" * 64, {}, resumable=True) as run:
        (run.work_dir / "shard-0").write_text("mine")
        t0 = time.perf_counter()
        second = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
        assert second.returncode != 0 and time.perf_counter() - t0 < 30
        assert f"another distill process (pid {os.getpid()}) is writing this output" in second.stderr
        with pytest.raises(DistillError, match="another distill process"):  # the same holds within a process
            with store.stage_run("augment", out, "a" * 64, {}):
                pass
        assert (run.work_dir / "shard-0").read_text() == "mine"
        run.commit()
    assert store.read_manifest(out)["fingerprint"] == "a" * 64
    with store.stage_run("augment", out, "a" * 64, {}) as run:  # released: the next run takes the lock
        run.commit()


def plant_links(directory: Path, name: str, victim: Path) -> list[Path]:
    """Symbolic links at the temporary names a writer of `name` used to pick (`.NAME.tmp-PID`, `.NAME.tmp`),
    each pointing at `victim`: what another user of a shared directory could plant."""
    links = [directory / f".{name}.tmp-{os.getpid()}", directory / f".{name}.tmp"]
    for link in links:
        link.symlink_to(victim)
    return links


def test_temporary_files_never_follow_a_planted_link(tmp_path):
    import torch

    from pipelines import checkpoints

    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "shared"
    out.mkdir()
    for name in ("doc.json", "shard.arrow", "ckpt.pt"):
        plant_links(out, name, victim)
    store.write_json(out / "doc.json", {"a": 1})
    table = pa.table({"x": [1, 2]})
    store.write_shard(out / "shard.arrow", table, table.schema, "f" * 64)
    checkpoints.save(out / "ckpt.pt", "f" * 64, {"w": torch.zeros(2)})
    assert victim.read_text() == "precious"  # nothing written through a link
    assert json.loads((out / "doc.json").read_text()) == {"a": 1} and not (out / "doc.json").is_symlink()
    assert store.read_arrow_file(out / "shard.arrow").num_rows == 2
    assert oct((out / "doc.json").stat().st_mode & 0o777) == oct(0o666 & ~store.temp_files.UMASK)


def test_a_planted_lock_link_is_refused_and_its_target_left_alone(tmp_path):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "out"
    store.lock_path(out).symlink_to(victim)
    with pytest.raises(DistillError, match="symbolic link"):
        with store.output_lock(out):
            pass
    store.lock_path(out).unlink()
    os.link(victim, store.lock_path(out))  # a hard link: the same file under the lock's name
    with pytest.raises(DistillError, match="not a plain file of its own"):
        with store.output_lock(out):
            pass
    assert victim.read_text() == "precious"
    store.lock_path(out).unlink()
    with store.output_lock(out):  # an ordinary lock still works
        assert store.lock_path(out).read_text().strip() == str(os.getpid())
