"""Consensus of several clusterings by evidence accumulation (Fred & Jain, 2005).

On a sample of rows, the co-association of two rows is the share of the clusterings that put
them in one cluster (noise never agrees). Average linkage on 1 - co-association gives a
hierarchy; it is cut at the k whose partition shares the most information with the inputs
(mean NMI). Every other row joins the consensus cluster whose sample members it agrees with
most, measured without any pairwise matrix: for each clustering, the share of a consensus
cluster's members that carry the row's label (a label x cluster count table), averaged.
"""

from __future__ import annotations

import numpy as np
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.spatial.distance import squareform
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from vehiclust.cluster.select import consensus_k

CHUNK = 65536


def co_association(labels: np.ndarray) -> np.ndarray:
    """``labels`` is n x m (one column per clustering, -1 noise); n x n share of agreement."""
    n, m = labels.shape
    together = np.zeros((n, n), dtype=np.float32)
    for j in range(m):
        col = labels[:, j]
        together += ((col[:, None] == col[None, :]) & (col[:, None] >= 0)).astype(np.float32)
    together /= m
    np.fill_diagonal(together, 1.0)
    return together


def partition_sample(labels: np.ndarray, k: int | None = None, k_max: int = 30) -> np.ndarray:
    """Consensus labels (0..k-1) of the sample rows; k, when not given, maximises the mean NMI
    with the input clusterings (:func:`vehiclust.cluster.select.consensus_k` chooses it). The lifetime cut alone picked k=2 on the demo, where one
    day/night split outlives everything."""
    distance = 1.0 - co_association(labels)
    tree = linkage(squareform(distance, checks=False), method="average")

    def cut(k_cut: int) -> np.ndarray:
        return fcluster(tree, k_cut, criterion="maxclust").astype(np.int64) - 1

    if k is not None:
        return cut(k)
    return consensus_k(cut, lambda part: float(np.mean([normalized_mutual_info_score(labels[:, j], part)
                                                        for j in range(labels.shape[1])])), len(labels), k_max)


def assign_rows(all_labels: np.ndarray, sample: np.ndarray, sample_consensus: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Consensus label of every row and its mean co-association with that cluster's sample
    members (1 = every clustering agrees); sample rows keep their labels."""
    n, m = all_labels.shape
    k = int(sample_consensus.max()) + 1
    sizes = np.bincount(sample_consensus, minlength=k).astype(np.float32)
    tables = []
    for j in range(m):  # counts[label + 1, consensus cluster]; row 0 is noise, which never agrees
        col = all_labels[sample, j] + 1
        counts = np.zeros((int(all_labels[:, j].max()) + 2, k), dtype=np.float32)
        np.add.at(counts, (col, sample_consensus), 1.0)
        counts[0] = 0.0
        tables.append(counts / sizes)
    out = np.empty(n, dtype=np.int64)
    strength = np.empty(n, dtype=np.float32)
    for start in range(0, n, CHUNK):
        block = all_labels[start:start + CHUNK] + 1
        score = sum(tables[j][block[:, j]] for j in range(m)) / m
        out[start:start + len(block)] = score.argmax(1)
        strength[start:start + len(block)] = score.max(1)
    out[sample] = sample_consensus
    return out, strength


def consensus(all_labels: np.ndarray, sample_size: int, seed: int, k: int | None = None,
              k_max: int = 30) -> dict:
    """Consensus of the columns of ``all_labels`` (n x m) and its stability: the ARI between
    the consensus from this sample and from a second, independent one. ``k_max``: the pipeline
    passes the sweep's largest k, so the consensus lives on the same grid as every clustering
    (on disagreeing inputs the mean NMI keeps rising with k)."""
    n = len(all_labels)
    result = {}
    for attempt in (0, 1):
        rng = np.random.default_rng(seed + 101 * attempt)
        sample = np.sort(rng.choice(n, size=min(sample_size, n), replace=False))
        sample_labels = partition_sample(all_labels[sample], k, k_max)
        labels, strength = assign_rows(all_labels, sample, sample_labels)
        if attempt == 0:
            k = int(sample_labels.max()) + 1  # the second run is cut at the same k
            result = {"labels": labels, "strength": strength, "k": k, "sample_rows": len(sample)}
        else:
            result["stability"] = float(adjusted_rand_score(result["labels"], labels))
    return result
