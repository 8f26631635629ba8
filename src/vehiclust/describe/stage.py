"""The describe stage: images -> descriptor matrices (see :mod:`vehiclust.describe.extract`)."""

from __future__ import annotations

from pathlib import Path

from vehiclust.describe.extract import DescribeSettings, describe, descriptor_key, rows_key
from vehiclust.runfolder import DESCRIPTOR, DESCRIPTOR_META, fingerprint
from vehiclust.stage import RunContext, Stage


# -- the stage class (core); the describe() orchestration above it moves here from extract.py --
class DescribeStage(Stage):
    """Extracts ``ctx.descriptors`` that the input did not bring, plus the support descriptors
    the outlier checks read when ``image_checks``. Current while every one of them is stored
    with the key it would be computed with now; an interrupted extraction resumes per chunk
    inside :func:`describe`."""

    name = "describe"

    def __init__(self, settings: DescribeSettings | None = None, image_checks: bool = True):
        super().__init__(settings or DescribeSettings())
        self.image_checks = image_checks

    def _names(self, ctx: RunContext) -> list[str]:
        from vehiclust.run_descriptors import to_extract

        return to_extract(ctx.run, ctx.descriptors, self.image_checks)

    def key(self, ctx: RunContext) -> str:
        names = self._names(ctx)
        if not names:
            return fingerprint("describe", {})
        table = ctx.run.load_collection()
        rows = rows_key(table)
        return fingerprint("describe", {n: descriptor_key(n, table, rows) for n in names})

    def outputs(self, ctx: RunContext) -> list[Path]:
        names = self._names(ctx)
        return [DESCRIPTOR.path(ctx.run, n) for n in names] + [DESCRIPTOR_META.path(ctx.run, n) for n in names]

    def run(self, ctx: RunContext) -> dict:
        names = self._names(ctx)
        computed = describe(ctx.run, names, self.settings, ctx.reporter) if names else []
        return {"descriptors": names, "computed": computed}
