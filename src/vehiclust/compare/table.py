"""The comparison table (``comparison.csv``) and the rule that picks the best clustering.

One row per clustering: each single descriptor's selected run, each mixture's, the consensus.

The common space
    Each clustering's own metrics (runs.csv) are measured in its own space, and spaces differ in
    how clusterable they look (UMAP packs any data into tight clumps), so they do not compare
    across descriptors. Here every clustering is measured again on ONE shared sample of rows, in
    ONE space: the equal-weight, block-normalised concatenation of every single descriptor
    (each block centred, reduced to at most ``block_dims`` by PCA, scaled to total variance 1).
    No descriptor's geometry is preferred to another's there; a mixture of the same blocks is
    built from the same pieces, so it has a home advantage, which the table states.
    Davies-Bouldin, silhouette and Calinski-Harabasz are computed there on the same rows, so all
    three are comparable across rows (Calinski-Harabasz still falls with k). The own-space
    Calinski-Harabasz is kept only with the N x D it was measured at: compare it only between
    rows with the same ``own_space``.
The rows
    Everything is measured on the evaluation rows: rows valid in every descriptor, minus the
    held-out vehicles that chose the mixture weights.
The best rule
    With vehicle ids (the free label of every re-id collection: one folder, one vehicle), the
    highest ``identity_lift`` = (identity consistency - chance) / (1 - chance) wins: images of one
    vehicle share its type and colour, so a clustering that keeps them together found what is
    constant about a vehicle, not its camera or light; "chance" is the same clustering with the
    labels shuffled, so a few big clusters gain nothing. Lifts within one standard error of the
    leader's are a tie, broken by ``common_score``.
    Without vehicle ids: ``common_score = coverage x mean(silhouette+, 1 / (1 + Davies-Bouldin))
    x stability+``, the cluster stage's selection score with silhouette and Davies-Bouldin from
    the common space. The type/colour label checks are reported, never used.
    ``--best NAME`` overrides the rule.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import silhouette_score

from vehiclust.cluster.metrics import LabelChecks, cluster_geometry, internal_metrics
from vehiclust.cluster.select import selection_score
from vehiclust.compare.fusion import FIT_ROWS, block_rows, fit_blocks, sample_rows
from vehiclust.compare.settings import ALIASES, CONSENSUS, MIX_PREFIX, CompareSettings
from vehiclust.errors import VehiclustError
from vehiclust.rules import JOINT, JOINT_COLUMNS, joint_label
from vehiclust.runfolder import RunFolder

COMMON_SPACE = ("equal-weight block-normalised concatenation of every single descriptor "
                "(each block centred, PCA to at most {dims} dims, total variance 1)")
SCORE_RULE = ("highest common_score = coverage x mean(silhouette+, 1/(1+Davies-Bouldin)) x stability+, "
              "silhouette and Davies-Bouldin measured in the common space on the shared sample; ties to "
              "stability; label checks are reported, never used")
IDENTITY_RULE = ("highest identity_lift = (identity consistency - chance) / (1 - chance) on the evaluation rows: "
                 "images of one vehicle (the free vehicle-id label) should share a cluster, and a clustering that "
                 "keeps them together groups what is constant about a vehicle (type, colour), not camera or light; "
                 "lifts within one standard error of the leader's tie, broken by common_score (coverage x "
                 "mean(silhouette+, 1/(1+DB)) x stability, in the common space); type/colour checks are never used")


def kind_of(name: str) -> str:
    return "consensus" if name == CONSENSUS else "mixture" if name.startswith(MIX_PREFIX) else "descriptor"


def common_space(run: RunFolder, singles: list[str], rows: np.ndarray, settings: CompareSettings) -> np.ndarray:
    """The common space (see the module docstring) of ``rows``; blocks fitted on a sample of them."""
    fit = sample_rows(rows, FIT_ROWS, settings.seed)
    scalers = fit_blocks(run, tuple(singles), fit, settings.block_norm, settings.block_dims, settings.seed)
    return block_rows(run, tuple(singles), scalers, rows, np.ones(len(singles)))


def common_metrics(X: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """DB, silhouette and CH of ``labels`` in the common space X (noise rows left out)."""
    member = labels >= 0
    out = {"silhouette": np.nan, "davies_bouldin": np.nan, "calinski_harabasz": np.nan}
    if len(np.unique(labels[member])) < 2:
        return out
    Xm, lab = X[member], np.unique(labels[member], return_inverse=True)[1]
    centers, sizes, distance = cluster_geometry(Xm, lab)
    metrics = internal_metrics(Xm, lab, centers, sizes, distance)
    out["davies_bouldin"], out["calinski_harabasz"] = metrics["davies_bouldin"], metrics["calinski_harabasz"]
    if len(Xm) > len(sizes):
        out["silhouette"] = float(silhouette_score(Xm, lab))
    return out


def common_score(frame: pd.DataFrame) -> pd.Series:
    """The cluster stage's selection score with silhouette and Davies-Bouldin from the common space."""
    return selection_score(frame["silhouette_common"], frame["davies_bouldin_common"], frame["stability"],
                           frame["noise_share"])


