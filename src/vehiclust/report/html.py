"""``report.html``: one self-contained page (thumbnails and plots inlined) that opens from the
disk with no server and no internet."""

from __future__ import annotations

import base64
import io
import time
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from jinja2 import Environment, PackageLoader, select_autoescape

from vehiclust.cluster.sweep import clustering_path
from vehiclust.report.comparison_view import comparison_context
from vehiclust.report.deliverables import best_descriptor
from vehiclust.report.thumbnails import thumbnail_uri
from vehiclust.runfolder import RunFolder, write_text

TYPICAL_PER_CLUSTER = 10
BORDERLINE_PER_CLUSTER = 5
GALLERY_PER_REASON = 16
METADATA_COLUMNS = ("type", "color", "camera_id")


@dataclass
class ClusterView:
    cluster_id: int
    size: int
    share: float
    typical: list[dict] = field(default_factory=list)
    borderline: list[dict] = field(default_factory=list)
    metadata: list[str] = field(default_factory=list)


def render_report(run: RunFolder, table: pd.DataFrame, runs: pd.DataFrame, verdicts: pd.DataFrame,
                  clusters: pd.DataFrame) -> str:
    ingest = run.stage_record("ingest") or {}
    has_images = bool((table["location"] != "").any())
    best = best_descriptor(runs)
    context = {
        "generated": time.strftime("%Y-%m-%d %H:%M"),
        "ingest": ingest,
        "n_rows": len(table),
        "has_images": has_images,
        "n_unreadable": int(verdicts["outlier_reasons"].str.contains("unreadable").sum()),
        "n_outliers": int(verdicts["is_outlier"].sum()),
        "best": runs[runs["best_overall"]].iloc[0].to_dict(),
        "clusters": _cluster_views(run, table, best, has_images),
        "descriptor_sections": _descriptor_sections(runs),
        "runs_html": _runs_table(runs),
        "galleries": _galleries(table, verdicts, has_images),
        "timings": run.stage_timings(),
        "external": _external_scores(run),
        "comparison": comparison_context(run),
    }
    env = Environment(loader=PackageLoader("vehiclust.report", "templates"),
                      autoescape=select_autoescape(["html"]))
    return env.get_template("report.html").render(**context)


def write_report(run: RunFolder, table: pd.DataFrame, runs: pd.DataFrame, verdicts: pd.DataFrame,
                 clusters: pd.DataFrame) -> None:
    write_text(run.path("report.html"), render_report(run, table, runs, verdicts, clusters))


def _item(table: pd.DataFrame, row: int, has_images: bool, caption: str = "") -> dict:
    location = table["location"].iat[row] if has_images else ""
    return {"src": thumbnail_uri(location), "path": table["path"].iat[row], "caption": caption}


def _cluster_views(run: RunFolder, table: pd.DataFrame, name: str, has_images: bool) -> list[ClusterView]:
    selected = np.load(clustering_path(run, name))
    labels, distance = selected["labels"], selected["distance"]
    valid = labels >= 0
    views = []
    for cluster_id in range(int(labels.max()) + 1 if valid.any() else 0):
        members = np.flatnonzero(labels == cluster_id)
        by_distance = members[np.argsort(distance[members], kind="stable")]
        view = ClusterView(cluster_id, len(members), len(members) / max(valid.sum(), 1))
        view.typical = [_item(table, r, has_images) for r in by_distance[:TYPICAL_PER_CLUSTER]]
        view.borderline = [_item(table, r, has_images) for r in by_distance[::-1][:BORDERLINE_PER_CLUSTER]]
        view.metadata = _metadata_summary(table, members)
        views.append(view)
    return views


def _metadata_summary(table: pd.DataFrame, members: np.ndarray) -> list[str]:
    """"type: SUV 61% (vs 22% overall)" for each metadata column the collection has."""
    lines = []
    for column in METADATA_COLUMNS:
        if column not in table.columns:
            continue
        inside = table[column].iloc[members].astype(str).value_counts(normalize=True)
        overall = table[column].astype(str).value_counts(normalize=True)
        top = [f"{value} {share:.0%} (vs {overall.get(value, 0):.0%} overall)"
               for value, share in inside.head(2).items() if value]
        if top:
            lines.append(f"{column}: " + ", ".join(top))
    return lines


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
    for name, title in (("external_scores_clusters.csv", "Clusterings against the ground truth (clean images)"),
                        ("external_scores_outliers.csv", "Outlier verdicts against the planted outliers")):
        path = run.path(name)
        if path.exists():
            frame = pd.read_csv(path)
            tables.append({"title": title, "html": frame.to_html(index=False, float_format=lambda v: f"{v:.3f}",
                                                                 border=0, na_rep="")})
    return tables


def _galleries(table: pd.DataFrame, verdicts: pd.DataFrame, has_images: bool) -> list[dict]:
    galleries = []
    reasons = verdicts["outlier_reasons"].str.split(";").explode()
    for reason, count in reasons[reasons != ""].value_counts().items():
        rows = verdicts.index[verdicts["outlier_reasons"].str.split(";").map(lambda r: reason in r)]
        top = verdicts.loc[rows].sort_values("outlier_score", ascending=False).head(GALLERY_PER_REASON)
        items = [_item(table, int(r), has_images,
                       f"{verdicts.at[r, 'outlier_score']:.2f} {verdicts.at[r, 'error']}".strip())
                 for r in top.index]
        galleries.append({"reason": reason, "count": int(count), "images": items})
    return galleries
