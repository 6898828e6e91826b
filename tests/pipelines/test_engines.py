"""The engines give the same bytes: augmentation and scoring on the local engine (1 and 2 workers) and on a local
Ray instance (1 and 2 workers), resume after the driver is killed, a killed Ray worker, a cluster address that
does not answer, and `--engine ray` without the extra. Every Ray process these tests start is stopped by them."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest

from pipelines.cli import main
from pipelines.stages import score
from pipelines.stages.score import ScoreConfig
from pipelines.tasks import TASKS

from .conftest import REPO_ROOT, make_teacher, random_sentences, write_transfer_set
from .test_score_stage import data_bytes

pytest.importorskip("ray", reason="the Ray extra is not installed (make test installs it)")
# Bit-for-bit float32 logits need the same torch thread count per replica: with another count oneDNN may split a
# matmul's reduction differently and the last bit of a logit can differ. Ray actors and local worker processes
# run one thread each; so does the single local process here.
pytestmark = pytest.mark.usefixtures("one_torch_thread")

RAY_PROCESS_NAMES = ("raylet", "gcs_server", "ray::", "default_worker.py", "dashboard", "log_monitor",
                     "runtime_env_agent", "monitor.py")


def ray_processes() -> set[int]:
    pids = set()
    for p in psutil.process_iter(["pid", "cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if any(name in cmd for name in RAY_PROCESS_NAMES):
            pids.add(p.info["pid"])
    return pids


@pytest.fixture(scope="module", autouse=True)
def stop_every_ray_process():
    """Whatever a test leaves behind (a driver killed with -9 cannot shut its Ray instance down), goes here."""
    before = ray_processes()
    yield
    left = [psutil.Process(pid) for pid in ray_processes() - before if psutil.pid_exists(pid)]
    for p in left:
        p.kill()
    psutil.wait_procs(left, timeout=10)


@pytest.fixture()
def quiet(monkeypatch):
    monkeypatch.setenv("TQDM_DISABLE", "1")
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")


def augment(out: Path, *args: str) -> Path:
    assert main(["augment", "--out", str(out), "--seed", "3", "--n-iter", "6", *args]) == 0
    return out


def test_augment_same_bytes_local_and_ray_1_and_2_workers(tmp_path, quiet):
    outs = [augment(tmp_path / "local1", "--task", "demo", "--workers", "1"),
            augment(tmp_path / "local2", "--task", "demo", "--workers", "2", "--chunk-size", "50"),
            augment(tmp_path / "ray1", "--task", "demo", "--engine", "ray", "--workers", "1"),
            augment(tmp_path / "ray2", "--task", "demo", "--engine", "ray", "--workers", "2", "--chunk-size", "50")]
    first = data_bytes(outs[0])
    assert len(first) >= 3 and all(data_bytes(o) == first for o in outs[1:])
    manifests = [json.loads((o / "manifest.json").read_text()) for o in outs]
    assert [m["engine"] for m in manifests] == ["local", "local", "ray", "ray"]
    assert len({m["fingerprint"] for m in manifests}) == 1  # engine, workers and chunk size are not in it


def test_augment_pairs_same_bytes_on_ray(tmp_path, mrpc_dir, quiet):
    common = ("--task", "mrpc", "--data", str(mrpc_dir), "--limit", "120")
    local = augment(tmp_path / "local", *common)
    ray = augment(tmp_path / "ray", *common, "--engine", "ray", "--workers", "2", "--chunk-size", "40")
    assert data_bytes(ray) == data_bytes(local)


def test_chunk_actors_serve_the_next_phase_and_rebuild_their_worker_after_a_crash(tmp_path, quiet):
    """Tagging and generation run on the same Ray actors; an actor that dies mid-phase is restarted by Ray, builds
    its phase's worker again and redoes the item it was on: every result once, in order."""
    from pipelines.ray_engine import RayEngine

    marker = tmp_path / "died"

    class AddOrDie:  # defined here, so Ray ships it by value
        def __init__(self, offset: int, die_on: int | None = None):
            self.offset, self.die_on = offset, die_on

        def __call__(self, item: int) -> tuple[int, int]:
            if item == self.die_on and not marker.exists():
                marker.touch()
                os._exit(1)
            return item + self.offset, os.getpid()

    with RayEngine.started(workers=1) as engine:
        first = list(engine.mapper(AddOrDie, {"offset": 100, "die_on": 5}, list(range(10))))
        second = list(engine.mapper(AddOrDie, {"offset": 1000}, list(range(4))))
    assert marker.exists(), "the actor never reached the item it dies on"
    assert [v for v, _ in first] == [100 + i for i in range(10)]
    assert [v for v, _ in second] == [1000 + i for i in range(4)]  # the new phase's worker, not the old one
    assert first[0][1] != first[-1][1]  # a new process after the crash...
    assert {pid for _, pid in second} == {first[-1][1]}  # ...which then served the next phase


