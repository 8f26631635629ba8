"""Block weights chosen by measurement, on held-out rows that no reported number uses.

The tuning rows are whole vehicles when the collection has vehicle ids (so a vehicle's images
are either all tuning rows or all evaluation rows), else random rows. Each candidate weighting
is clustered with k-means at a few k on the tuning rows and scored by the criterion:

``identity``  identity consistency above chance, (c - chance) / (1 - chance): images of one
              vehicle should share a cluster; the free label of every re-id collection, and it
              rewards what is constant within a vehicle (type, colour), not camera or light
``stability`` mean ARI between k-means fits on two resamples with other seeds
a column      ARI against that collection column (``type``), or the joint label of columns
              joined by ``+`` (``type+color``)
"""

from __future__ import annotations

import itertools

import numpy as np
import pandas as pd
from sklearn.cluster import KMeans
from sklearn.metrics import adjusted_rand_score

from vehiclust.cluster.metrics import _codes, identity_consistency
from vehiclust.cluster.select import tuning_ks
from vehiclust.compare.fusion import BlockScaler, normalised_blocks, weighted
from vehiclust.errors import VehiclustError
from vehiclust.rules import joint_label
from vehiclust.runfolder import RunFolder



def split_tuning_rows(rows: np.ndarray, ids: pd.Series | None, share: float, cap: int,
                      seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(tuning rows, evaluation rows) of ``rows``; whole vehicles go to one side when ``ids``
    (aligned with the collection) has repeated values."""
    target = min(int(share * len(rows)), cap)
    rng = np.random.default_rng(seed + 11)
    if ids is not None:
        codes = _codes(ids.iloc[rows].reset_index(drop=True))
        if (np.bincount(codes[codes >= 0]) >= 2).any():
            order = rng.permutation(np.unique(codes[codes >= 0]))
            sizes = np.bincount(codes[codes >= 0])[order]
            chosen = order[: int(np.searchsorted(np.cumsum(sizes), target)) + 1]
            tuning = np.isin(codes, chosen)
            return rows[tuning], rows[~tuning]
    tuning = np.zeros(len(rows), dtype=bool)
    tuning[rng.choice(len(rows), size=target, replace=False)] = True
    return rows[tuning], rows[~tuning]


def candidate_weights(m: int) -> list[tuple[float, ...]]:
    """Equal weights, each block doubled, each block halved (two blocks: a 5-point line)."""
    if m == 2:
        return [(a, 1 - a) for a in (0.2, 0.35, 0.5, 0.65, 0.8)]
    out = [tuple([1.0] * m)]
    for i, factor in itertools.product(range(m), (2.0, 0.5)):
        out.append(tuple(factor if j == i else 1.0 for j in range(m)))
    return [tuple(w / sum(c) for w in c) for c in out]


def resolve_criterion(tune: str, table: pd.DataFrame, identity_column: str) -> str:
    if tune != "auto":
        return tune
    if identity_column in table.columns and table[identity_column].duplicated().any():
        return "identity"
    return "stability"


def score_partitions(X: np.ndarray, ks: list[int], criterion: str, target: np.ndarray | None,
                     seed: int) -> float:
    values = []
    for k in ks:
        labels = KMeans(k, n_init=1, random_state=seed).fit_predict(X)
        if criterion == "stability":
            rng = np.random.default_rng(seed + k)
            sub = rng.choice(len(X), size=int(0.8 * len(X)), replace=False)
            refit = KMeans(k, n_init=1, random_state=seed + 1).fit_predict(X[sub])
            values.append(adjusted_rand_score(labels[sub], refit))
        elif criterion == "identity":
            ic = identity_consistency(labels, target)
            chance = identity_consistency(np.random.default_rng(seed).permutation(labels), target)
            values.append((ic - chance) / max(1 - chance, 1e-9))
        else:
            known = target >= 0
            values.append(adjusted_rand_score(target[known], labels[known]))
    return float(np.mean(values))


def criterion_target(criterion: str, table: pd.DataFrame, rows: np.ndarray, identity_column: str) -> np.ndarray | None:
    if criterion == "stability":
        return None
    columns = [identity_column] if criterion == "identity" else criterion.split("+")
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise VehiclustError(f"--mix-tune {criterion}: the collection has no column {', '.join(missing)}")
    values = joint_label(table[columns].astype(str), columns)  # "type+color" -> "suv/white"
    codes = _codes(values.iloc[rows].reset_index(drop=True))
    if criterion == "identity":  # vehicles with a single tuning image cannot be consistent or not
        sizes = np.bincount(codes[codes >= 0])
        codes = np.where((codes >= 0) & (sizes[np.maximum(codes, 0)] >= 2), codes, -1)
    return codes


def choose_weights(run: RunFolder, blocks: tuple[str, ...], scalers: list[BlockScaler], tuning_rows: np.ndarray,
                   criterion: str, table: pd.DataFrame, identity_column: str, ks: list[int],
                   seed: int) -> tuple[tuple[float, ...], pd.DataFrame]:
    """The best-scoring candidate weighting and every candidate's score (ties: the most even)."""
    target = criterion_target(criterion, table, tuning_rows, identity_column)
    ks = [k for k in tuning_ks(ks) if k < len(tuning_rows)]
    records, parts = [], normalised_blocks(run, blocks, scalers, tuning_rows)
    for weights in candidate_weights(len(blocks)):
        X = weighted(parts, weights)
        records.append({"weights": ",".join(f"{w:.3f}" for w in weights),
                        "score": score_partitions(X, ks, criterion, target, seed)})
    frame = pd.DataFrame(records)
    frame["evenness"] = [-np.ptp([float(v) for v in w.split(",")]) for w in frame["weights"]]
    best = frame.sort_values(["score", "evenness"], ascending=False).iloc[0]
    frame["chosen"] = frame["weights"] == best["weights"]
    return tuple(float(v) for v in best["weights"].split(",")), frame.drop(columns="evenness")
