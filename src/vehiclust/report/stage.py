"""The report stage: clusters.csv, cluster descriptions, maps, thumbnails, report.html and the
executed report.ipynb, from everything before it.

The parts that cost time reuse what an earlier report run stored (maps by fingerprint,
thumbnails by file and by sheet), so re-running the report after a change of a later setting is quick.
"""

from __future__ import annotations

import contextlib
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from vehiclust.compare.best import all_runs, best_in
from vehiclust.progress import NullReporter, Reporter
from vehiclust.report.deliverables import write_clusters_csv
from vehiclust.report.descriptions import attributes, describe_clusters
from vehiclust.report.html import ReportData, write_report
from vehiclust.report.maps import MapSettings, compute_maps, load_map
from vehiclust.report.mapview import MapViewSettings, display_rows, map_payload
from vehiclust.report.montages import cluster_montages, reason_galleries
from vehiclust.report.thumbnails import ensure_thumbnails
from vehiclust.report.tilesheets import ensure_map_tiles
from vehiclust.runfolder import (CLUSTERING, CLUSTERS, DESCRIPTIONS, EVIDENCE, MAP_FIGURE, OUTLIERS, REPORT_HTML, RUNS,
                                RunFolder)
from vehiclust.stage import RunContext, Stage


@dataclass(frozen=True)
class ReportSettings:
    maps: MapSettings = field(default_factory=MapSettings)
    map_view: MapViewSettings = field(default_factory=MapViewSettings)
    max_thumbnails: int = 100_000  # hover thumbnails for at most this many map points
    notebook: bool = True
    execute_notebook: bool = True
    threads: int = 4
    # clusters.csv and the cluster descriptions only, no maps, thumbnails, report.html or notebook:
    # what `vehiclust demo` scores against its ground truth before the one full report pass
    deliverables_only: bool = False


def report(run: RunFolder, reporter: Reporter | None = None, settings: ReportSettings | None = None) -> None:
    reporter = reporter or NullReporter()
    settings = settings or ReportSettings()
    for needed in (RUNS, OUTLIERS):
        needed.require(run)
    started = time.perf_counter()
    seconds: dict[str, float] = {}
    table = run.load_collection()
    runs = all_runs(run)  # runs.csv, the mixtures' runs and best.json's choice
    verdicts = OUTLIERS.load(run)
    best = best_in(runs)
    best_clustering = CLUSTERING.load(run, best)
    if settings.deliverables_only:
        _deliverables(run, table, runs, verdicts, best, best_clustering.labels, seconds)
        run.record_stage("report", "always", time.perf_counter() - started, parts=seconds,
                         notebook="not written (deliverables only)")
        return
    with reporter.task("Writing the report", 6) as task:
        frame, descriptions = _deliverables(run, table, runs, verdicts, best, best_clustering.labels, seconds)
        task.advance(2)
        with _timed(seconds, "maps"):
            names = [n for n in dict.fromkeys(runs["descriptor"]) if n in run.descriptor_names()]
            map_meta = compute_maps(run, names, settings.maps, reporter.message)
        task.advance()
        with _timed(seconds, "montages"):
            montages = cluster_montages(run, best, best_clustering.labels, best_clustering.distance)
            galleries = reason_galleries(verdicts)
            ensure_thumbnails(run, table, _picture_rows(montages, galleries), settings.threads)
        with _timed(seconds, "static maps"):
            _static_maps(run, runs, map_meta)
        with ThreadPoolExecutor(1, thread_name_prefix="vehiclust-notebook") as background:
            # the montage pictures the notebook shows are written by now (a map tile it may ask
            # for is read in one open of its sheet, old or new, never half); its kernel is a
            # process of its own, so this one only waits on it and makes the page meanwhile
            notebook = _start_notebook(background, run, settings) if settings.notebook else None
            with _timed(seconds, "thumbnails"):
                tiles = _map_tiles(run, table, settings)
            task.advance()
            with _timed(seconds, "map data"):
                payload = _map_payload(run, table, frame, runs, verdicts, map_meta, tiles, best, settings) if map_meta else None
            notes = _map_notes(map_meta, payload, tiles, settings)
            with _timed(seconds, "report.html"):
                data = ReportData(descriptions, montages, galleries, payload, notes, seconds)
                write_report(run, table, runs, verdicts, data)
            task.advance()
            notebook_status = "not written (--no-notebook)"
            if notebook is not None:
                notebook_status, seconds["report.ipynb"] = notebook.result()
                reporter.message(f"notebook: {notebook_status}")
        task.advance()
    run.record_stage("report", "always", time.perf_counter() - started, parts=seconds, notebook=notebook_status)


def _start_notebook(background: ThreadPoolExecutor, run: RunFolder, settings: ReportSettings):
    from vehiclust.report.notebook import import_client

    import_client()
    return background.submit(_notebook, run, settings)


def _notebook(run: RunFolder, settings: ReportSettings) -> tuple[str, float]:
    """report.ipynb written (and executed when asked): what happened, and the seconds it took."""
    from vehiclust.report.notebook import write_notebook

    started = time.perf_counter()
    status = write_notebook(run, execute=settings.execute_notebook)
    return status, round(time.perf_counter() - started, 2)


@contextlib.contextmanager
def _timed(seconds: dict[str, float], part: str):
    started = time.perf_counter()
    yield
    seconds[part] = round(time.perf_counter() - started, 2)


