"""Executors: how a stage maps its per-shard work over the rows of a collection.

A shard job (:class:`ShardJob`) writes each shard's result atomically into the run folder and
returns only a small manifest row; the executor decides where shards run. ``local`` (the
default) runs them in this process, as vehiclust always has; ``ray`` runs them on a pool of Ray
actors (one per GPU, or per ``cpus_per_worker`` cores) that load the model once, on a cluster
(``ray_address``) or on a local Ray instance that starts and stops with the run. Images and
matrices never travel through Ray's object store: workers read and write the shared run folder.
"""

from vehiclust.executor.base import (EXECUTORS, Executor, ExecutorSettings, ExecutorSpec, LocalExecutor, ShardJob,
                                     create_executor, provenance)

__all__ = ["EXECUTORS", "Executor", "ExecutorSettings", "ExecutorSpec", "LocalExecutor", "ShardJob",
           "create_executor", "provenance"]
