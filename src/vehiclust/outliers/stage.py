"""The outliers stage: load the evidence the selected checks need, score every registered check
(:mod:`vehiclust.outliers.checks`), combine them into the verdict (:mod:`vehiclust.outliers.verdict`)
and write ``outliers.csv``."""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from vehiclust.errors import VehiclustError
from vehiclust.executor.base import result_settings
from vehiclust.outliers.checks import CHECKS, Check, CheckResult, CheckSpec
from vehiclust.outliers.detectors import DETECTORS
from vehiclust.outliers.evidence import QUALITY_DESCRIPTOR, VEHICLE_DESCRIPTOR, load_evidence
from vehiclust.outliers.settings import OutlierSettings
from vehiclust.outliers.verdict import verdict_table
from vehiclust.progress import NullReporter, Reporter
from vehiclust.run_descriptors import clusterable
from vehiclust.runfolder import OUTLIERS, RunFolder, fingerprint
from vehiclust.stage import RunContext, Stage


def outliers(run: RunFolder, names: list[str], reporter: Reporter | None = None,
             settings: OutlierSettings | None = None) -> pd.DataFrame:
    """Score every image of ``run`` and write ``outliers.csv``; returns that table."""
    reporter = reporter or NullReporter()
    settings = settings or OutlierSettings()
    if settings.contamination is not None and not 0.0 < settings.contamination < 1.0:
        raise VehiclustError(f"contamination must be a share between 0 and 1, got {settings.contamination}")
    key = stage_key(run, names, settings)
    if run.stage_is_current("outliers", key, [OUTLIERS.path(run)]):
        reporter.message("outliers: up to date")
        return OUTLIERS.load(run)
    started = time.perf_counter()
    scores = compute_scores(run, run.load_collection(), names, settings, reporter)
    OUTLIERS.save(run, scores)
    run.record_stage("outliers", key, time.perf_counter() - started,
                     flagged=int(scores["is_outlier"].sum()), rows=len(scores),
                     executor=settings.detectors.executor.kind)
    return scores


def stage_key(run: RunFolder, names: list[str], settings: OutlierSettings) -> str:
    extra = [n for n in (QUALITY_DESCRIPTOR, VEHICLE_DESCRIPTOR) if n in run.descriptor_names()]
    return fingerprint("outliers", 3, names, (run.stage_record("cluster") or {}).get("fingerprint"),
                       (run.stage_record("ingest") or {}).get("fingerprint"),
                       {n: run.descriptor_meta(n).get("fingerprint") for n in extra},
                       result_settings(settings), CHECKS.names(), DETECTORS.names())


def build_checks(settings: OutlierSettings) -> list[tuple[CheckSpec, Check]]:
    """The selected checks, each built with its threshold and options."""
    selected = settings.selected()
    for given, what in ((settings.thresholds, "thresholds"), (settings.options, "options")):
        unknown = sorted(set(given) - set(CHECKS.names()))
        if unknown:
            raise VehiclustError(f"{what} for unknown checks {unknown}; checks: {', '.join(CHECKS.names())}")
    checks = []
    for name in selected:
        spec, threshold, options = CHECKS.get(name), settings.threshold(name), settings.options.get(name, {})
        if not 0.0 < threshold <= 1.0:
            raise VehiclustError(f"check {name}: threshold must be in (0, 1], got {threshold}")
        if "threshold" in options:
            raise VehiclustError(f"check {name}: set its threshold in thresholds, not options")
        try:
            checks.append((spec, spec.factory(threshold=threshold, **options)))
        except TypeError as exc:  # an option the check does not take
            raise VehiclustError(f"check {name}: {exc}") from None
    return checks


def compute_scores(run: RunFolder, table: pd.DataFrame, names: list[str],
                   settings: OutlierSettings | None = None, reporter: Reporter | None = None) -> pd.DataFrame:
    """outliers.csv's table: the verdict is a loop over the selected checks."""
    settings = settings or OutlierSettings()
    checks = build_checks(settings)
    needs = {need for spec, _ in checks for need in spec.needs}
    evidence = load_evidence(run, table, names, needs, settings.group_by, settings.detectors,
                             settings.use_cluster_distance, reporter)
    scored: list[tuple[CheckSpec, Check, CheckResult]] = []
    for spec, check in checks:
        result = check.score(evidence)
        if result is not None:
            scored.append((spec, check, result))
    return verdict_table(evidence, scored, settings.contamination)


class OutlierStage(Stage):
    """Scores against ``ctx.descriptors`` (those clustered, :func:`clusterable`); current while
    they, the clustering, the support descriptors and the settings did not change."""

    name = "outliers"

    def __init__(self, settings: OutlierSettings | None = None):
        super().__init__(settings or OutlierSettings())

    def key(self, ctx: RunContext) -> str:
        return stage_key(ctx.run, clusterable(ctx.run, ctx.descriptors), self.settings)

    def outputs(self, ctx: RunContext) -> list[Path]:
        return [OUTLIERS.path(ctx.run)]

    def run(self, ctx: RunContext) -> dict:
        outliers(ctx.run, clusterable(ctx.run, ctx.descriptors), ctx.reporter, self.settings)
        return ctx.run.stage_facts(self.name)
