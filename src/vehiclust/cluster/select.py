"""Where k is chosen, all of it: the k grid, the score, the choice per family, per descriptor and
overall, the consensus's cut and the k values that tune the mixture weights.

* :func:`k_grid` the k values swept by algorithms that take k (``ClusterSettings.ks()``);
  density-based algorithms are not told k, their grids are in :mod:`.algorithms`;
* :func:`selection_score` the one score (the cluster stage's, and the comparison's
  ``common_score`` with silhouette and Davies-Bouldin from the common space);
* :func:`select_run` per descriptor (steps 1-5 below), :func:`overall_choice` across
  descriptors when no comparison has run (step 7); the comparison's rule is in
  :mod:`vehiclust.compare.table`;
* :func:`consensus_k` the consensus's k, :func:`tuning_ks` the k values of the weight search.

The rule
--------
1. **Score** every run::

       score = coverage x (silhouette+ + 1 / (1 + Davies-Bouldin)) / 2 x stability+

   ``silhouette+`` and ``stability+`` are clipped to [0, 1]; coverage = 1 - noise share, so a
   density-based run that calls half the data noise pays for it. Silhouette and
   Davies-Bouldin both reward compact, separated clusters, but on different evidence
   (pairs of rows on a sample vs. centres on all rows), so one's sampling noise or blind spot
   is damped by the other. Stability multiplies: a partition that a resample or another seed
   does not reproduce is not a finding, whatever its geometry. Calinski-Harabasz is reported
   but does not vote: it falls with k on real data and grows with N, so it picks the smallest
   k of any grid (the case's public solutions fell into this).
2. **Eligible** runs: at least 2 clusters, none smaller than ``min_cluster_share`` of the rows,
   at most ``max_noise_share`` noise; with ``fixed_k`` only that k.
3. **Per family** (one preprocessing x one algorithm) the best score wins, except that a best
   at the edge of the k grid gives way to the best interior local maximum scoring within
   ``EDGE_TOLERANCE`` of it: a metric still drifting at the end of the grid says more about
   the grid than about the data, a peak or plateau inside it is a property of the data.
4. **Per descriptor** the family winner with the highest score is selected; with
   ``prefer_few_clusters`` the run with the fewest clusters among those within
   ``few_tolerance`` of the best is.
5. **Ties**: when the best other family's winner is within one spread of the selected run
   (the score's first-order spread from its silhouette's spread over samples and its
   stability's over refits, :func:`score_spread`), it is a tie, said in both rows' ``tie_with``,
   and it goes to the family first in the settings' order (preprocessing as listed, then
   algorithm as listed): a rule no measurement enters, so seed, threads or load cannot flip it.
6. **Levels**: when the selected run is the coarse level of a hierarchy (a finer run of its
   preprocessing nests in it and has structure inside its clusters), the finer run is delivered
   and the selected one kept as its coarse level: :mod:`vehiclust.cluster.levels`, applied by
   the sweep after this rule.
7. **Overall**: the selected run with the highest score across descriptors.

A selected run scoring below ``WEAK_SCORE`` says so in its reason: every rule picks *some*
partition of structureless data, and the user should know when that is what happened.

Label metrics (ARI/NMI/purity, identity consistency) are never read here: they are checks of
the choice, not part of it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:  # settings.py imports k_grid from here
    from vehiclust.cluster.settings import ClusterSettings

EDGE_TOLERANCE = 0.1  # relative
# Below this score the best partition is hardly better than cutting noise: on 2,000 rows of pure
# Gaussian noise the best run scored 0.16; planted clusters and the digits score 0.8-0.97.
WEAK_SCORE = 0.3


def k_grid(k_min: int, k_max: int, dense_until: int = 12, coarse_points: int = 8) -> list[int]:
    """Every k up to ``dense_until``, then about ``coarse_points`` geometrically spaced values.

    Differences between neighbouring k matter at small k (5 vs 6 clusters) and fade at large k
    (25 vs 26), so a dense grid there would mostly cost time.
    """
    dense = list(range(k_min, min(k_max, dense_until) + 1))
    if k_max <= dense_until:
        return dense
    start = max(k_min, dense_until)
    coarse = {int(round(start * (k_max / start) ** (i / coarse_points))) for i in range(coarse_points + 1)}
    return sorted(set(dense) | {k for k in coarse if k_min <= k <= k_max} | {k_max})



def selection_score(silhouette: pd.Series, davies_bouldin: pd.Series, stability: pd.Series,
                    noise_share: pd.Series) -> pd.Series:
    """coverage x (silhouette+ + 1 / (1 + Davies-Bouldin)) / 2 x stability+ (the module docstring)."""
    sil = silhouette.astype(float).clip(0, 1).fillna(0.0)
    db = (1.0 / (1.0 + davies_bouldin.astype(float))).fillna(0.0)
    stab = stability.astype(float).clip(0, 1).fillna(0.0)
    coverage = 1.0 - noise_share.astype(float).fillna(0.0)
    return coverage * (sil + db) / 2 * stab


def score(runs: pd.DataFrame) -> pd.Series:
    """The selection score of runs.csv rows (own-space metrics)."""
    return selection_score(runs["silhouette"], runs["davies_bouldin"], runs["stability"], runs["noise_share"])


def eligibility(runs: pd.DataFrame, settings: ClusterSettings) -> pd.Series:
    """'' for eligible runs, else why not."""
    why = pd.Series("", index=runs.index, dtype=object)
    why[runs["n_clusters"] < 2] = "fewer than 2 clusters"
    small = runs["min_cluster_share"].astype(float) < settings.min_cluster_share
    why[small & (why == "")] = [f"smallest cluster {v:.2%} < {settings.min_cluster_share:.2%} of rows"
                                for v in runs.loc[small & (why == ""), "min_cluster_share"]]
    noisy = runs["noise_share"].astype(float) > settings.max_noise_share
    why[noisy & (why == "")] = [f"noise {v:.0%} > {settings.max_noise_share:.0%}"
                                for v in runs.loc[noisy & (why == ""), "noise_share"]]
    if settings.fixed_k is not None:
        other = runs["k"].astype(float) != settings.fixed_k
        why[other & (why == "")] = f"k is fixed to {settings.fixed_k}"
    why[~np.isfinite(runs["score"].astype(float)) & (why == "")] = "metrics undefined"
    return why


def family_choice(family: pd.DataFrame) -> tuple[int, str]:
    """Index of the family's run and a phrase saying why (see the module docstring, step 3)."""
    best = family["score"].idxmax()
    if family["k"].isna().all() or len(family) < 3:
        return best, "best score of its family"
    family = family.sort_values("k")
    ks, scores = family["k"].to_numpy(), family["score"].to_numpy()
    at = int(np.flatnonzero(family.index == best)[0])
    if 0 < at < len(ks) - 1:
        return best, (f"peak of its k curve (k={int(ks[at])} inside {int(ks[0])}..{int(ks[-1])})")
    inner = [i for i in range(1, len(ks) - 1) if scores[i] >= scores[i - 1] and scores[i] >= scores[i + 1]
             and scores[i] >= (1 - EDGE_TOLERANCE) * scores[at]]
    edge = "lower" if at == 0 else "upper"
    if inner:
        i = max(inner, key=lambda j: scores[j])
        hint = "; the score still rises at k_max: consider widening --k" if edge == "upper" else ""
        return family.index[i], (f"interior peak k={int(ks[i])} preferred to the {edge} grid edge "
                                 f"k={int(ks[at])} (score {scores[at]:.3f}, within {EDGE_TOLERANCE:.0%}){hint}")
    trend = "falls" if at == 0 else "rises"
    return best, (f"at the {edge} edge of the k grid ({int(ks[0])}..{int(ks[-1])}): the score {trend} "
                  f"towards it with no peak inside; consider widening --k")


