"""The executor contract, the local executor and the registry of executors."""

from __future__ import annotations

import os
import socket
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass, field, fields, is_dataclass
from typing import Any

import numpy as np

from vehiclust.registry import Registry

# after_shard(row): called in the driver after each shard is stored (the tests kill a node here)
ShardHook = Callable[[dict], None]


@dataclass(frozen=True)
class ExecutorSettings:
    kind: str = "local"  # local | ray
    ray_address: str | None = None  # None: a local Ray instance started and stopped with the run
    cpus_per_worker: int = 1  # cores per Ray actor when the cluster has no GPUs
    workers: int | None = None  # Ray actors at most (None: one per GPU, or per cpus_per_worker cores)
    max_shard_attempts: int = 3  # a shard whose worker died is retried elsewhere this many times
    scratch: str | None = None  # work files every worker can read (shared storage); None: the system tmp
    after_shard: ShardHook | None = field(default=None, compare=False, repr=False)


def available_cpus() -> int:
    """CPUs this process may run on: in containers the affinity mask is what is really lent."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


def result_settings(settings) -> dict[str, Any]:
    """``asdict(settings)`` without the executor settings it holds (at any depth): where the
    rows were computed does not change the result, so it is no part of a stage's key."""
    out = {}
    for item in fields(settings):
        value = getattr(settings, item.name)
        if isinstance(value, ExecutorSettings):
            continue
        out[item.name] = result_settings(value) if is_dataclass(value) and not isinstance(value, type) else value
    return out


class ShardJob(ABC):
    """Per-shard work that any process with the run folder mounted can do. Must pickle small:
    it carries paths and settings, never rows."""

    def setup(self, threads: int | None) -> None:
        """Load what every shard needs (models) once per worker process."""

    @abstractmethod
    def stored(self, index: int) -> bool:
        """Whether shard ``index`` is already in the run folder (it is never recomputed)."""

    @abstractmethod
    def run(self, index: int) -> dict:
        """Compute shard ``index`` and write it atomically; returns a small manifest row."""


def worker_identity() -> dict[str, Any]:
    return {"node": socket.gethostname(), "pid": os.getpid(), "peak_rss_mb": peak_rss_mb()}


def peak_rss_mb() -> float:
    import resource

    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux: kilobytes


def run_timed(job: ShardJob, index: int, extra: dict | None = None) -> dict:
    """One shard with its timing and the process that did it, as a manifest row."""
    started = time.perf_counter()
    row = job.run(index)
    return {**row, "shard": index, "seconds": round(time.perf_counter() - started, 4), **worker_identity(),
            **(extra or {})}


class Executor(ABC):
    name: str

    def __init__(self, settings: ExecutorSettings):
        self.settings = settings

    @abstractmethod
    def map(self, job: ShardJob, shards: list[int]) -> list[dict]:
        """Run every shard of ``shards`` not already stored; returns their manifest rows."""

    def _stored(self, row: dict) -> None:
        if self.settings.after_shard is not None:
            self.settings.after_shard(row)


class LocalExecutor(Executor):
    """Every shard in this process, in order: vehiclust's behaviour without an executor."""

    name = "local"

    def map(self, job: ShardJob, shards: list[int]) -> list[dict]:
        todo = [i for i in shards if not job.stored(i)]
        if todo:
            job.setup(None)
        rows = []
        for index in todo:
            rows.append({**run_timed(job, index), "stored_at": time.time()})
            self._stored(rows[-1])
        return rows


@dataclass(frozen=True)
class ExecutorSpec:
    name: str
    summary: str
    factory: Callable[[ExecutorSettings], Executor]


def _ray_executor(settings: ExecutorSettings) -> Executor:
    from vehiclust.executor.ray_executor import RayExecutor  # imports ray, an optional extra

    return RayExecutor(settings)


EXECUTORS: Registry[ExecutorSpec] = Registry("executor", ExecutorSpec)
EXECUTORS.register(ExecutorSpec("local", "every shard in this process (the default)", LocalExecutor))
EXECUTORS.register(ExecutorSpec("ray", "a pool of Ray actors on a cluster or a local Ray instance "
                                       "(pip install 'vehiclust[ray]')", _ray_executor))


def create_executor(settings: ExecutorSettings) -> Executor:
    """The executor ``settings.kind`` names; an unknown name or a missing ray is one line."""
    return EXECUTORS.get(settings.kind).factory(settings)


def provenance(kind: str, rows: list[dict]) -> dict[str, Any]:
    """What a descriptor's JSON records about who computed it: the executor, the nodes and
    processes, and one [shard, worker, seconds] triple per shard computed in this run."""
    workers = sorted({(r["node"], r["pid"]) for r in rows})
    worker_ids = {w: i for i, w in enumerate(workers)}
    # what a shard costs beyond its own work: scheduling, the call, the manifest row's way back
    # (each worker's first shard also waited for the worker to start and load its models)
    overheads = [r["round_trip_seconds"] - r["seconds"] for r in rows
                 if "round_trip_seconds" in r and not r.get("first_on_worker")]
    first_store = min((r.get("stored_at", 0.0) for r in rows), default=0.0)
    return {
        "shard_overhead_seconds": round(float(np.median(overheads)), 4) if overheads else None,
        "executor": kind,
        "first_stored_at": round(first_store, 3),  # time.time() of the first shard stored in this run
        "nodes": sorted({node for node, _ in workers}),
        "workers": [_worker_summary(node, pid, [r for r in rows if (r["node"], r["pid"]) == (node, pid)])
                    for node, pid in workers],
        # [shard, worker (index into workers), seconds of work, seconds from the first shard stored to this one]
        "shard_seconds": [[r["shard"], worker_ids[(r["node"], r["pid"])], r["seconds"],
                           round(r.get("stored_at", 0.0) - first_store, 3)]
                          for r in sorted(rows, key=lambda r: r["shard"])],
    }


def _worker_summary(node: str, pid: int, rows: list[dict]) -> dict[str, Any]:
    device = {key: rows[0][key] for key in ("device", "gpus") if key in rows[0]}  # what a describe worker ran on
    return {"node": node, "pid": pid, "shards": len(rows), "seconds": round(sum(r["seconds"] for r in rows), 3),
            "peak_rss_mb": max((r.get("peak_rss_mb", 0.0) for r in rows), default=0.0), **device}


def executor_lines(run) -> list[str]:
    """One line per extracted descriptor of ``run``: who computed its shards and how long they
    took (the report's timings view)."""
    import statistics

    lines = []
    for name in run.descriptor_names():
        meta = run.descriptor_meta(name)
        seconds = [entry[2] for entry in meta.get("shard_seconds") or []]
        if "executor" not in meta or not seconds:
            continue
        lines.append(f"{name}: {meta['executor']} executor, {len(meta['nodes'])} node(s), "
                     f"{len(meta['workers'])} worker process(es), {len(seconds)} shards, "
                     f"{statistics.median(seconds):.2f} s median per shard (max {max(seconds):.2f} s)")
    return lines