def _deliverables(run: RunFolder, table: pd.DataFrame, runs: pd.DataFrame, verdicts: pd.DataFrame, best: str,
                  labels: np.ndarray, seconds: dict[str, float]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The cluster descriptions and clusters.csv; returns the attribute frame and the descriptions."""
    with _timed(seconds, "descriptions"):
        frame = attributes(run, table)
        descriptions = _descriptions(run, frame, labels)
    with _timed(seconds, "clusters.csv"):
        write_clusters_csv(run, table, runs, verdicts, descriptions, best)
    return frame, descriptions


def _descriptions(run: RunFolder, frame: pd.DataFrame, labels: np.ndarray) -> pd.DataFrame:
    descriptions, evidence = describe_clusters(frame, labels)
    DESCRIPTIONS.save(run, descriptions)
    EVIDENCE.save(run, evidence)
    return descriptions


def _picture_rows(montages: dict, galleries: dict) -> np.ndarray:
    """The rows of every montage and gallery (the pictures the page and the notebook show)."""
    wanted = [rows for parts in montages.values() for rows in parts.values()] + list(galleries.values())
    return np.concatenate(wanted).astype(np.int64) if wanted else np.zeros(0, np.int64)


def _map_tiles(run: RunFolder, table: pd.DataFrame, settings: ReportSettings) -> np.ndarray:
    """Hover thumbnails for up to ``max_thumbnails`` map points; returns each row's cell in its
    sheet (-1: none)."""
    has_image = (table["location"] != "").to_numpy()
    wanted = display_rows(has_image, settings.max_thumbnails, settings.map_view.seed)
    return ensure_map_tiles(run, table, wanted, settings.threads)


def _colourings(run: RunFolder, frame: pd.DataFrame, runs: pd.DataFrame, verdicts: pd.DataFrame,
                best: str) -> dict[str, pd.Series]:
    names = list(dict.fromkeys(runs["descriptor"]))
    colourings = {f"cluster ({best}, best)": _cluster_series(run, best)}
    for name in names:
        if name != best:
            colourings[f"cluster ({name})"] = _cluster_series(run, name)
    colourings["outlier reason"] = verdicts["outlier_reasons"].astype(str).str.split(";").str[0].replace("", "ok")
    for column in ("predicted_type", "predicted_color", "type_label", "color_label", "day_night", "camera"):
        if column in frame.columns:
            colourings[column.replace("_", " ")] = frame[column]
    return colourings


def _cluster_series(run: RunFolder, name: str) -> pd.Series:
    labels = CLUSTERING.load(run, name).labels
    return pd.Series(np.where(labels >= 0, labels.astype(str), "noise / invalid"))


def _map_payload(run, table, frame, runs, verdicts, map_meta, tiles, best, settings) -> dict:
    maps = {name: {d: load_map(run, name, d) for d in (2, 3)} for name in map_meta}
    first = best if best in maps else next(iter(maps))
    return map_payload({first: maps.pop(first), **maps}, _colourings(run, frame, runs, verdicts, best),
                       tiles, table["path"], first, settings.map_view)


def _static_maps(run: RunFolder, runs: pd.DataFrame, map_meta: dict) -> None:
    """maps/<descriptor>_2d.png coloured by that descriptor's clustering (for quick looks)."""
    from vehiclust.report.figures import plot_map, save_figure

    for name in map_meta:
        labels = CLUSTERING.load(run, name).labels
        figure = plot_map(load_map(run, name, 2), labels, title=f"{name}: its selected clustering")
        save_figure(figure, MAP_FIGURE.path(run, name))


def _map_notes(map_meta: dict, payload: dict | None, tiles: np.ndarray, settings: ReportSettings) -> list[str]:
    if not map_meta:
        return ["No map: no descriptor of this run could be embedded."]
    meta = next(iter(map_meta.values()))
    notes = [f"{meta['method'].upper()} of each descriptor (standardised, PCA to {meta['pca_dims']} dimensions "
             f"first), fitted on {meta['fit_rows']:,} of {meta['n_rows']:,} rows"
             + (f"; the other rows were placed by {meta.get('placement', 'transform')}." if meta["transformed"] else ".")]
    if payload:
        views = payload["views"].values()
        n2, n3 = max(v["n"] for v in views), max(v["n3"] for v in views)
        notes.append(f"2D view: {n2:,} points (WebGL); 3D view: {n3:,} points"
                     + (" (a random sample)." if n3 < n2 else "."))
    notes.append(f"Hover thumbnails: {int((tiles >= 0).sum()):,} images have one, read from the thumbs/ folder "
                 f"beside this page (keep them together when moving the report).")
    return notes


# -- the stage class (core) ----------------------------------------------------------------------
class ReportStage(Stage):
    """Always runs: its costly parts (maps, thumbnails) reuse what an earlier report stored."""

    name = "report"
    always_runs = True

    def __init__(self, settings: ReportSettings | None = None):
        super().__init__(settings or ReportSettings())

    def key(self, ctx: RunContext) -> str:
        return "always"

    def outputs(self, ctx: RunContext) -> list[Path]:
        return [CLUSTERS.path(ctx.run), REPORT_HTML.path(ctx.run)]

    def run(self, ctx: RunContext) -> dict:
        report(ctx.run, ctx.reporter, self.settings)
        return ctx.run.stage_facts(self.name)
