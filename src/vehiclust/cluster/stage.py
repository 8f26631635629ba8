"""The cluster stage: a sweep per descriptor and the selected run of each (see :mod:`.sweep`)."""

from __future__ import annotations

from pathlib import Path

from vehiclust.cluster.settings import ClusterSettings
from vehiclust.cluster.sweep import cluster, cluster_outputs, cluster_stage_key
from vehiclust.run_descriptors import clusterable
from vehiclust.stage import RunContext, Stage


class ClusterStage(Stage):
    """Sweeps ``ctx.descriptors`` (those with enough usable rows, :func:`clusterable`); current
    while they, the collection and the settings did not change."""

    name = "cluster"

    def __init__(self, settings: ClusterSettings | None = None):
        super().__init__(settings or ClusterSettings())

    def key(self, ctx: RunContext) -> str:
        return cluster_stage_key(ctx.run, clusterable(ctx.run, ctx.descriptors), self.settings)

    def outputs(self, ctx: RunContext) -> list[Path]:
        return cluster_outputs(ctx.run, clusterable(ctx.run, ctx.descriptors), self.settings)

    def run(self, ctx: RunContext) -> dict:
        cluster(ctx.run, ctx.descriptors, self.settings, ctx.reporter)
        return ctx.run.stage_facts(self.name)
