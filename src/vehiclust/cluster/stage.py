"""The cluster stage: a sweep per descriptor and the selected run of each (see :mod:`.sweep`)."""

from __future__ import annotations

from pathlib import Path

from vehiclust.cluster.settings import ClusterSettings
from vehiclust.cluster.sweep import cluster, cluster_stage_key
from vehiclust.runfolder import CLUSTERING, RUNS
from vehiclust.stage import RunContext, Stage


class ClusterStage(Stage):
    """Sweeps ``ctx.descriptors``; current while they, the collection and the settings did not change."""

    name = "cluster"

    def __init__(self, settings: ClusterSettings | None = None):
        super().__init__(settings or ClusterSettings())

    def key(self, ctx: RunContext) -> str:
        return cluster_stage_key(ctx.run, ctx.descriptors, self.settings)

    def outputs(self, ctx: RunContext) -> list[Path]:
        return [RUNS.path(ctx.run)] + [CLUSTERING.path(ctx.run, n) for n in ctx.descriptors]

    def run(self, ctx: RunContext) -> dict:
        cluster(ctx.run, ctx.descriptors, self.settings, ctx.reporter)
        return ctx.run.stage_facts(self.name)
