"""The whole pipeline over one run folder: ingest -> describe -> cluster -> compare -> outliers -> report.

:func:`run_stages` runs :class:`~vehiclust.stage.Stage` objects in order and skips each one that
is current (same key, outputs present), so re-running after an interruption, or after changing
only a later stage's settings, redoes only what is needed. The functions below it are what each
command of the CLI calls: one stage over an existing run folder.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from vehiclust import ownership
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
from vehiclust.thirdparty import configure_process


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
    force: bool = False  # accept a non-empty --out vehiclust did not make (its files stay untouched)


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
        outputs = stage.outputs(ctx)
        current = ctx.run.stage_is_current(stage.name, key, outputs) and stage.outputs_intact(ctx, outputs)
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
    configure_process()  # matplotlib's, IPython's and Jupyter's state under the user cache
    ctx = RunContext(RunFolder(out), reporter=reporter or NullReporter(), input_path=Path(input_path))
    with _claimed(ctx, input_path, settings.force):
        run_stages([IngestStage(settings.ingest, settings.descriptor_files, settings.force)], ctx)
        ctx.descriptors = choose_descriptors(ctx.run, settings.descriptors)  # needs what the input brought
        run_stages(analysis_stages(settings), ctx)
    return RunResult(ctx.run, ctx.descriptors)


@contextlib.contextmanager
def _claimed(ctx: RunContext, input_path: Path | str | None, force: bool) -> Iterator[None]:
    """The run folder marked as vehiclust's and locked while the stages write it; says when the
    last run on it was killed."""
    with ownership.claimed(ctx.run.root, input_path, force):
        note = ownership.interrupted_note(ctx.run.root)
        if note:
            ctx.reporter.message(note)
        yield


# -- one stage over a run folder (what each CLI command calls) -----------------------------------
@contextlib.contextmanager
def claimed_folder(folder: Path | str, reporter: Reporter | None = None) -> Iterator[RunFolder]:
    """An existing run folder, locked while a command writes it."""
    ctx = RunContext(RunFolder.open(folder), reporter=reporter or NullReporter())
    with _claimed(ctx, None, force=True):
        yield ctx.run


@contextlib.contextmanager
def _claimed_context(folder: Path | str, descriptors: Callable[[RunFolder], list[str]] | list[str],
                     reporter: Reporter | None) -> Iterator[RunContext]:
    """:func:`claimed_folder` as the stages' context, with the descriptors they work on."""
    with claimed_folder(folder, reporter) as run:
        yield RunContext(run, descriptors(run) if callable(descriptors) else descriptors,
                         reporter or NullReporter())


def ingest_input(input_path: Path | str, out: Path | str, settings: IngestSettings | None = None,
                 descriptor_files: list[Path] = (), reporter: Reporter | None = None,
                 force: bool = False) -> pd.DataFrame:
    """Ingest ``input_path`` into the run folder ``out``; returns the collection table."""
    ctx = RunContext(RunFolder(out), reporter=reporter or NullReporter(), input_path=Path(input_path))
    with _claimed(ctx, input_path, force):
        run_stages([IngestStage(settings, descriptor_files, force)], ctx)
    return COLLECTION.load(ctx.run)


def describe_folder(folder: Path | str, requested: list[str] | None, settings: DescribeSettings | None = None,
                    reporter: Reporter | None = None, image_checks: bool = False) -> list[str]:
    """Compute the requested descriptors (default: as :func:`choose_descriptors`); returns their names."""
    with _claimed_context(folder, lambda run: choose_descriptors(run, requested), reporter) as ctx:
        run_stages([DescribeStage(settings, image_checks)], ctx)
    return ctx.descriptors


def cluster_folder(folder: Path | str, requested: list[str] | None, settings: ClusterSettings | None = None,
                   reporter: Reporter | None = None) -> pd.DataFrame:
    """Sweep the requested descriptors (default: every current one); returns runs.csv."""
    with _claimed_context(folder, lambda run: current_descriptors(run, requested), reporter) as ctx:
        run_stages([ClusterStage(settings)], ctx)
    return RUNS.load(ctx.run)


def compare_folder(folder: Path | str, cluster_settings: ClusterSettings | None = None,
                   settings: CompareSettings | None = None, reporter: Reporter | None = None) -> pd.DataFrame:
    """Compare the clustered descriptors and pick the best; rewrites the report when the run has
    one's inputs (outliers.csv). Returns comparison.csv."""
    with _claimed_context(folder, clustered_descriptors, reporter) as ctx:
        stages: list[Stage] = [CompareStage(settings, cluster_settings)]
        if OUTLIERS.exists(ctx.run):
            stages.append(ReportStage())
        run_stages(stages, ctx)
    return COMPARISON.load(ctx.run)


def outliers_folder(folder: Path | str, settings: OutlierSettings | None = None,
                    reporter: Reporter | None = None) -> pd.DataFrame:
    """Score the clustered descriptors' images; returns outliers.csv."""
    with _claimed_context(folder, clustered_descriptors, reporter) as ctx:
        run_stages([OutlierStage(settings)], ctx)
    return OUTLIERS.load(ctx.run)


def report_folder(folder: Path | str, settings: ReportSettings | None = None,
                  reporter: Reporter | None = None) -> RunFolder:
    with _claimed_context(folder, [], reporter) as ctx:
        run_stages([ReportStage(settings)], ctx)
    return ctx.run
