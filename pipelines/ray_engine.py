"""The Ray engine: a stage's parallel work as Ray actors, on a local Ray instance or on a running cluster.

- Shards (scoring): Ray Data `map_batches` over the shard numbers still missing, with the stage's shard worker
  as the callable class: an actor pool, one GPU per actor where the cluster has GPUs, CPU actors otherwise.
  Each actor writes its shards atomically into the stage's work directory (the same files the local engine
  writes), so a worker killed mid-shard leaves no partial file: Ray restarts the actor and the shard is done
  again, once. A restarted job scores only the shards without a file.
- Chunks (augmentation): an actor pool of the library's callable classes (tagging, generation), results taken in
  chunk order, a bounded number in flight. An actor lost with its node is restarted elsewhere (up to 3 times)
  and the chunks it held are retried until it is back (a node's death takes Ray seconds to notice: a bounded
  retry count ran out first), so the job finishes with the same bytes.

Paths must be reachable by every node (a shared filesystem): a worker that cannot see the input or output path
says so. Ray is an optional extra: `pip install 'distill-pipelines[ray]'`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from .errors import ConfigError, DistillError, MissingResourceError

log = logging.getLogger(__name__)

INSTALL_HINT = "--engine ray needs Ray, an optional extra: pip install 'distill-pipelines[ray]'"
CONNECT_TIMEOUT_S = 5.0
SHARDS_PER_CALL = 2
TOKEN_AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise MissingResourceError(INSTALL_HINT) from None
    return ray


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Fail within seconds, with a clear message, when nothing answers at a cluster address (ray.init would
    otherwise retry for a minute or more)."""
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise DistillError(f"--ray-address must be HOST:PORT (the head node's GCS address, printed by `ray start "
                           f"--head`), got '{address}'")
    try:
        socket.create_connection((host, int(port)), timeout=timeout).close()
    except OSError as e:
        raise DistillError(f"no Ray cluster answers at {address} ({e.strerror or e}); start one with `ray start "
                           f"--head` on the head node (and `ray start --address={address}` on the others), or leave "
                           "out --ray-address to start a local Ray instance") from None


def cause_of(error: BaseException) -> BaseException:
    """The user's own exception inside Ray's wrappers (RayTaskError and Ray Data's UserCodeException)."""
    seen = error
    while True:
        inner = getattr(seen, "cause", None) or seen.__cause__
        if inner is None or inner is seen:
            return seen
        seen = inner


def _quiet_ray_data() -> Any:
    """Ray Data, imported where shards need it (augmentation does not: about a second saved), with one progress
    bar for the whole job (the stage's own) and without its per-dataset INFO lines."""
    import ray.data

    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False
    ctx.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    return ray.data


class _ChunkActor:
    """Runs the library's callable classes for the engine's life (tagging, then generation, on the same actors:
    one process start and import each, not one per phase). A worker is built on the first item of its phase
    from object-store references, so an actor Ray restarts after a crash builds it again on its next item."""

    def __init__(self) -> None:
        self.phase: int | None = None
        self.worker: Any = None

    def call(self, phase: int, cls: type, refs: dict[str, Any], item: Any) -> Any:
        if phase != self.phase:
            import ray

            self.release()  # the last phase's worker (a tagger, a corpus) goes first
            self.worker = cls(**dict(zip(refs, ray.get(list(refs.values())))))
            self.phase = phase
        return self.worker(item)

    def release(self) -> None:
        """Drop the last phase's worker: before the next phase's is built, and on an actor that a phase on fewer
        actors leaves idle (else it would keep its worker until the engine ends)."""
        self.phase, self.worker = None, None