def select_run(runs: pd.DataFrame, settings: ClusterSettings) -> pd.DataFrame:
    """Mark one selected run (``selected``) in the runs of one descriptor and say why."""
    runs = runs.copy()
    runs["score"] = score(runs)
    runs["note"] = eligibility(runs, settings)
    runs["selected"] = False
    runs["reason"] = ""
    ok = runs[runs["note"] == ""]
    if ok.empty:  # nothing eligible: fall back to the best score, and say so
        ok = runs[np.isfinite(runs["score"].astype(float))]
        if ok.empty:
            ok = runs
        fallback = "no run met the eligibility rules; "
    else:
        fallback = ""
    picks = {}
    for _, family in ok.groupby(["preprocessing", "algorithm"], sort=False):
        index, why = family_choice(family)
        picks[index] = why
        runs.loc[index, "note"] = "best of its family: " + why
    ranked = sorted(picks, key=lambda i: -runs.at[i, "score"])
    chosen, how = ranked[0], ""
    runs["tie_with"] = ""
    tied = tied_family(runs, ranked)
    if tied is not None:
        first = min((chosen, tied), key=lambda i: _settings_order(runs, i, settings))
        other = tied if first == chosen else chosen
        runs.loc[[first, other], "tie_with"] = [_label(runs, other), _label(runs, first)]
        how = (f"TIE with {_label(runs, other)} (score {runs.at[other, 'score']:.3f}, within one spread), "
               f"broken by the settings' order (preprocessing, then algorithm); ")
        chosen = first
    if settings.prefer_few_clusters:
        floor = (1 - settings.few_tolerance) * runs.at[chosen, "score"]
        near = ok[ok["score"] >= floor]
        few = near.sort_values(["n_clusters", "score"], ascending=[True, False]).index[0]
        if few != chosen:
            how = (f"fewest clusters within {settings.few_tolerance:.0%} of the best score "
                   f"({_label(runs, chosen)}: {runs.at[chosen, 'score']:.3f}), as asked; ")
            chosen = few
    weak = ""
    if runs.at[chosen, "score"] < WEAK_SCORE:
        weak = (f"weak structure (score below {WEAK_SCORE}): read these clusters as a partition of the "
                f"data, not as groups it contains; ")
    runs.loc[chosen, "selected"] = True
    runs.loc[chosen, "reason"] = weak + fallback + how + _reason(runs, chosen, picks.get(chosen, ""), ranked)
    return runs


