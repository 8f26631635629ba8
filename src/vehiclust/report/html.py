"""``report.html``: a page that opens from the disk with no server and no internet. Montages,
plots and the map's data are inlined; the map's hover thumbnails are read lazily from the sheets
in the ``thumbs/`` folder beside the page (the report is "the page plus its thumbnail folder")."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape

from vehiclust.report.comparison_view import comparison_context
from vehiclust.report.selection_view import selection_context
from vehiclust.report.descriptions import RULE
from vehiclust.report.mapview import script_json
from vehiclust.report.thumbnails import cached_uri
from vehiclust.runfolder import EXTERNAL_CLUSTER_SCORES, EXTERNAL_OUTLIER_SCORES, REPORT_HTML, RunFolder

SECTION_PARTS = ("typical", "random", "borderline")
PART_TITLES = {"typical": "most typical (closest to the centre)", "random": "a random sample",
               "borderline": "borderline (nearly as close to another cluster)"}


@dataclass
class ReportData:
    """What the report stage prepared for the page (all rows are collection rows)."""
    descriptions: pd.DataFrame
    montages: dict[int, dict[str, np.ndarray]]
    galleries: dict[str, np.ndarray]
    map_payload: dict | None
    map_notes: list[str] = field(default_factory=list)
    part_seconds: dict[str, float] = field(default_factory=dict)


def render_report(run: RunFolder, table: pd.DataFrame, runs: pd.DataFrame, verdicts: pd.DataFrame,
                  data: ReportData) -> str:
    from plotly.offline import get_plotlyjs

    from vehiclust.executor.base import executor_lines

    ingest = run.stage_record("ingest") or {}
    has_images = bool((table["location"] != "").any())
    context = {
        "generated": time.strftime("%Y-%m-%d %H:%M"),
        "ingest": ingest,
        "n_rows": len(table),
        "has_images": has_images,
        "n_unreadable": int(verdicts["outlier_reasons"].str.contains("unreadable").sum()),
        "n_outliers": int(verdicts["is_outlier"].sum()),
        "best": runs[runs["best_overall"]].iloc[0].to_dict(),
        "clusters": _cluster_views(run, table, data, has_images),
        "descriptor_sections": _descriptor_sections(runs),
        "runs_html": _runs_table(runs),
        "galleries": _galleries(run, table, verdicts, data.galleries, has_images),
        "timings": run.stage_timings(),
        "executors": executor_lines(run),
        "part_seconds": data.part_seconds,
        "external": _external_scores(run),
        "map_json": script_json(data.map_payload) if data.map_payload else "",
        "map_notes": data.map_notes,
        "plotly_js": get_plotlyjs(),  # the map and the sweeps' charts
        "comparison": comparison_context(run),
        "selection": selection_context(run),
        "description_rule": RULE,
    }
    env = Environment(loader=PackageLoader("vehiclust.report", "templates"),
                      autoescape=select_autoescape(["html"]))
    return env.get_template("report.html").render(**context)


def write_report(run: RunFolder, table: pd.DataFrame, runs: pd.DataFrame, verdicts: pd.DataFrame,
                 data: ReportData) -> None:
    REPORT_HTML.save(run, render_report(run, table, runs, verdicts, data))


def _item(run: RunFolder, table: pd.DataFrame, row: int, has_images: bool, caption: str = "") -> dict:
    has_image = has_images and bool(table["location"].iat[row])
    return {"src": cached_uri(run, row, has_image), "path": table["path"].iat[row], "caption": caption,
            "row": int(row)}


def _cluster_views(run: RunFolder, table: pd.DataFrame, data: ReportData, has_images: bool) -> list[dict]:
    views = []
    for record in data.descriptions.to_dict("records"):
        rows = data.montages.get(int(record["cluster"]), {})
        parts = [{"title": PART_TITLES[part], "images": [_item(run, table, int(r), has_images) for r in rows[part]]}
                 for part in SECTION_PARTS if part in rows]
        views.append({**record, "parts": parts})
    return views


def _descriptor_sections(runs: pd.DataFrame) -> list[dict]:
    sections = []
    for name, group in runs.groupby("descriptor", sort=False):
        chosen = group[group["selected"]].iloc[0]
        sections.append({"name": name, "chosen": chosen.to_dict(), "metrics": script_json(metric_curves(group))})
    return sections


METRIC_COLUMNS = ("silhouette", "davies_bouldin", "stability", "score")


def metric_curves(group: pd.DataFrame) -> dict:
    """What the page's chart of one descriptor's sweep draws: per (preprocessing, algorithm)
    family, each metric against the number of clusters, and the selected run (NaN as null)."""
    def values(series: pd.Series) -> list:
        return [None if not np.isfinite(v) else round(float(v), 5) for v in series.astype(float)]

    chosen = group[group["selected"]].iloc[0]
    families = []
    for (prep, algo), family in group.groupby(["preprocessing", "algorithm"], sort=False):
        family = family.sort_values("n_clusters")
        families.append({"label": f"{algo} / {prep}", "k": family["n_clusters"].astype(int).tolist(),
                         "params": family["params"].astype(str).tolist(),
                         **{column: values(family[column]) for column in METRIC_COLUMNS}})
    return {"columns": list(METRIC_COLUMNS), "families": families,
            "chosen": {"k": int(chosen["n_clusters"]), **dict(zip(METRIC_COLUMNS, values(chosen[list(METRIC_COLUMNS)])))}}


def _runs_table(runs: pd.DataFrame) -> str:
    columns = [c for c in ("descriptor", "preprocessing", "algorithm", "params", "n_clusters",
                           "calinski_harabasz", "davies_bouldin", "silhouette", "stability", "noise_share",
                           "min_cluster_share", "score", "sampled", "selected", "best_overall")
               if c in runs.columns]
    return runs[columns].to_html(index=False, float_format=lambda v: f"{v:.3f}", classes="runs", border=0)


def _external_scores(run: RunFolder) -> list[dict]:
    """Scores against a ground truth, when one was available (the demo writes them)."""
    tables = []
    for artifact, title in ((EXTERNAL_CLUSTER_SCORES, "Clusterings against the ground truth (clean images)"),
                            (EXTERNAL_OUTLIER_SCORES, "Outlier verdicts against the planted outliers")):
        if artifact.exists(run):
            frame = artifact.load(run)
            tables.append({"title": title, "html": frame.to_html(index=False, float_format=lambda v: f"{v:.3f}",
                                                                 border=0, na_rep="")})
    return tables


def _galleries(run: RunFolder, table: pd.DataFrame, verdicts: pd.DataFrame,
               galleries: dict[str, np.ndarray], has_images: bool) -> list[dict]:
    out = []
    reasons = verdicts["outlier_reasons"].astype(str)
    for reason, rows in galleries.items():
        count = int(reasons.str.split(";").map(lambda r: reason in r).sum())
        items = [_item(run, table, int(r), has_images,
                       f"{verdicts['outlier_score'].iat[r]:.2f} {verdicts['error'].iat[r]}".strip())
                 for r in rows]
        out.append({"reason": reason, "count": count, "share": count / max(len(verdicts), 1), "images": items})
    return out
