"""The Ray executor: a pool of actors that load the job's models once and take shards from a
queue the driver keeps.

The retry loop is ours rather than Ray's ``max_task_retries``: a shard whose actor died (its
node was lost, its process killed) goes back to the front of the queue and is taken by a live
actor, and an actor is never restarted on a node that is gone. Each shard's result is renamed
into place by the worker only when complete, so a retried shard never leaves two copies, and a
shard stored before a failure is not recomputed.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import tempfile
import time
from collections import deque

from vehiclust.errors import VehiclustError
from vehiclust.executor.base import Executor, ExecutorSettings, ShardJob, run_timed

CONNECT_TIMEOUT_S = 5.0  # Ray's own connect to a closed port retries for minutes
INSTALL_HINT = "--executor ray needs Ray: pip install 'vehiclust[ray]'"


def import_ray():
    try:
        import ray
    except ImportError:
        raise VehiclustError(INSTALL_HINT) from None
    return ray


class RayExecutor(Executor):
    name = "ray"

    def __init__(self, settings: ExecutorSettings):
        super().__init__(settings)
        self.ray = import_ray()
        if settings.ray_address:  # before any work (the CLI creates its executor first), connected or not
            check_reachable(settings.ray_address)

    def map(self, job: ShardJob, shards: list[int]) -> list[dict]:
        todo = [i for i in shards if not job.stored(i)]
        if not todo:
            return []
        cpus = self.settings.workers * self.settings.cpus_per_worker if self.settings.workers else None
        connect(self.ray, self.settings.ray_address, cpus)
        return self._run_queue(job, todo)

    def _run_queue(self, job: ShardJob, todo: list[int]) -> list[dict]:
        ray = self.ray
        options = actor_options(ray, self.settings.cpus_per_worker)
        size = max(1, min(len(todo), pool_size(ray, options), self.settings.workers or len(todo)))
        pool = actor_pool(ray, options)
        job_ref, job_id = ray.put(job), secrets.token_hex(8)  # the job: paths and settings only, a few kilobytes
        idle = deque(pool.take(size))
        queue, attempts = deque(todo), dict.fromkeys(todo, 0)
        in_flight: dict = {}  # object ref -> (actor, shard, submitted at, the actor's first shard of this job)
        started: set = set()
        rows: list[dict] = []
        lost = (ray.exceptions.RayActorError, ray.exceptions.ObjectLostError, ray.exceptions.WorkerCrashedError,
                ray.exceptions.NodeDiedError)
        finished = False
        try:
            while queue or in_flight:
                while queue and idle:
                    actor, index = idle.popleft(), queue.popleft()
                    attempts[index] += 1
                    in_flight[actor.run.remote(job_id, job_ref, index)] = (actor, index, time.perf_counter(),
                                                                   actor not in started)
                    started.add(actor)
                ready, _ = ray.wait(list(in_flight), num_returns=1)
                actor, index, submitted, first = in_flight.pop(ready[0])
                try:
                    row = ray.get(ready[0])
                except ray.exceptions.RayTaskError as exc:
                    if isinstance(exc.cause, VehiclustError):  # bad input met by a worker: its one line
                        raise VehiclustError(str(exc.cause)) from None
                    raise
                except lost as exc:
                    if attempts[index] >= self.settings.max_shard_attempts:
                        raise VehiclustError(f"shard {index} failed on {attempts[index]} workers; "
                                             f"last: {type(exc).__name__}") from None
                    queue.appendleft(index)
                    pool.drop(actor)
                    if not idle and not in_flight:
                        idle.extend(pool.take(1))  # every actor is gone: Ray places a new one
                    continue
                rows.append({**row, "round_trip_seconds": round(time.perf_counter() - submitted, 4),
                             "first_on_worker": first, "stored_at": time.time()})
                idle.append(actor)
                self._stored(rows[-1])
            finished = True
        finally:
            if finished:
                pool.give_back(idle)
            else:  # an error or an interrupt: shards may still run; no actor is kept
                for actor in [*idle, *(entry[0] for entry in in_flight.values())]:
                    pool.drop(actor)
                pool.close()
        return rows


class ActorPool:
    """The actors of one kind (their resource options) kept for this driver's later maps: the
    sweep maps every fitted model over the rows (assignment, then the metrics' sums), and a
    fresh pool per map would pay each actor's process start and imports every time. An actor
    loads a job's models on that job's first shard."""

    def __init__(self, ray, options: dict):
        self.ray, self.options, self.idle = ray, options, deque()
        self.worker_class = ray.remote(ShardWorker)

    def take(self, size: int) -> list:
        taken = [self.idle.popleft() for _ in range(min(size, len(self.idle)))]
        return taken + [self.worker_class.options(**self.options).remote(self.options.get("num_cpus"))
                        for _ in range(size - len(taken))]

    def give_back(self, actors) -> None:
        self.idle.extend(actors)

    def drop(self, actor) -> None:
        _drop(self.ray, actor)

    def close(self) -> None:
        for actor in self.idle:
            _drop(self.ray, actor)
        self.idle.clear()


_POOLS: dict[tuple, ActorPool] = {}


def actor_pool(ray, options: dict) -> ActorPool:
    """This driver's pool of actors with ``options``, in the Ray session it is connected to now
    (a pool of an earlier session, whose actors are gone, is not reused)."""
    context = ray.get_runtime_context()
    key = (context.get_node_id(), context.get_job_id(), tuple(sorted(options.items())))
    for stale in [k for k in _POOLS if k[:2] != key[:2]]:
        _POOLS.pop(stale).idle.clear()
    if key not in _POOLS:
        _POOLS[key] = ActorPool(ray, options)
    return _POOLS[key]


class ShardWorker:
    """One Ray actor: the current job's models, loaded on its first shard, then one shard per call."""

    def __init__(self, threads: float | None):
        import ray

        self.job, self.job_id, self.threads = None, None, int(threads) if threads else None
        self.node = ray.get_runtime_context().get_node_id()[:12]
        self.gpus = tuple(ray.get_gpu_ids())

    def run(self, job_id: str, job: ShardJob, index: int) -> dict:
        if job_id != self.job_id:  # on the job's first shard, not in __init__: its errors then reach the driver
            job.worker_gpus = self.gpus
            job.setup(self.threads)
            self.job, self.job_id = job, job_id
        if self.job.stored(index):  # a retry of a shard that was stored before its result came back
            return {"shard": index, "seconds": 0.0, "node": self.node, "pid": os.getpid(), "reused": True}
        return run_timed(self.job, index, {"node": self.node})


def actor_options(ray, cpus_per_worker: int) -> dict:
    """One GPU per actor on a cluster with GPUs, else ``cpus_per_worker`` cores."""
    if ray.cluster_resources().get("GPU", 0) >= 1:
        return {"num_gpus": 1, "num_cpus": 1}
    return {"num_cpus": cpus_per_worker}


def pool_size(ray, options: dict) -> int:
    resources = ray.cluster_resources()
    if "num_gpus" in options:
        return int(resources.get("GPU", 0))
    return max(1, int(resources.get("CPU", 1) // options["num_cpus"]))


def _drop(ray, actor) -> None:
    with contextlib.suppress(Exception):
        ray.kill(actor)


def connect(ray, address: str | None, cpus: int | None = None) -> None:
    """Connect this process to ``address``; or, with none, start a local Ray instance (one
    worker process per core). Once per process: the sweep maps every fitted model over the rows
    and must not pay Ray's start each time; ``ray.init`` stops the instance (and disconnects)
    when the process exits, so it starts and stops with the run. A driver already connected (a
    test's cluster) is kept as it is."""
    if ray.is_initialized():
        return
    if address:
        try:
            ray.init(address=address, logging_level="ERROR", log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise VehiclustError(f"--ray-address {address}: {str(exc).splitlines()[0]}") from None
        return
    os.environ.setdefault("RAY_TMPDIR", tempfile.gettempdir())  # sessions under tmp, never home
    # Ray's token auth for a local instance, with the token in the environment its processes
    # inherit: without one, Ray writes a token file into the user's home (~/.ray/auth_token)
    os.environ.setdefault("RAY_AUTH_TOKEN", secrets.token_hex(32))
    ray.init(num_cpus=cpus or os.cpu_count(), include_dashboard=False, logging_level="ERROR", log_to_driver=False,
             _temp_dir=os.path.join(os.environ["RAY_TMPDIR"], "vehiclust-ray"))


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Stop with one line when nothing accepts a connection at ``address`` (``HOST:PORT`` or
    ``ray://HOST:PORT``) within ``timeout`` seconds. ``auto`` and ``local`` are Ray's to resolve."""
    if address in ("auto", "local"):
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not host or not port.isdigit():
        raise VehiclustError(f"--ray-address {address}: expected HOST:PORT of the cluster's head node "
                             f"(e.g. 10.0.0.5:6379, or ray://10.0.0.5:10001)")
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout).close()
    except OSError as exc:
        reason = "no answer" if isinstance(exc, TimeoutError) else (exc.strerror or type(exc).__name__).lower()
        raise VehiclustError(f"--ray-address {address}: {reason} within {timeout:g} s; start the head there "
                             f"(ray start --head --port {port}) or give the address it printed") from None
