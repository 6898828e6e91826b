"""Faults on a Ray cluster, measured as Ray's own tests do: a head and two worker nodes on this machine
(`ray.cluster_utils.Cluster`), `distill score` or `distill augment --engine ray --ray-address` driving it from
its own process, and a node killed (its raylet and its workers) in the middle of the job: for scoring once a few
shards are written, for augmenting once one of its actors runs on the node.

- A worker node lost: the job finishes on the other node, and its output is byte for byte the local engine's
  (scoring: every shard once, none lost, none doubled; augmenting: the chunks the lost actors held are done
  again by their restarts).
- The head lost: the job ends (Ray's driver cannot reach its GCS: exit status 1 and Ray's message), the shards
  written so far stay in the work directory, and the same command on a new cluster resumes from them, to the
  local engine's bytes.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipelines import store
from pipelines.stages import score
from pipelines.stages.score import ScoreConfig

from .conftest import REPO_ROOT, random_sentences, write_transfer_set
from .test_engines import stop_every_ray_process  # noqa: F401  (a fixture: Ray processes a test leaves)

cluster_utils = pytest.importorskip("ray.cluster_utils", reason="the Ray extra is not installed")
pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_torch_thread")]
SHARD_ROWS = 8  # 400 rows: 50 shards, so that a node dies with most of the job still to do
KILL_AFTER = 6  # shards written before the node is killed


@pytest.fixture()
def cluster(monkeypatch):
    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    c = cluster_utils.Cluster(initialize_head=True, head_node_args={"num_cpus": 0})  # the work goes to workers
    workers = [c.add_node(num_cpus=1) for _ in range(2)]
    c.wait_for_nodes()
    yield c, workers
    for node in [*c.worker_nodes, *([c.head_node] if c.head_node else [])]:
        try:
            c.remove_node(node, allow_graceful=False)
        except Exception:  # noqa: BLE001 (a node the test killed already)
            pass


@pytest.fixture(scope="module")
def job(tmp_path_factory, tiny_teacher):
    """A 400-row transfer set and its scoring by the local engine: the bytes every Ray run must give."""
    root = tmp_path_factory.mktemp("ray-faults")
    transfer = write_transfer_set(root / "transfer", random_sentences(400, seed=5))
    local = score.run(ScoreConfig(teacher=str(tiny_teacher), transfer=transfer, out=root / "local",
                                  shard_rows=SHARD_ROWS, dtype="float32")).out_dir
    return transfer, data_bytes(local)


def data_bytes(out: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(out.glob("data-*.arrow"))}


def start_scoring(teacher: Path, transfer: Path, out: Path, address: str) -> subprocess.Popen:
    argv = [sys.executable, "-m", "pipelines.cli", "score", "--teacher", str(teacher), "--transfer", str(transfer),
            "--out", str(out), "--shard-rows", str(SHARD_ROWS), "--dtype", "float32", "--engine", "ray",
            "--ray-address", address]
    env = {**os.environ, "TQDM_DISABLE": "1", "PYTHONPATH": str(REPO_ROOT),
           "RAY_gcs_rpc_server_reconnect_timeout_s": "10"}  # a driver that lost its head gives up in 10 s, not 60
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def shards_written(out: Path) -> int:
    return len(list(out.parent.glob(f".{out.name}.partial-*/{store.SHARDS}/data-*.arrow")))


def wait_for_shards(out: Path, proc: subprocess.Popen, n: int, timeout: float = 180) -> int:
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if shards_written(out) >= n:
            return shards_written(out)
        time.sleep(0.1)
    raise AssertionError(f"no {n} shards within {timeout} s (exit status {proc.poll()})")


def test_a_worker_node_lost_mid_job_costs_no_shard(cluster, job, tiny_teacher, tmp_path):
    c, (doomed, _) = cluster
    transfer, expected = job
    out = tmp_path / "scored"
    proc = start_scoring(tiny_teacher, transfer, out, c.address)
    before = wait_for_shards(out, proc, KILL_AFTER)
    c.remove_node(doomed, allow_graceful=False)  # its raylet and its workers, at once
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    assert before < 50 and data_bytes(out) == expected  # all 50 shards, each once, the local engine's bytes
    stats = json.loads((out / "stats.json").read_text())
    assert stats["shards"] == 50 and stats["rows"] == 400 and stats["engine"] == "ray"


def actor_on(node, name: str = "_ChunkActor") -> bool:
    """Whether a process of the actor class `name` runs under this node's raylet."""
    import psutil

    raylet = psutil.Process(node.all_processes["raylet"][0].process.pid)
    return any(name in " ".join(child.cmdline()) for child in raylet.children(recursive=True))