def score_spread(runs: pd.DataFrame) -> pd.Series:
    """First-order spread of the selection score from its silhouette's and stability's spreads."""
    sil_std = runs["silhouette_std"].astype(float).fillna(0.0)
    stab = runs["stability"].astype(float).clip(0, 1).fillna(0.0)
    stab_std = runs["stability_std"].astype(float).fillna(0.0)
    coverage = 1.0 - runs["noise_share"].astype(float).fillna(0.0)
    geometry = (runs["score"].astype(float) / (coverage * stab).where(coverage * stab > 0)).fillna(0.0)
    return coverage * np.hypot(sil_std / 2 * stab, geometry * stab_std)


def tied_family(runs: pd.DataFrame, ranked: list):
    """The runner-up family's run when it is within one spread of the leader (step 5), else None."""
    if len(ranked) < 2 or not {"silhouette_std", "stability_std"} <= set(runs.columns):
        return None
    leader, runner = ranked[0], ranked[1]
    spread = score_spread(runs.loc[[leader, runner]])
    gap = runs.at[leader, "score"] - runs.at[runner, "score"]
    return runner if gap <= np.hypot(spread[leader], spread[runner]) else None


def _settings_order(runs: pd.DataFrame, i, settings: ClusterSettings) -> tuple[int, int]:
    listed_p, listed_a = tuple(settings.preprocessing), tuple(settings.algorithms)
    p, a = runs.at[i, "preprocessing"], runs.at[i, "algorithm"]
    return (listed_p.index(p) if p in listed_p else len(listed_p),
            listed_a.index(a) if a in listed_a else len(listed_a))


def _label(runs: pd.DataFrame, i) -> str:
    return f"{runs.at[i, 'algorithm']} on {runs.at[i, 'preprocessing']} ({runs.at[i, 'params']})"


def _reason(runs: pd.DataFrame, i, why: str, ranked: list) -> str:
    r = runs.loc[i]
    text = (f"score {r['score']:.3f} = coverage {1 - r['noise_share']:.2f} x mean(silhouette "
            f"{r['silhouette']:.3f}, 1/(1+DB {r['davies_bouldin']:.2f})) x stability {r['stability']:.2f}")
    if why:
        text += f"; {why}"
    others = [j for j in ranked if j != i]
    text += f"; best of {len(ranked)} families"
    if others:
        text += f", runner-up {_label(runs, others[0])}: {runs.at[others[0], 'score']:.3f}"
    return text + "; Calinski-Harabasz reported, not used (it falls with k)"


def overall_choice(runs: pd.DataFrame):
    """Across descriptors (no comparison has run): the index of the selected run with the highest
    score (every descriptor went through the same preprocessings, so the scores are on one
    footing), ties to stability, and the phrase saying why; None when nothing is selected. A
    descriptor that delivers the finer level of a hierarchy competes with its coarse level's
    score, the score's own choice (step 6): the finer level scores lower by construction."""
    chosen = runs[runs["selected"].astype(bool)].copy()
    if "level" in runs.columns:
        coarse = runs[runs["level"].fillna("").astype(str) == "coarse"].drop_duplicates("descriptor")
        chosen["score"] = chosen["descriptor"].map(coarse.set_index("descriptor")["score"]).fillna(chosen["score"])
    chosen = chosen.sort_values(["score", "stability"], ascending=[False, False])
    if chosen.empty:
        return None, ""
    if len(chosen) > 1:
        return chosen.index[0], f"best overall: highest score among the {len(chosen)} descriptors' selected runs"
    return chosen.index[0], "best overall (the only descriptor)"


def consensus_k(cut: Callable[[int], np.ndarray], agreement: Callable[[np.ndarray], float], n_rows: int,
                k_max: int) -> np.ndarray:
    """The consensus's partition: of the cuts at k = 2..min(k_max, n_rows - 1), the first with
    the highest ``agreement`` with the input clusterings (mean NMI: Strehl & Ghosh's ANMI).
    ``k_max`` is the sweep's largest k, so the consensus lives on the same grid as every
    clustering (on disagreeing inputs the mean NMI keeps rising with k)."""
    best, best_score = None, -1.0
    for k in range(2, min(k_max, n_rows - 1) + 1):
        labels = cut(k)
        value = agreement(labels)
        if value > best_score + 1e-9:
            best, best_score = labels, value
    return best


TUNING_KS = 4  # k values per candidate weight vector, spread over the sweep's grid


def tuning_ks(ks: list[int]) -> list[int]:
    """The few k values at which k-means scores each candidate weighting of a mixture."""
    picks = np.unique(np.quantile(ks, np.linspace(0.15, 0.85, TUNING_KS)).round().astype(int))
    return [int(k) for k in picks]