def label_frame(table: pd.DataFrame, label_columns: tuple[str, ...]) -> tuple[pd.DataFrame, tuple[str, ...]]:
    """The label columns plus the joint ``type+color`` label when both exist."""
    frame = table[[c for c in label_columns if c in table.columns]].copy()
    if set(JOINT_COLUMNS) <= set(frame.columns):
        frame[JOINT] = joint_label(frame[list(JOINT_COLUMNS)].astype(str))
    return frame, tuple(frame.columns)


def comparison_table(run: RunFolder, singles: list[str], labels: dict[str, np.ndarray], selected: pd.DataFrame,
                     evaluation: np.ndarray, table: pd.DataFrame, settings: CompareSettings,
                     label_columns: tuple[str, ...], identity_column: str) -> pd.DataFrame:
    """One row per clustering in ``labels`` (full-length label arrays); ``selected`` holds each
    one's runs.csv row (own-space metrics, stability), indexed by name."""
    shared = sample_rows(evaluation, settings.shared_sample, settings.seed + 3)
    X = common_space(run, singles, shared, settings)
    frame, columns = label_frame(table, label_columns)
    if identity_column in table.columns:
        frame[identity_column] = table[identity_column]
    checks = LabelChecks(frame.iloc[evaluation].reset_index(drop=True), columns,
                         identity_column if identity_column in table.columns else None, settings.seed)
    records = []
    for name, lab in labels.items():
        own = selected.loc[name]
        common = common_metrics(X, lab[shared])
        record = {
            "name": name, "kind": kind_of(name), "algorithm": own["algorithm"],
            "preprocessing": own["preprocessing"], "params": own["params"],
            "n_clusters": int(len(np.unique(lab[evaluation][lab[evaluation] >= 0]))),
            "davies_bouldin_common": common["davies_bouldin"], "silhouette_common": common["silhouette"],
            "calinski_harabasz_common": common["calinski_harabasz"],
            "stability": float(own["stability"]),
            "noise_share": float((lab[evaluation] < 0).mean()),
            **checks(lab[evaluation]),
            "silhouette_own": own["silhouette"], "davies_bouldin_own": own["davies_bouldin"],
            "calinski_harabasz_own": own["calinski_harabasz"],
            "own_space": _own_space(own),
            "shared_rows": len(shared), "evaluation_rows": len(evaluation), "common_dims": X.shape[1],
        }
        records.append(record)
    out = pd.DataFrame(records)
    out["common_score"] = common_score(out)
    if "identity_consistency" in out.columns:
        chance = out["identity_consistency_chance"]
        out["identity_lift"] = (out["identity_consistency"] - chance) / (1 - chance).clip(lower=1e-9)
        out["identity_rows"] = checks.ids is not None and int((checks.ids >= 0).sum())
    out["note"] = _notes(out)
    return out


