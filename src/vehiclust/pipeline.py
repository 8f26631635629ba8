"""The whole pipeline over one run folder: ingest -> describe -> cluster -> compare -> outliers -> report.

:func:`run_stages` runs :class:`~vehiclust.stage.Stage` objects in order and skips each one that
is current (same key, outputs present), so re-running after an interruption, or after changing
only a later stage's settings, redoes only what is needed. The functions below it are what each
command of the CLI calls: one stage over an existing run folder.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from vehiclust.cluster import ClusterSettings
from vehiclust.cluster.stage import ClusterStage
from vehiclust.collection import IngestSettings
from vehiclust.collection.stage import IngestStage
from vehiclust.compare import CompareSettings
from vehiclust.compare.stage import CompareStage
from vehiclust.describe import DescribeSettings
from vehiclust.describe.stage import DescribeStage
from vehiclust.outliers import OutlierSettings
from vehiclust.outliers.stage import OutlierStage
from vehiclust.progress import NullReporter, Reporter
from vehiclust.report.stage import ReportSettings, ReportStage
from vehiclust.run_descriptors import choose_descriptors, clustered_descriptors, current_descriptors
from vehiclust.runfolder import CLUSTERS, COLLECTION, COMPARISON, OUTLIERS, REPORT_HTML, REPORT_NOTEBOOK, RUNS, RunFolder
from vehiclust.stage import RunContext, Stage


@dataclass
class RunSettings:
    descriptors: list[str] | None = None  # None: imported ones, or the default image descriptors
    descriptor_files: list[Path] = field(default_factory=list)
    ingest: IngestSettings = field(default_factory=IngestSettings)
    describe: DescribeSettings = field(default_factory=DescribeSettings)
    cluster: ClusterSettings = field(default_factory=ClusterSettings)
    outliers: OutlierSettings = field(default_factory=OutlierSettings)
    compare: CompareSettings = field(default_factory=CompareSettings)  # mixtures, consensus, best rule
    image_checks: bool = True  # compute quality and vehicle type for the outlier checks
    report: ReportSettings = field(default_factory=ReportSettings)


@dataclass
class RunResult:
    run: RunFolder
    descriptors: list[str]

    @property
    def clusters_csv(self) -> Path:
        return CLUSTERS.path(self.run)

    @property
    def report_html(self) -> Path:
        return REPORT_HTML.path(self.run)

    @property
    def report_notebook(self) -> Path:
        return REPORT_NOTEBOOK.path(self.run)


def run_stages(stages: list[Stage], ctx: RunContext) -> list[str]:
    """Run ``stages`` in order, skipping each one that is current; record the key and seconds of
    each that ran. Returns the names of the stages that ran."""
    ran = []
    for stage in stages:
        key = stage.key(ctx)
        current = ctx.run.stage_is_current(stage.name, key, stage.outputs(ctx))
        if current and not stage.always_runs:
            ctx.reporter.message(f"{stage.name}: up to date")
            continue
        started = time.perf_counter()
        facts = stage.run(ctx)
        if not current:  # an always-running stage that was current keeps the record of its last real run
            ctx.run.record_stage(stage.name, key, time.perf_counter() - started, **facts)
        ran.append(stage.name)
    return ran


def analysis_stages(settings: RunSettings) -> list[Stage]:
    """Every stage after ingest, configured by ``settings``."""
    return [DescribeStage(settings.describe, settings.image_checks), ClusterStage(settings.cluster),
            CompareStage(settings.compare, settings.cluster), OutlierStage(settings.outliers),
            ReportStage(settings.report)]


def run_pipeline(input_path: Path | str, out: Path | str, settings: RunSettings | None = None,
                 reporter: Reporter | None = None) -> RunResult:
    settings = settings or RunSettings()
    ctx = RunContext(RunFolder(out), reporter=reporter or NullReporter(), input_path=Path(input_path))
    run_stages([IngestStage(settings.ingest, settings.descriptor_files)], ctx)
    ctx.descriptors = choose_descriptors(ctx.run, settings.descriptors)  # needs what the input brought
    run_stages(analysis_stages(settings), ctx)
    return RunResult(ctx.run, ctx.descriptors)


# -- one stage over a run folder (what each CLI command calls) -----------------------------------
def _context(folder: Path | str, descriptors: list[str], reporter: Reporter | None) -> RunContext:
    return RunContext(RunFolder.open(folder), descriptors, reporter or NullReporter())


def ingest_input(input_path: Path | str, out: Path | str, settings: IngestSettings | None = None,
                 descriptor_files: list[Path] = (), reporter: Reporter | None = None) -> pd.DataFrame:
    """Ingest ``input_path`` into the run folder ``out``; returns the collection table."""
    ctx = RunContext(RunFolder(out), reporter=reporter or NullReporter(), input_path=Path(input_path))
    run_stages([IngestStage(settings, descriptor_files)], ctx)
    return COLLECTION.load(ctx.run)


def describe_folder(folder: Path | str, requested: list[str] | None, settings: DescribeSettings | None = None,
                    reporter: Reporter | None = None, image_checks: bool = False) -> list[str]:
    """Compute the requested descriptors (default: as :func:`choose_descriptors`); returns their names."""
    run = RunFolder.open(folder)
    ctx = _context(folder, choose_descriptors(run, requested), reporter)
    run_stages([DescribeStage(settings, image_checks)], ctx)
    return ctx.descriptors


def cluster_folder(folder: Path | str, requested: list[str] | None, settings: ClusterSettings | None = None,
                   reporter: Reporter | None = None) -> pd.DataFrame:
    """Sweep the requested descriptors (default: every current one); returns runs.csv."""
    ctx = _context(folder, current_descriptors(RunFolder.open(folder), requested), reporter)
    run_stages([ClusterStage(settings)], ctx)
    return RUNS.load(ctx.run)


def compare_folder(folder: Path | str, cluster_settings: ClusterSettings | None = None,
                   settings: CompareSettings | None = None, reporter: Reporter | None = None) -> pd.DataFrame:
    """Compare the clustered descriptors and pick the best; rewrites the report when the run has
    one's inputs (outliers.csv). Returns comparison.csv."""
    ctx = _context(folder, clustered_descriptors(RunFolder.open(folder)), reporter)
    stages: list[Stage] = [CompareStage(settings, cluster_settings)]
    if OUTLIERS.exists(ctx.run):
        stages.append(ReportStage())
    run_stages(stages, ctx)
    return COMPARISON.load(ctx.run)


def outliers_folder(folder: Path | str, settings: OutlierSettings | None = None,
                    reporter: Reporter | None = None) -> pd.DataFrame:
    """Score the clustered descriptors' images; returns outliers.csv."""
    ctx = _context(folder, clustered_descriptors(RunFolder.open(folder)), reporter)
    run_stages([OutlierStage(settings)], ctx)
    return OUTLIERS.load(ctx.run)


def report_folder(folder: Path | str, settings: ReportSettings | None = None,
                  reporter: Reporter | None = None) -> RunFolder:
    ctx = _context(folder, [], reporter)
    run_stages([ReportStage(settings)], ctx)
    return ctx.run