def test_a_worker_node_lost_mid_augmentation_costs_no_chunk(monkeypatch, tmp_path, sst2_dir):
    from pipelines.cli import main

    monkeypatch.setenv("RAY_USAGE_STATS_ENABLED", "0")
    monkeypatch.setenv("TQDM_DISABLE", "1")
    common = ["augment", "--task", "sst2", "--data", str(sst2_dir), "--limit", "15000", "--n-iter", "20",
              "--chunk-size", "100"]
    assert main([*common, "--out", str(tmp_path / "local"), "--workers", "1"]) == 0
    c = cluster_utils.Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    nodes = [c.add_node(num_cpus=2) for _ in range(2)]  # room on each for both actors, restarted
    c.wait_for_nodes()
    try:
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        proc = subprocess.Popen([sys.executable, "-m", "pipelines.cli", *common, "--out", str(tmp_path / "ray"),
                                 "--engine", "ray", "--ray-address", c.address, "--workers", "2"], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        deadline, doomed = time.time() + 120, None
        while doomed is None and time.time() < deadline and proc.poll() is None:
            doomed = next((node for node in nodes if actor_on(node)), None)  # the node an actor runs on
            time.sleep(0.1)
        assert proc.poll() is None and doomed is not None, "no actor of the job ran on a worker node in time"
        c.remove_node(doomed, allow_graceful=False)
        _, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err[-2000:]
    finally:
        for node in [*c.worker_nodes, c.head_node]:
            c.remove_node(node, allow_graceful=False)
    assert data_bytes(tmp_path / "ray") == data_bytes(tmp_path / "local")


def test_the_head_lost_mid_job_ends_it_and_a_rerun_resumes(cluster, job, tiny_teacher, tmp_path):
    c, _ = cluster
    transfer, expected = job
    out = tmp_path / "scored"
    proc = start_scoring(tiny_teacher, transfer, out, c.address)
    wait_for_shards(out, proc, KILL_AFTER)
    c.remove_node(c.head_node, allow_graceful=False)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode != 0 and "GCS" in err  # Ray's own words: its driver lost the head's GCS
    assert not out.exists() and (kept := shards_written(out)) >= KILL_AFTER
    for node in list(c.worker_nodes):
        c.remove_node(node, allow_graceful=False)
    fresh = cluster_utils.Cluster(initialize_head=True, head_node_args={"num_cpus": 1})
    try:
        again = start_scoring(tiny_teacher, transfer, out, fresh.address)
        _, err = again.communicate(timeout=300)
        assert again.returncode == 0, err[-2000:]
    finally:
        fresh.shutdown()
    stats = json.loads((out / "stats.json").read_text())
    assert stats["shards_resumed"] == kept and data_bytes(out) == expected


def test_a_dead_clusters_address_left_on_the_machine_does_not_stop_a_local_instance():
    """A cluster that died (as the tests above kill theirs) leaves its address in /tmp/ray/ray_current_cluster;
    `--engine ray` without --ray-address starts its own instance all the same (it used to try to join it)."""
    from pipelines.ray_engine import RayEngine

    current = Path(os.environ.get("RAY_TMPDIR", "/tmp")) / "ray" / "ray_current_cluster"
    current.parent.mkdir(parents=True, exist_ok=True)
    saved = current.read_text() if current.exists() else None
    current.write_text("127.0.0.1:1")  # nothing listens there
    try:
        with RayEngine.started(workers=1) as engine:
            assert engine.workers == 1
    finally:
        current.write_text(saved) if saved is not None else current.unlink(missing_ok=True)
