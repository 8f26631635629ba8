"""The outlier stage: every image scored by each check, one verdict with reasons (outliers.csv)."""

from __future__ import annotations

from pathlib import Path

from vehiclust.outliers.verdict import OutlierSettings, outliers, outliers_key
from vehiclust.runfolder import OUTLIERS
from vehiclust.stage import RunContext, Stage


# -- the stage class (core); the outliers() orchestration moves here from verdict.py --------------
class OutlierStage(Stage):
    """Scores against ``ctx.descriptors``; current while they, the clustering, the support
    descriptors and the settings did not change."""

    name = "outliers"

    def __init__(self, settings: OutlierSettings | None = None):
        super().__init__(settings or OutlierSettings())

    def key(self, ctx: RunContext) -> str:
        return outliers_key(ctx.run, ctx.descriptors, self.settings)

    def outputs(self, ctx: RunContext) -> list[Path]:
        return [OUTLIERS.path(ctx.run)]

    def run(self, ctx: RunContext) -> dict:
        outliers(ctx.run, ctx.descriptors, ctx.reporter, self.settings)
        return ctx.run.stage_facts(self.name)
