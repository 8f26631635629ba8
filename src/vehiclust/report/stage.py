"""The report stage: clusters.csv and report.html from everything before it."""

from __future__ import annotations

import time

import pandas as pd

from vehiclust.progress import NullReporter, Reporter
from vehiclust.report.deliverables import write_clusters_csv
from vehiclust.report.html import write_report
from vehiclust.runfolder import RunFolder
from vehiclust.errors import VehiclustError


def report(run: RunFolder, reporter: Reporter | None = None) -> None:
    reporter = reporter or NullReporter()
    for needed in ("runs.csv", "outliers.csv"):
        if not run.path(needed).exists():
            raise VehiclustError(f"{run.path(needed)} is missing; run `vehiclust cluster` and "
                                 f"`vehiclust outliers` first")
    started = time.perf_counter()
    table = run.load_collection()
    runs = pd.read_csv(run.path("runs.csv"))
    runs["reason"] = runs["reason"].fillna("")
    verdicts = pd.read_csv(run.path("outliers.csv"), keep_default_na=False)
    with reporter.task("Writing clusters.csv and report.html", 2) as task:
        clusters = write_clusters_csv(run, table, runs, verdicts)
        task.advance()
        write_report(run, table, runs, verdicts, clusters)
        task.advance()
    run.record_stage("report", "always", time.perf_counter() - started)