def test_actors_of_a_local_instance_run_at_the_drivers_priority(quiet):
    """Not at Ray's nice 15, which lets any other process on the machine starve them."""
    from pipelines.ray_engine import RayEngine

    class Niceness:  # defined here, so Ray ships it by value
        def __call__(self, item: int) -> int:
            return os.nice(0)

    with RayEngine.started(workers=1) as engine:
        assert list(engine.mapper(Niceness, {}, [0])) == [os.nice(0)]


def test_a_local_instance_keeps_rays_token_authentication_without_its_notice():
    """Ray turns token authentication on for a new local instance and logs a WARNING at every start (advising
    RAY_AUTH_MODE=disabled). A fresh process, as a user's job is (Ray says it only once a process): nothing of it
    on stderr, and the authentication still on."""
    code = ("from ray._raylet import AuthenticationMode, get_authentication_mode\n"
            "from pipelines.ray_engine import RayEngine\n"
            "with RayEngine.started(workers=1):\n"
            "    print(get_authentication_mode() == AuthenticationMode.TOKEN)\n")
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}  # Ray sets it in a process it starts in
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT,
                          env={**env, "RAY_USAGE_STATS_ENABLED": "0"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True"]
    assert "Token authentication" not in done.stderr and "WARNING" not in done.stderr, done.stderr


def test_a_phase_on_fewer_actors_frees_the_idle_actors_workers(tmp_path, quiet):
    """Tagging on two actors, then generation on one: the idle actor lets go of its tagger (a spaCy pipeline)
    when the next phase starts, not when the engine ends."""
    from pipelines.ray_engine import RayEngine

    class Noted:  # defined here, so Ray ships it by value; notes its pid when it is freed
        def __init__(self, folder: Path):
            self.folder = folder

        def __call__(self, item: int) -> int:
            return os.getpid()

        def __del__(self):
            (self.folder / f"freed-{os.getpid()}").touch()

    with RayEngine.started(workers=2) as engine:
        pids = set(engine.mapper(Noted, {"folder": tmp_path}, list(range(6))))  # first two items: one per actor
        [kept] = set(engine.mapper(Noted, {"folder": tmp_path}, [0]))
        deadline = time.monotonic() + 10
        while len(list(tmp_path.glob("freed-*"))) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        freed = {int(p.name.removeprefix("freed-")) for p in tmp_path.glob("freed-*")}
    assert len(pids) == 2 and kept in pids
    assert freed == pids  # the kept actor's first worker (replaced) and the idle actor's (released)


@pytest.fixture(scope="module")
def single_and_pairs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("engines")
    return {"single": write_transfer_set(root / "single", random_sentences(240, seed=11)),
            "pairs": write_transfer_set(root / "pairs", random_sentences(90, seed=12), random_sentences(90, seed=13),
                                        task=TASKS["mrpc"]),
            # long enough (75 shards of 40 rows) that a worker or the driver can be killed half-way
            "long": write_transfer_set(root / "long", random_sentences(3000, seed=14))}


def scored_bytes(transfer: Path, teacher: Path, out: Path, **kwargs) -> dict[str, bytes]:
    cfg = ScoreConfig(teacher=str(teacher), transfer=transfer, out=out, shard_rows=40, dtype="float32", **kwargs)
    result = score.run(cfg)
    assert not result.skipped
    return data_bytes(result.out_dir)


@pytest.mark.parametrize("kind", ["single", "pairs"])
def test_score_same_bytes_local_1_and_2_workers_and_ray(kind, single_and_pairs, tiny_teacher, tmp_path, quiet):
    """float32 CPU logits equal bit for bit, whatever runs them (rows, order and files too)."""
    transfer = single_and_pairs[kind]
    if kind == "pairs":
        tiny_teacher = make_teacher(tmp_path / "mrpc-teacher", TASKS["mrpc"].label_names)
    local = scored_bytes(transfer, tiny_teacher, tmp_path / "local")
    assert scored_bytes(transfer, tiny_teacher, tmp_path / "local2", workers=2) == local
    assert scored_bytes(transfer, tiny_teacher, tmp_path / "ray2", engine="ray", workers=2) == local
    if kind == "single":
        assert scored_bytes(transfer, tiny_teacher, tmp_path / "ray1", engine="ray", workers=1) == local
    stats = json.loads((tmp_path / "ray2" / "stats.json").read_text())
    assert stats["engine"] == "ray" and stats["workers"] == 2 and stats["rows_scored"] == stats["rows"]


def _kill_a_map_worker_after_the_first_shard(shard_dir_parent: Path, killed: list[int]) -> None:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not killed:
        if any(shard_dir_parent.glob(".*.partial-*/shards/data-*.arrow")):
            for p in psutil.process_iter(["pid", "cmdline"]):
                if "MapWorker" in " ".join(p.info["cmdline"] or []):
                    p.kill()
                    killed.append(p.info["pid"])
                    return
        time.sleep(0.05)


def test_a_killed_ray_worker_redoes_its_shard_once(single_and_pairs, tiny_teacher, tmp_path, quiet):
    out = tmp_path / "ray"
    killed: list[int] = []
    killer = threading.Thread(target=_kill_a_map_worker_after_the_first_shard, args=(tmp_path, killed))
    killer.start()
    try:
        got = scored_bytes(single_and_pairs["long"], tiny_teacher, out, engine="ray", workers=2, batch_tokens=64)
    finally:
        killer.join()
    assert killed, "no Ray map worker was found to kill"
    assert got == scored_bytes(single_and_pairs["long"], tiny_teacher, tmp_path / "local", batch_tokens=64)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_cluster_address_that_does_not_answer_fails_within_seconds(single_and_pairs, tiny_teacher, tmp_path,
                                                                     capsys):
    address = f"127.0.0.1:{_free_port()}"
    t0 = time.monotonic()
    code = main(["score", "--teacher", str(tiny_teacher), "--transfer", str(single_and_pairs["single"]),
                 "--out", str(tmp_path / "s"), "--engine", "ray", "--ray-address", address])
    assert code == 2 and time.monotonic() - t0 < 15
    err = capsys.readouterr().err
    assert f"no Ray cluster answers at {address}" in err and "ray start --head" in err
    assert not (tmp_path / "s").exists()


def test_engine_ray_without_the_extra_says_how_to_install_it(tmp_path):
    code = ("import sys; sys.modules['ray'] = None\n"  # `import ray` now fails as if it were not installed
            "from pipelines.cli import main\n"
            f"sys.exit(main(['augment', '--task', 'demo', '--out', {str(tmp_path / 'a')!r}, '--engine', 'ray']))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO_ROOT)
    assert done.returncode == 2, done.stderr
    assert "pip install 'distill-pipelines[ray]'" in done.stderr
    assert not (tmp_path / "a").exists()


def test_resume_on_ray_after_the_driver_is_killed(single_and_pairs, tiny_teacher, tmp_path):
    out = tmp_path / "s"
    args = [sys.executable, "-m", "pipelines.cli", "score", "--teacher", str(tiny_teacher), "--transfer",
            str(single_and_pairs["long"]), "--out", str(out), "--shard-rows", "40", "--dtype", "float32",
            "--batch-tokens", "64", "--engine", "ray", "--workers", "1"]
    env = {**os.environ, "TQDM_DISABLE": "1", "RAY_USAGE_STATS_ENABLED": "0"}
    driver = subprocess.Popen(args, cwd=REPO_ROOT, env=env, start_new_session=True, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list(tmp_path.glob(".*.partial-*/shards/data-*.arrow")):
        time.sleep(0.05)
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and the Ray instance it started
    driver.wait()
    kept = list(tmp_path.glob(".*.partial-*/shards/data-*.arrow"))
    assert kept and not out.exists()
    assert subprocess.run(args, cwd=REPO_ROOT, env=env, capture_output=True).returncode == 0
    stats = json.loads((out / "stats.json").read_text())
    assert 1 <= stats["shards_resumed"] < stats["shards"]
    assert data_bytes(out) == scored_bytes(single_and_pairs["long"], tiny_teacher, tmp_path / "local",
                                           batch_tokens=64)


def test_a_worker_that_cannot_see_a_path_names_the_node_and_the_path(tiny_teacher, tmp_path):
    from pipelines import hub
    from pipelines.errors import DataError
    from pipelines.teacher import shard_scorer

    files = hub.locate_model(str(tiny_teacher))
    missing = tmp_path / "not-mounted-here" / "transfer"
    with pytest.raises(DataError, match=r"node .* cannot see this path: with --engine ray every node must "
                                        r"reach the input and output paths") as e:
        shard_scorer.ShardScorer({"transfer": str(missing)}, "fp", files, "fp", str(tmp_path), 10, "cpu",
                                 "float32", 128, None, 1, False)
    assert str(missing) in str(e.value)
    elsewhere = tmp_path / "elsewhere"  # the teacher's directory, where this node does not see it
    moved = hub.ModelFiles(**{**files.__dict__, "name": str(elsewhere), "path": elsewhere})
    with pytest.raises(DataError, match="cannot see this path"):
        shard_scorer.teacher_files(moved, False)
