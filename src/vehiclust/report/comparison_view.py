"""The report's comparison section: one context value, ``comparison``, for ``_comparison.html``.

Built from the compare stage's files (comparison.csv, agreement.csv, attributes.csv,
compare.json, clusterings/*.npz); None when the run has no comparison.
"""

from __future__ import annotations

import base64
import io

import numpy as np
import pandas as pd

from vehiclust.compare.agreement import agreement_matrix, contingency_of, most_interesting_pairs
from vehiclust.compare.best import BestChoice
from vehiclust.rules import JOINT
from vehiclust.runfolder import AGREEMENT, ATTRIBUTES, COMPARE_INFO, COMPARISON, RunFolder

TABLE_COLUMNS = ("name", "kind", "n_clusters", "davies_bouldin_common", "silhouette_common",
                 "calinski_harabasz_common", "stability", "noise_share", "identity_consistency",
                 "identity_consistency_chance", "identity_lift", "ari_type", "nmi_type", "ari_color", "nmi_color",
                 "ari_type+color", "nmi_type+color", "purity_type+color", "common_score", "rank", "best")


def comparison_context(run: RunFolder) -> dict | None:
    if not COMPARISON.exists(run) or not COMPARE_INFO.exists(run):
        return None
    compared = (run.stage_record("compare") or {}).get("cluster")
    if compared != (run.stage_record("cluster") or {}).get("fingerprint"):
        return None  # the clustering changed since: the comparison describes clusterings that are gone
    table = COMPARISON.load(run)
    agreement = AGREEMENT.load(run)
    attributes = ATTRIBUTES.load(run) if ATTRIBUTES.exists(run) else pd.DataFrame()
    best = BestChoice.load(run)  # the choice is best.json's; compare.json holds the rest
    info = dict(COMPARE_INFO.load(run), **({"best": best.name, "best_rule": best.rule,
                                            "best_why": best.reason} if best else {}))
    columns = [c for c in TABLE_COLUMNS if c in table.columns]
    return {
        "info": info,
        "table_html": table[columns].to_html(index=False, float_format=lambda v: f"{v:.3f}", border=0,
                                             classes="runs", na_rep=""),
        "sentences": list(zip(table["name"], table["captures"].fillna(""))),
        "mixtures": _mixtures(info),
        "verdict": mixture_verdict(table),
        "agreement_plot": _matrix_plot(agreement_matrix(agreement, "ari"), "ARI between selected clusterings", 0, 1)
        if not agreement.empty else None,
        "agreement_html": agreement.to_html(index=False, float_format=lambda v: f"{v:.3f}", border=0, classes="runs"),
        "attribute_plot": _attribute_plot(attributes) if not attributes.empty else None,
        "contingency": [_contingency_view(run, a, b) for a, b in most_interesting_pairs(agreement)],
    }


def mixture_verdict(table: pd.DataFrame) -> str:
    """Did a mixture beat every single descriptor on the joint type+colour label? (numbers)"""
    column = f"ari_{JOINT}"
    if column not in table.columns:
        return ""
    singles, mixes = table[table["kind"] == "descriptor"], table[table["kind"] != "descriptor"]
    if singles.empty or mixes.empty:
        return ""
    best_single = singles.loc[singles[column].idxmax()]
    best_mix = mixes.loc[mixes[column].idxmax()]
    beats = best_mix[column] > best_single[column]
    nmi = f"nmi_{JOINT}"
    return (f"On the joint type+colour label, the best mixture/consensus {best_mix['name']} reaches ARI "
            f"{best_mix[column]:.3f} (NMI {best_mix[nmi]:.3f}) against {best_single[column]:.3f} "
            f"(NMI {best_single[nmi]:.3f}) for the best single descriptor {best_single['name']}: "
            + ("the mixture does better." if beats else "no mixture beats the best single descriptor."))


def _mixtures(info: dict) -> list[dict]:
    out = []
    for name, mix in (info.get("mixtures") or {}).items():
        tuning = mix.get("tuning") or {}
        out.append({"name": name, "weights": ", ".join(f"{b} {w:.2f}" for b, w in zip(mix["blocks"], mix["weights"])),
                    "how": tuning.get("how", ""),
                    "candidates": ", ".join(f"[{c['weights']}] {c['score']:.3f}" for c in tuning.get("candidates", []))})
    return out


def _png(fig) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    plt.close(fig)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def _matrix_plot(matrix: pd.DataFrame, title: str, vmin: float, vmax: float, fmt: str = "{:.2f}",
                 xlabel: str = "", ylabel: str = "") -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows, cols = matrix.shape
    fig, ax = plt.subplots(figsize=(1.2 + 0.55 * cols, 1.0 + 0.4 * rows))
    image = ax.imshow(matrix.to_numpy(dtype=float), cmap="viridis", vmin=vmin, vmax=vmax, aspect="auto")
    ax.set_xticks(range(cols), [str(c) for c in matrix.columns], rotation=60, ha="right", fontsize=7)
    ax.set_yticks(range(rows), [str(r) for r in matrix.index], fontsize=7)
    if cols * rows <= 400:
        values = matrix.to_numpy(dtype=float)
        for i in range(rows):
            for j in range(cols):
                ax.text(j, i, fmt.format(values[i, j]), ha="center", va="center", fontsize=6,
                        color="white" if values[i, j] < (vmin + vmax) / 2 else "black")
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel, fontsize=8)
    ax.set_ylabel(ylabel, fontsize=8)
    fig.colorbar(image, ax=ax, fraction=0.04)
    return _png(fig)


def _attribute_plot(scores: pd.DataFrame) -> str:
    matrix = scores.pivot(index="clustering", columns="attribute", values="ami")
    order = list(dict.fromkeys(scores["clustering"]))
    matrix = matrix.loc[[o for o in order if o in matrix.index]]
    return _matrix_plot(matrix, "AMI of each clustering with each attribute", 0, max(0.3, float(np.nanmax(matrix.to_numpy()))))


def _contingency_view(run: RunFolder, a: str, b: str) -> dict:
    frame = contingency_of(run, a, b)
    share = frame.div(frame.sum(axis=1), axis=0)  # where each cluster of a went in b
    return {"a": a, "b": b, "plot": _matrix_plot(share, f"share of each {a} cluster (rows) in {b}'s clusters",
                                                 0, 1, xlabel=b, ylabel=a)}
