"""A second, finer level of structure, when there is one; delivered, with the coarse level beside it.

Silhouette and Davies-Bouldin favour the coarsest strong split (vehicle type before type x
colour; a few broad kinds of digit before the ten digits), so the selected run is often the
coarse level of a real hierarchy. The fine level is a run of the same preprocessing that

1. is eligible and has at least ``FINE_RATIO`` x the selected run's number of clusters (at each
   k, the best-scoring family's run: the families' partitions at one k are mostly alike);
2. nests in the coarse level: at least ``NEST_SHARE`` of the rows sit in the coarse cluster that
   holds most of their fine cluster;
3. has structure *inside* the coarse clusters: within each of them, its geometry beyond k-means
   at the same k on structureless data of that cluster's shape (:mod:`vehiclust.cluster.reference`),
   size-weighted, above ``MIN_EXCESS`` + 2 standard errors, on at least ``MIN_MEASURED_SHARE`` of
   the rows, and above ``MIN_EXCESS`` (less 2 standard errors) inside *every* coarse cluster it
   divides: a finer level that splits one merged pair of real groups and cuts the other coarse
   clusters in halves of nothing is not a level (its mean alone would pass). The overall score
   cannot see this: next to the gaps between coarse clusters the gaps inside them look small,
   which is why silhouette and Davies-Bouldin stop at the coarse level.

   The structure is measured in the *linear* space the run's preprocessing reached before UMAP
   (``Space.input_X``), against both references (Gaussian of the cluster's covariance, and its
   columns permuted), keeping the smaller excess. UMAP manufactures clumps inside structureless
   data, and each reference alone mistakes something for structure (the Gaussian one
   non-Gaussian marginals, the permuted one correlated columns). Measured on the selection
   benchmark's collections: inside the UMAP space, the noise inside a lone binary attribute's
   two halves and uniform noise showed an excess of 0.12-0.13, as much as real finer levels; in
   the linear space they show -0.04..-0.02, the planted groups' vehicles -0.02, the digits inside
   lite0's two broad kinds +0.06 to +0.07, peaking at k=9.

Of those, the one with the most structure inside (the highest excess; the smaller k when equal)
is the fine level, and it is delivered (:func:`deliver_levels`); none when no run passes. The
check runs on ``CHECK_ROWS`` sampled rows with one reference of each kind and two resamples per
coarse cluster, so it costs seconds per descriptor whatever the collection's size.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from vehiclust.cluster.reference import least_excess

FINE_RATIO = 2.0
NEST_SHARE = 0.8
# inside a coarse cluster, structureless data gives an excess of about 0 (Gaussian noise:
# -0.002..0.003 on the previous benchmark); real finer levels (digits, the demo's colours) 0.1 and more
MIN_EXCESS = 0.03
CHECK_ROWS = 1500
MIN_ROWS_INSIDE = 30  # coarse clusters with fewer sampled rows are not measured inside
MIN_MEASURED_SHARE = 0.5  # a finer level seen inside less than half the rows is not a level of the collection
INSIDE_REFERENCES = ("gaussian", "permuted")


def fine_candidates(runs: pd.DataFrame, chosen) -> list:
    """Runs that may be the fine level of ``chosen`` (test 1 of the module docstring)."""
    coarse = runs.loc[chosen]
    note = runs["note"].fillna("").astype(str)
    eligible = (note == "") | note.str.startswith("best of its family")
    pool = runs[eligible & (runs["preprocessing"] == coarse["preprocessing"]) & runs["k"].notna()]
    pool = pool[pool["n_clusters"] >= FINE_RATIO * coarse["n_clusters"]]
    return list(pool.sort_values(["k", "score"], ascending=[True, False]).drop_duplicates("k").index)


def nesting_share(coarse: np.ndarray, fine: np.ndarray) -> float:
    """Share of rows whose coarse cluster is the one holding most of their fine cluster."""
    keep = (coarse >= 0) & (fine >= 0)
    if not keep.any():
        return 0.0
    fine_codes = np.unique(fine[keep], return_inverse=True)[1]
    coarse_codes = np.unique(coarse[keep], return_inverse=True)[1]
    width = int(coarse_codes.max()) + 1
    table = np.bincount(fine_codes * width + coarse_codes, minlength=(int(fine_codes.max()) + 1) * width)
    return float(table.reshape(-1, width).max(axis=1).sum() / keep.sum())


def entropy_bits(labels: np.ndarray) -> float:
    sizes = np.bincount(labels[labels >= 0])
    share = sizes[sizes > 0] / max(sizes.sum(), 1)
    return float(-(share * np.log2(share)).sum())


def within_structure(X: np.ndarray, coarse: np.ndarray, fine: np.ndarray, seed: int) -> dict:
    """The fine level's size-weighted excess inside the coarse clusters, its spread, the bits it
    adds (the entropy of fine given coarse) and ``weakest``, the smallest lower bound
    (excess - 2 standard errors) over the coarse clusters it divides. A coarse
    cluster the fine level leaves whole counts with excess 0 (no finer structure found there);
    excess 0 when the measured coarse clusters hold fewer than ``MIN_MEASURED_SHARE`` of the rows."""
    total_excess, variance, weight, bits, weakest = 0.0, 0.0, 0, 0.0, np.inf
    total = int((coarse >= 0).sum())
    for c in np.unique(coarse[coarse >= 0]):
        inside = (coarse == c) & (fine >= 0)
        n = int(inside.sum())
        if n < MIN_ROWS_INSIDE:
            continue
        weight += n
        if len(np.unique(fine[inside])) < 2:
            continue
        found = least_excess(X[inside], fine[inside], INSIDE_REFERENCES, seed, references=1, bootstraps=2)
        total_excess += n * found["excess"]
        variance += (n * found["excess_std"]) ** 2
        weakest = min(weakest, found["excess"] - 2 * found["excess_std"])
        bits += n / total * entropy_bits(fine[inside])
    if weight < MIN_MEASURED_SHARE * total:
        return {"excess": 0.0, "excess_std": 0.0, "bits": bits, "weakest": 0.0}
    return {"excess": total_excess / weight, "excess_std": float(np.sqrt(variance) / weight), "bits": bits,
            "weakest": float(weakest) if np.isfinite(weakest) else 0.0}


def fine_level(runs: pd.DataFrame, chosen, X: np.ndarray, labels: list[np.ndarray], seed: int) -> tuple:
    """(the runs index of the fine level or None, the sentence for its reason)."""
    candidates = fine_candidates(runs, chosen)
    if not candidates:
        return None, ""
    rows = np.sort(np.random.default_rng(seed).permutation(len(X))[:CHECK_ROWS])
    coarse = labels[runs.index.get_loc(chosen)]
    best, best_found = None, None
    for index in candidates:
        fine = labels[runs.index.get_loc(index)]
        nests = nesting_share(coarse, fine)
        if nests < NEST_SHARE:
            continue
        found = within_structure(X[rows], coarse[rows], fine[rows], seed)
        real = found["excess"] > MIN_EXCESS + 2 * found["excess_std"] and found["weakest"] > MIN_EXCESS
        if real and (best_found is None or found["excess"] > best_found["excess"]):
            best, best_found = index, dict(found, nests=nests)
    if best is None:
        return None, ""
    return best, (f"fine level of the score's choice: k={int(runs.at[best, 'k'])}, structure inside the coarse "
                  f"clusters beyond structureless references of their shape in the linear space (excess "
                  f"{best_found['excess']:.3f} ± {best_found['excess_std']:.3f}, {best_found['bits']:.2f} bits more), "
                  f"{best_found['nests']:.0%} of the rows nested in the coarse clusters")


def deliver_levels(runs: pd.DataFrame, labels_of: list, seed: int,
                   promote: bool = True) -> tuple[pd.DataFrame, int | None]:
    """runs.csv's ``level`` column, and the delivered run when the score's choice has a finer level.

    The score's choice is the coarse level (``level`` "coarse"). When a fine level passes the
    tests above, it is what the descriptor delivers (``selected``, ``level`` "fine", its reason
    saying what it refines) and the coarse run's position in ``labels_of`` ((space, labels) per
    run) is returned, to be stored beside it; else None. With ``promote`` False (the user asked
    for few clusters) the coarse choice stays delivered and no level is looked for. A coarse split
    whose clusters hold real structure of their own is the top of a hierarchy, not the answer:
    the finer level carries everything the coarse one does (it nests in it) and more."""
    runs = runs.copy()
    runs["level"] = ""
    chosen = runs.index[runs["selected"].astype(bool)][0]
    runs.loc[chosen, "level"] = "coarse"
    if not promote:
        return runs, None
    space = labels_of[runs.index.get_loc(chosen)][0]
    linear = space.input_X if space.input_X is not None else space.X
    fine, why = fine_level(runs, chosen, linear, [labels for _, labels in labels_of], seed)
    if fine is None:
        return runs, None
    coarse_name = (f"{runs.at[chosen, 'algorithm']} on {runs.at[chosen, 'preprocessing']} "
                   f"({int(runs.at[chosen, 'n_clusters'])} clusters)")  # a density-based choice has no k
    runs.loc[fine, "level"], runs.loc[fine, "selected"] = "fine", True
    runs.loc[fine, "reason"] = (f"{why}; delivered as the finer level of the score's choice {coarse_name}, which "
                                f"clusters.csv keeps as cluster_coarse")
    runs.loc[chosen, "selected"] = False
    runs.loc[chosen, "reason"] = f"coarse level of the delivered run (cluster_coarse): {runs.at[chosen, 'reason']}"
    return runs, int(runs.index.get_loc(chosen))
