"""The whole pipeline over one run folder: ingest -> describe -> cluster -> compare -> outliers -> report.

Each stage skips itself when its inputs and settings did not change, so re-running after an
interruption, or after changing only a later stage's settings, redoes only what is needed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from vehiclust.cluster import ClusterSettings, cluster
from vehiclust.collection import IngestSettings, ingest
from vehiclust.compare import CompareSettings, compare
from vehiclust import ownership
from vehiclust.describe import (DescribeSettings, default_descriptors, describe, descriptor_key, is_current,
                                never_clustered, rows_key, support_descriptors)
from vehiclust.errors import VehiclustError
from vehiclust.outliers import OutlierSettings, outliers
from vehiclust.progress import NullReporter, Reporter
from vehiclust.report import report
from vehiclust.report.stage import ReportSettings
from vehiclust.runfolder import RunFolder
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
        return self.run.path("clusters.csv")

    @property
    def report_html(self) -> Path:
        return self.run.path("report.html")

    @property
    def report_notebook(self) -> Path:
        return self.run.path("report.ipynb")


def imported_descriptors(run: RunFolder) -> list[str]:
    """Descriptors the current collection brought with it (from the ingest record)."""
    return list((run.stage_record("ingest") or {}).get("descriptors", []))


def choose_descriptors(run: RunFolder, requested: list[str] | None) -> list[str]:
    """What to compute: the user's list; else what the input brought; else the defaults."""
    if requested:
        return list(dict.fromkeys(requested))
    brought = imported_descriptors(run)
    if brought:
        return brought
    return list(default_descriptors())


def describe_missing(run: RunFolder, names: list[str], settings: DescribeSettings,
                     reporter: Reporter, image_checks: bool = True) -> None:
    """Extract the requested descriptors that the input did not bring, plus the ones the
    outlier checks read (quality, vehicle type) when the collection has images."""
    brought = set(imported_descriptors(run))
    to_extract = [n for n in names if n not in brought]
    if image_checks and (run.load_collection()["location"] != "").any():
        to_extract += [n for n in support_descriptors() if n not in to_extract and n not in brought]
    if to_extract:
        describe(run, to_extract, settings, reporter)


def current_descriptors(run: RunFolder, requested: list[str] | None) -> list[str]:
    """Descriptors of this run folder that match its current collection."""
    brought = imported_descriptors(run)
    if requested:
        names = requested
    else:
        table = run.load_collection()
        rows = rows_key(table)
        stored = run.descriptor_names()
        metas = {n: run.descriptor_meta(n) for n in stored}
        extracted = [n for n in stored
                     if n not in brought and n not in never_clustered() and _safe_current(run, n, table, rows)]
        heads = [n for n in stored
                 if metas[n].get("kind") == "head" and metas[n].get("backbone") in brought + extracted]
        names = brought + extracted + heads
    missing = [n for n in names if n not in run.descriptor_names()]
    if missing:
        raise VehiclustError(f"{run.root}: descriptors {', '.join(missing)} are not computed yet; "
                             f"run `vehiclust describe {run.root} --descriptors {','.join(missing)}`")
    return names


def _safe_current(run: RunFolder, name: str, table, rows: str) -> bool:
    try:
        return is_current(run, name, descriptor_key(name, table, rows))
    except VehiclustError:  # a descriptor from an older registry: ignore it
        return False


def run_pipeline(input_path: Path | str, out: Path | str, settings: RunSettings | None = None,
                 reporter: Reporter | None = None) -> RunResult:
    settings = settings or RunSettings()
    reporter = reporter or NullReporter()
    run = RunFolder(out)
    configure_process()  # matplotlib's, IPython's and Jupyter's state under the user cache
    with ownership.claimed(out, input_path, settings.force):  # marked as vehiclust's, and locked
        return _run_stages(input_path, run, settings, reporter)


def _run_stages(input_path: Path | str, run: RunFolder, settings: RunSettings, reporter: Reporter) -> RunResult:
    ingest(input_path, run, settings.descriptor_files, settings.ingest, reporter)
    names = choose_descriptors(run, settings.descriptors)
    describe_missing(run, names, settings.describe, reporter, settings.image_checks)
    cluster(run, names, settings.cluster, reporter)
    compare(run, names, settings.cluster, settings.compare, reporter)
    outliers(run, names, reporter, settings.outliers)
    report(run, reporter, settings.report)
    return RunResult(run, names)
