"""Agreement between clusterings: ARI, AMI and NMI for every pair, and contingency tables.

``agreement.csv`` is long: one row per unordered pair (``a``, ``b``, ``ari``, ``ami``, ``nmi``,
``n_rows``), the diagonal left out (1 by definition). Noise (-1) counts as one more cluster, so
two clusterings agree on what they call noise too. ARI and NMI use every evaluation row (they
come from the contingency table, O(N)); AMI's chance correction costs more, so it runs on a
sample of at most ``sample`` rows, and the table says how many.
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_mutual_info_score

from vehiclust.cluster.metrics import ari_from_table, contingency, nmi_from_table


def pair_scores(a: np.ndarray, b: np.ndarray, ami_rows: np.ndarray) -> dict[str, float]:
    table = contingency(a + 1, b + 1)
    return {"ari": ari_from_table(table), "nmi": nmi_from_table(table),
            "ami": float(adjusted_mutual_info_score(a[ami_rows], b[ami_rows]))}


def agreement_table(labels: dict[str, np.ndarray], sample: int, seed: int) -> pd.DataFrame:
    """Every unordered pair of the clusterings in ``labels`` (all aligned on the same rows)."""
    n = len(next(iter(labels.values())))
    rng = np.random.default_rng(seed + 5)
    ami_rows = np.arange(n) if n <= sample else np.sort(rng.choice(n, size=sample, replace=False))
    records = []
    for (name_a, a), (name_b, b) in itertools.combinations(labels.items(), 2):
        records.append({"a": name_a, "b": name_b, **pair_scores(a, b, ami_rows), "n_rows": n,
                        "ami_rows": len(ami_rows)})
    return pd.DataFrame(records, columns=["a", "b", "ari", "ami", "nmi", "n_rows", "ami_rows"])


def agreement_matrix(agreement: pd.DataFrame, measure: str = "ari") -> pd.DataFrame:
    """The long table as a symmetric square matrix with 1 on the diagonal."""
    names = list(dict.fromkeys(list(agreement["a"]) + list(agreement["b"])))
    matrix = pd.DataFrame(np.eye(len(names)), index=names, columns=names)
    for _, row in agreement.iterrows():
        matrix.at[row["a"], row["b"]] = matrix.at[row["b"], row["a"]] = row[measure]
    return matrix


def contingency_frame(a: np.ndarray, b: np.ndarray, name_a: str = "a", name_b: str = "b") -> pd.DataFrame:
    """Rows: clusters of ``a``; columns: clusters of ``b``; cells: how many rows went from one
    to the other (-1 is noise)."""
    return pd.crosstab(pd.Series(a, name=name_a), pd.Series(b, name=name_b))


def contingency_of(run, a: str, b: str) -> pd.DataFrame:
    """Contingency table of two stored clusterings by name (descriptor, mixture or consensus),
    over the rows either of them clustered: for the report and the notebook."""
    from vehiclust.cluster.clustering import Clustering
    from vehiclust.runfolder import CLUSTERING

    la, lb = Clustering.load_labels(CLUSTERING.path(run, a)), Clustering.load_labels(CLUSTERING.path(run, b))
    either = (la >= 0) | (lb >= 0)
    return contingency_frame(la[either], lb[either], a, b)


def most_interesting_pairs(agreement: pd.DataFrame, count: int = 2) -> list[tuple[str, str]]:
    """The pairs that agree least and most (by ARI): where descriptors see different things,
    and where two of them found the same structure."""
    if agreement.empty:
        return []
    ordered = agreement.sort_values("ari")
    picks = [ordered.iloc[0]] + ([ordered.iloc[-1]] if len(ordered) > 1 else [])
    return [(p["a"], p["b"]) for p in picks[:count]]