def _notes(frame: pd.DataFrame) -> list[str]:
    notes = []
    for _, row in frame.iterrows():
        parts = ["calinski_harabasz_common: same rows and dims for every row of this table (it still falls with k); "
                 "calinski_harabasz_own: compare only between rows with equal own_space"]
        if row["kind"] == "mixture":
            parts.append("the common space is built from the same blocks: home advantage on silhouette/DB")
        if row["kind"] == "consensus":
            parts.append("stability: ARI between consensuses from two independent samples")
        notes.append("; ".join(parts))
    return notes


def resolve_name(name: str, names: list[str]) -> str:
    """A clustering name as the user wrote it: exact, alias, ``mix_`` prefix left out, then the
    one name (or the one single descriptor) that contains it."""
    candidates = [name, ALIASES.get(name.lower(), ""), MIX_PREFIX + name]
    for candidate in candidates:
        if candidate in names:
            return candidate
    matches = [n for n in names if name.lower() in n.lower()]
    singles = [n for n in matches if kind_of(n) == "descriptor"]
    for group in (matches, singles):  # "color" means vdc_color, not every mixture that holds it
        if len(group) == 1:
            return group[0]
    raise VehiclustError(f"--best {name!r}: {'matches ' + ', '.join(matches) if matches else 'no such clustering'}; "
                         f"known: {', '.join(names)}")


def rule_order(frame: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The rows best first, and the rule that ordered them (see the module docstring)."""
    if "identity_lift" not in frame.columns or not np.isfinite(frame["identity_lift"].astype(float)).any():
        return frame.sort_values(["common_score", "stability"], ascending=False), SCORE_RULE
    lift = frame["identity_lift"].astype(float).fillna(-np.inf)
    leader = frame.loc[lift.idxmax()]
    p, n = float(leader["identity_consistency"]), max(float(leader.get("identity_rows") or 1), 1.0)
    # one standard error of the leader's consistency (a share of n images), in lift units
    error = np.sqrt(max(p * (1 - p), 1e-12) / n) / max(1 - float(leader["identity_consistency_chance"]), 1e-9)
    tie = lift >= lift.max() - error
    ordered = frame.assign(_tie=tie, _lift=lift).sort_values(["_tie", "common_score", "_lift"], ascending=False)
    tied = ordered[ordered["_tie"]]
    rest = ordered[~ordered["_tie"]].sort_values("_lift", ascending=False)
    return pd.concat([tied, rest]).drop(columns=["_tie", "_lift"]), IDENTITY_RULE


def apply_best(frame: pd.DataFrame, override: str | None) -> tuple[pd.DataFrame, str, str, str]:
    """Mark the best row; returns (frame, name, why, the rule applied)."""
    frame = frame.copy()
    ranked, rule = rule_order(frame)
    top = ranked.iloc[0]
    by_rule = str(top["name"])
    measure = "identity_lift" if rule == IDENTITY_RULE else "common_score"
    if override:
        name = resolve_name(override, list(frame["name"]))
        why = f"best overall: chosen by the user (--best {override}); the rule would pick {by_rule}"
    else:
        name = by_rule
        why = f"best overall by the comparison rule: {measure} {top[measure]:.3f}"
        if measure == "identity_lift":
            why += f", common_score {top['common_score']:.3f}"
        if len(ranked) > 1:
            runner = ranked.iloc[1]
            why += f"; runner-up {runner['name']} ({measure} {runner[measure]:.3f})"
    frame["best"] = frame["name"] == name
    frame["rank"] = pd.Series(np.arange(1, len(ranked) + 1), index=ranked.index).reindex(frame.index)
    return frame, name, why, rule


def _own_space(own: pd.Series) -> str:
    """"N x D" of the space the run was measured in ('' for the consensus, which has none)."""
    dims = own.get("space_dims")
    if pd.isna(own.get("n_rows")) or dims is None or pd.isna(dims):
        return ""
    return f"{int(own['n_rows'])} x {int(dims)}"
