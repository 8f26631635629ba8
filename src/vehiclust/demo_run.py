"""``vehiclust demo``: build (or reuse) the demo collection, run the pipeline, score it against
the demo's ground truth and print those scores: the project's first quality yardstick."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd

from vehiclust.cache import cache_root
from vehiclust.cluster import ClusterSettings
from vehiclust.compare import CompareSettings
from vehiclust.evaluate import clustering_scores, outlier_scores
from vehiclust.pipeline import RunResult, RunSettings, report_folder, run_pipeline
from vehiclust.progress import NullReporter, Reporter
from vehiclust.report.stage import ReportSettings
from vehiclust.runfolder import CONTACT_SHEET, EXTERNAL_CLUSTER_SCORES, EXTERNAL_OUTLIER_SCORES


# every descriptor together, and the informed pair: the descriptors that capture type and colour
# best on held-out vehicles (efficientnet_lite0 + vehicle_color on the default demo)
DEMO_MIXES = ("all", "auto")


def parse_size(size: str | int) -> str | int:
    text = str(size)
    return int(text) if text.isdigit() else text


def run_demo(out: Path | str, size: str | int = "default", seed: int = 0,
             cluster: ClusterSettings | None = None, reporter: Reporter | None = None,
             case_bundle: Path | None = None, compare: CompareSettings | None = None,
             report_settings: ReportSettings | None = None) -> RunResult:
    """Build the demo, run everything on it, score against its ground truth; optionally also
    write it as a case bundle (images_paths.csv + descriptor pickles) at ``case_bundle``."""
    from vehiclust.demo import build_demo, load_ground_truth, write_case_bundle, write_contact_sheet

    reporter = reporter or NullReporter()
    report_settings = report_settings or ReportSettings()
    size = parse_size(size)
    collection_dir = cache_root() / "demo" / f"{size}-seed{seed}"
    reporter.message(f"demo collection: {collection_dir}")
    demo = build_demo(collection_dir, size=size, seed=seed)
    # the pipeline's report pass writes only clusters.csv, which the external scores are measured
    # on; the one full pass (maps, report.html, notebook) follows and shows them
    settings = RunSettings(cluster=cluster or ClusterSettings(),
                           compare=compare or CompareSettings(mixes=DEMO_MIXES),
                           report=replace(report_settings, deliverables_only=True))
    result = run_pipeline(demo.root, out, settings, reporter)
    images = sorted(Path(demo.root).rglob("*.jpg"))
    write_contact_sheet(images, CONTACT_SHEET.path(result.run), n=64, seed=seed)
    truth = load_ground_truth(collection_dir)
    clusters = pd.read_csv(result.clusters_csv, keep_default_na=False)
    cluster_table = clustering_scores(clusters, truth)
    outlier_table = outlier_scores(clusters, truth)
    EXTERNAL_CLUSTER_SCORES.save(result.run, cluster_table)
    EXTERNAL_OUTLIER_SCORES.save(result.run, outlier_table)
    reporter.message("External scores against the demo's ground truth (clean images):\n"
                     + cluster_table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    reporter.message("Outlier verdicts against the planted outliers:\n"
                     + outlier_table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    report_folder(result.run.root, report_settings, reporter)  # again, now that the external scores exist
    if case_bundle is not None:
        write_case_bundle(result.run, demo.root, case_bundle, result.descriptors)
        reporter.message(f"case bundle: {case_bundle}")
    return result