class RayEngine:
    name = "ray"

    def __init__(self, ray: Any, workers: int):
        self.ray = ray
        self.workers = workers
        self._chunk_actors: list[Any] = []  # made on the first mapped phase, reused by the next ones
        self._phases = 0

    @classmethod
    @contextlib.contextmanager
    def started(cls, workers: int = 0, address: str | None = None) -> Iterator[RayEngine]:
        """Join the cluster at `address`, or start a local Ray instance with the CPUs this process may use, and
        run `workers` actors (default: one per CPU of the cluster); Ray is shut down on the way out (a cluster
        this process joined keeps running)."""
        ray = import_ray()
        from .devices import available_cpus

        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # batch jobs on closed networks: no phoning home
        quiet = {"include_dashboard": False, "log_to_driver": False, "logging_level": logging.WARNING}
        if address is not None:
            check_reachable(address)
            ray.init(address=address, **quiet)
        else:
            # Ray runs its workers at nice 15, so any other process on the machine starves them (10x slower
            # augmentation was seen beside one fine-tuning job); the local engine's workers run at the driver's.
            os.environ.setdefault("RAY_worker_niceness", "0")
            # Ray turns token authentication on for every new local instance and logs a WARNING saying so at each
            # start, with the advice to set RAY_AUTH_MODE=disabled. The instance is this job's own and lives as
            # long as the job: the authentication stays (its token in ~/.ray/auth_token), the notice goes.
            logging.getLogger(TOKEN_AUTH_LOGGER).setLevel(logging.ERROR)
            # A single-node instance on this machine. (Ray advertises the node's own IP even when asked for
            # 127.0.0.1, so it listens where any Ray head does; on a closed network, as in CI, that is local.)
            # address="local": always a new instance, never a cluster that `ray start` (or a dead one whose
            # address /tmp/ray/ray_current_cluster still holds) left on this machine.
            ray.init(address="local", num_cpus=available_cpus(), **quiet)
        try:
            cpus = int(ray.cluster_resources().get("CPU", 1))
            engine = cls(ray, max(1, min(workers or cpus, cpus)))
            try:
                yield engine
            finally:
                engine.end_chunk_actors()
        finally:
            ray.shutdown()

    @property
    def gpus(self) -> int:
        return int(self.ray.cluster_resources().get("GPU", 0))

    def mapper(self, cls: type, kwargs: dict, items: Sequence[Any]) -> Iterator[Any]:
        """The library's mapper protocol (augment.workers) on Ray actors, one CPU each, results in order. The
        actors outlive the call: the next phase (generation after tagging) runs on the same ones."""
        from ray.util import ActorPool

        n = max(1, min(self.workers, len(items)))
        refs = {k: self.ray.put(v) for k, v in kwargs.items()}  # large state (a corpus) once, not per actor
        if len(self._chunk_actors) < n:
            actor = self.ray.remote(num_cpus=1, max_restarts=3, max_task_retries=-1)(_ChunkActor)
            self._chunk_actors += [actor.remote() for _ in range(n - len(self._chunk_actors))]
        self._phases += 1
        phase = self._phases
        for idle in self._chunk_actors[n:]:
            idle.release.remote()
        pool = ActorPool(self._chunk_actors[:n])
        pending = 0
        for item in items:
            pool.submit(lambda a, v: a.call.remote(phase, cls, refs, v), item)
            pending += 1
            if pending >= 2 * n:
                yield self._next(pool)
                pending -= 1
        for _ in range(pending):
            yield self._next(pool)

    def end_chunk_actors(self) -> None:
        for a in self._chunk_actors:
            self.ray.kill(a)
        self._chunk_actors = []

    def _next(self, pool: Any) -> Any:
        try:
            return pool.get_next()
        except self.ray.exceptions.RayError as e:
            raise cause_of(e) from None

    def plan_slots(self, device: str, workers: int) -> list[dict]:
        """One slot, the shape of every actor: one GPU each where the cluster has GPUs, else one CPU (the actor
        count is the engine's `workers`)."""
        use_gpu = device != "cpu" and self.gpus > 0
        if device == "cuda" and not use_gpu:
            raise ConfigError("--device cuda, but the Ray cluster has no GPUs")
        return [{"device": "cuda" if use_gpu else "cpu", "threads": None if use_gpu else 1}]

    def shard_workers(self, slots: list[dict]) -> int:
        return self.workers

    def run_shards(self, cls: type, kwargs: dict, slots: list[dict], todo: list[int], rows: Callable[[int], int],
                   progress: Callable[[int], Any], in_process: dict | None = None) -> list:
        """`cls(**kwargs, **slots[0])` as a Ray Data actor pool over the shard numbers `todo`, SHARDS_PER_CALL
        shards a call (so that within a call the worker tokenises the next shard while it scores one, as the
        local engine does); returns what the actors returned for each shard (in the order shards finished),
        reporting `rows(i)` to `progress` as shard i finishes. A call a killed actor did not finish is done again
        whole: its shards are written again, each to its own file, so no row is duplicated. No worker runs in
        this process: `in_process` is not used."""
        if not todo:
            return []
        slot = slots[0]
        gpus_per_actor, cpus_per_actor = (1 if slot["device"] == "cuda" else 0), (slot["threads"] or 1)
        kwargs = {**kwargs, **slot}
        ray_data = _quiet_ray_data()
        calls = -(-len(todo) // SHARDS_PER_CALL)
        concurrency = max(1, min(self.workers if not gpus_per_actor else max(1, self.gpus), calls))
        ds = ray_data.from_items([{"shard": i} for i in todo], override_num_blocks=calls)
        ds = ds.map_batches(cls, fn_constructor_kwargs=kwargs, batch_size=SHARDS_PER_CALL, concurrency=concurrency,
                            num_gpus=gpus_per_actor, num_cpus=cpus_per_actor)  # Ray Data restarts dead actors
        done = []
        try:
            for row in ds.iter_rows():
                done.append(row)
                progress(rows(int(row["shard"])))
        except self.ray.exceptions.RayError as e:
            raise cause_of(e) from None
        return done
