"""``report.html``: a page that opens from the disk with no server and no internet. Montages,
plots and the map's data are inlined; the map's hover thumbnails are read lazily from the sheets
in the ``thumbs/`` folder beside the page (the report is "the page plus its thumbnail folder")."""

from __future__ import annotations

import base64
import io
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
        "plotly_js": get_plotlyjs() if data.map_payload else "",
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
        sections.append({"name": name, "chosen": chosen.to_dict(), "plot": _metric_plot(group, name)})
    return sections


def _metric_plot(group: pd.DataFrame, name: str) -> str:
    """One line per (preprocessing, algorithm) family against the number of clusters, for
    silhouette, Davies-Bouldin, stability and the selection score; the selected run circled."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chosen = group[group["selected"]].iloc[0]
    columns = ("silhouette", "davies_bouldin", "stability", "score")
    fig, axes = plt.subplots(1, 4, figsize=(13, 3.4))
    for (prep, algo), family in group.groupby(["preprocessing", "algorithm"], sort=False):
        family = family.sort_values("n_clusters")
        for ax, column in zip(axes, columns):
            ax.plot(family["n_clusters"], family[column], marker="o", ms=2, lw=1, label=f"{algo} / {prep}")
    for ax, column in zip(axes, columns):
        ax.scatter([chosen["n_clusters"]], [chosen[column]], s=70, facecolors="none",
                   edgecolors="tab:red", zorder=5)
        ax.set_title(column.replace("_", " "), fontsize=9)
        ax.set_xlabel("clusters", fontsize=8)
        ax.tick_params(labelsize=7)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=min(len(labels), 4), fontsize=7, frameon=False)
    fig.suptitle(name, fontsize=9)
    fig.tight_layout(rect=(0, 0.06 * (1 + (len(labels) - 1) // 4), 1, 1))
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


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
