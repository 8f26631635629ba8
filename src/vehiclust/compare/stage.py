"""The compare stage: mixtures (fused, then swept and selected exactly like a descriptor), the
consensus, and the tables that compare every clustering.

Outputs
    ``descriptors/mix_<blocks>.npy|json``  each mixture, with its provenance (blocks, weights and
                                           how they were chosen, normalisation)
    ``clusterings/mix_*.npz``, ``clusterings/consensus.npz``  as for descriptors
    ``mixture_runs.csv`` the mixtures' runs and the consensus row, in runs.csv's columns (runs.csv
                        itself is the cluster stage's; :func:`vehiclust.compare.best.all_runs`
                        shows both)
    ``best.json``       the best clustering, its rule and reason (:class:`~vehiclust.compare.best.BestChoice`)
    ``comparison.csv``  one row per clustering (see :mod:`.table`)
    ``agreement.csv``   one row per pair of clusterings (see :mod:`.agreement`)
    ``attributes.csv``  AMI / NMI of each clustering with each attribute (see :mod:`.attributes`)
    ``compare.json``    the common space, the sentences, the tuning of the weights

The heavy part is skipped when nothing it depends on changed; the best rule (and ``--best``) is
applied on every call, so changing only ``--best`` costs nothing.
"""

from __future__ import annotations

import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import pandas as pd

from vehiclust.cluster import ClusterSettings
from vehiclust.cluster.clustering import Clustering
from vehiclust.cluster.sweep import RUN_COLUMNS, sweep_descriptors
from vehiclust.compare import attributes as attr
from vehiclust.compare.agreement import agreement_table
from vehiclust.compare.best import BestChoice, cluster_key, read_runs
from vehiclust.compare.consensus import consensus
from vehiclust.compare.fusion import FIT_ROWS, common_valid_rows, fit_blocks, mixture_key, sample_rows, store_mixture
from vehiclust.compare.settings import CONSENSUS, CompareSettings, is_derived, mixture_name, resolve_mix
from vehiclust.compare.table import (
    COMMON_SPACE,
    RULE,
    apply_best,
    comparison_table,
    deciding_measure,
    scored_runners_up,
)
from vehiclust.compare.weights import choose_weights, resolve_criterion, split_tuning_rows
from vehiclust.executor.base import result_settings
from vehiclust.progress import NullReporter, Reporter
from vehiclust.run_descriptors import clusterable
from vehiclust.runfolder import (AGREEMENT, ATTRIBUTES, CLUSTERING, COARSE_CLUSTERING, COMPARE_INFO, COMPARISON,
                                MIXTURE_RUNS, RUNS, RunFolder, fingerprint)
from vehiclust.stage import RunContext, Stage

COMPARE_VERSION = 7  # part of the fingerprint: bump when results change for equal settings
OUTPUTS = (COMPARISON, AGREEMENT, ATTRIBUTES, COMPARE_INFO, MIXTURE_RUNS)


def compare(run: RunFolder, names: list[str], cluster_settings: ClusterSettings = ClusterSettings(),
            settings: CompareSettings = CompareSettings(), reporter: Reporter | None = None) -> pd.DataFrame:
    """Mix, sweep the mixtures, build the consensus and the comparison; returns comparison.csv."""
    reporter = reporter or NullReporter()
    singles = [n for n in dict.fromkeys(names) if not is_derived(n)]
    RUNS.require(run)
    key = compare_key(run, singles, cluster_settings, settings)
    if run.stage_is_current("compare", key, [o.path(run) for o in OUTPUTS]):
        reporter.message("compare: up to date")
    else:
        started = time.perf_counter()
        _compare(run, singles, cluster_settings, settings, reporter)
        run.record_stage("compare", key, time.perf_counter() - started, singles=singles,
                         cluster=(run.stage_record("cluster") or {}).get("fingerprint"))
    return choose_best(run, settings.best)


def compare_key(run: RunFolder, singles: list[str], cluster_settings: ClusterSettings,
                settings: CompareSettings) -> str:
    """Of the heavy part: ``--best`` is left out, it is applied on every call."""
    return fingerprint("compare", COMPARE_VERSION, singles, (run.stage_record("cluster") or {}).get("fingerprint"),
                       asdict(replace(settings, best=None)), result_settings(cluster_settings))


def _compare(run: RunFolder, singles: list[str], cluster_settings: ClusterSettings, settings: CompareSettings,
             reporter: Reporter) -> None:
    table = run.load_collection()
    runs = read_runs(run)
    identity = cluster_settings.identity_column
    valid = common_valid_rows(run, tuple(singles))
    tuning, evaluation = split_tuning_rows(valid, table[identity] if identity in table.columns else None,
                                           settings.tuning_share, settings.tuning_rows, settings.seed)
    seconds, clock = {}, time.perf_counter()

    def lap(phase: str) -> None:
        nonlocal clock
        seconds[phase] = round(time.perf_counter() - clock, 1)
        clock = time.perf_counter()

    mixes, tuning_info = [], {}
    for spec in settings.specs():
        if spec.is_all and len(singles) < 2:  # the others were left out of the clustering
            reporter.message(f"mix_all: left out, only {', '.join(singles)} is clustered")
            continue
        if spec.is_auto:
            spec = informed_pair(run, singles, tuning, table, cluster_settings.label_columns, reporter)
            if spec is None:
                continue
        name, info = build_mixture(run, spec, singles, tuning, table, cluster_settings, settings, reporter)
        if name not in mixes:
            mixes.append(name)
            tuning_info[name] = info
    lap("fusion and weights")
    own = sweep_descriptors(run, mixes, cluster_settings, reporter, _labels(table, cluster_settings))
    lap("mixture sweeps")
    labels = {n: Clustering.load_labels(CLUSTERING.path(run, n)) for n in singles + mixes}
    if settings.consensus and len(singles) >= 2:
        own.append(build_consensus(run, singles, labels, valid, table, cluster_settings, settings))
        labels[CONSENSUS] = Clustering.load_labels(CLUSTERING.path(run, CONSENSUS))
    lap("consensus")
    own_runs = pd.concat(own, ignore_index=True) if own else pd.DataFrame(columns=RUN_COLUMNS)
    selected = pd.concat([runs, own_runs], ignore_index=True) if own else runs
    selected = selected[selected["selected"].astype(bool)].drop_duplicates("descriptor").set_index("descriptor")
    with reporter.task("Comparing clusterings", 3) as task:
        coarse = {n: Clustering.load_labels(COARSE_CLUSTERING.path(run, n)) for n in labels
                  if COARSE_CLUSTERING.exists(run, n)}
        comparison = comparison_table(run, singles, labels, selected, evaluation, table, settings,
                                      cluster_settings.label_columns, identity, coarse)
        task.advance()
        agreement = agreement_table({n: lab[evaluation] for n, lab in labels.items()}, settings.agreement_sample,
                                    settings.seed)
        task.advance()
        attribute_frame = attr.attribute_table(run, table)
        attribute_rows = sample_rows(evaluation, settings.agreement_sample, settings.seed + 9)
        scores = attr.attribute_scores({n: lab[attribute_rows] for n, lab in labels.items()}, attribute_frame,
                                       attribute_rows)
        task.advance()
    lap("comparison, agreement, attributes")
    comparison["captures"] = [attr.sentence(n, scores) for n in comparison["name"]]
    MIXTURE_RUNS.save(run, own_runs.reindex(columns=RUN_COLUMNS + [c for c in own_runs.columns
                                                                  if c not in RUN_COLUMNS]))
    AGREEMENT.save(run, agreement)
    ATTRIBUTES.save(run, scores)
    COMPARISON.save(run, comparison)
    COMPARE_INFO.save(run, {
        "common_space": COMMON_SPACE.format(dims=settings.block_dims), "best_rule": RULE,
        "not_eligible": {n: w for n, w in zip(comparison["name"], comparison["eligible_note"]) if w},
        "evaluation_rows": int(len(evaluation)), "tuning_rows": int(len(tuning)),
        "tuning_note": ("Held-out vehicles (whole vehicle ids) chose the mixture weights; every number of "
                        "comparison.csv, agreement.csv and attributes.csv is measured on the other rows"),
        "mixtures": tuning_info, "singles": singles,
        "attributes": list(attribute_frame.columns), "seconds": seconds,
    })


def _labels(table: pd.DataFrame, settings: ClusterSettings) -> pd.DataFrame | None:
    wanted = [c for c in (*settings.label_columns, settings.identity_column) if c and c in table.columns]
    return table[wanted] if wanted else None


def build_mixture(run: RunFolder, spec, singles: list[str], tuning: np.ndarray, table: pd.DataFrame,
                  cluster_settings: ClusterSettings, settings: CompareSettings, reporter: Reporter) -> tuple[str, dict]:
    """Store (or reuse) one mixture; weights measured on the tuning rows when none were given."""
    blocks, given = resolve_mix(spec, singles)
    name = mixture_name(blocks, spec.is_all, given)
    key = mixture_key(run, blocks, given, settings.block_norm, settings.block_dims, settings.mix_dims, settings.seed,
                      None if given else (settings.tune, settings.tuning_share, settings.tuning_rows))
    if name in run.descriptor_names() and run.descriptor_meta(name).get("fingerprint") == key:
        reporter.message(f"{name}: reused")
        meta = run.descriptor_meta(name)
        return name, {"blocks": meta["blocks"], "weights": meta["weights"], "tuning": meta["tuning"]}
    tuning_record = None
    weights = np.asarray(given if given else np.ones(len(blocks)), dtype=np.float64)
    # normalisation is unsupervised, so it is fitted once on a sample of all rows and shared by
    # the weight search and the stored mixture
    scalers = fit_blocks(run, blocks, sample_rows(common_valid_rows(run, blocks), FIT_ROWS, settings.seed),
                         settings.block_norm, settings.block_dims, settings.seed)
    if given is None:
        criterion = resolve_criterion(settings.tune, table, cluster_settings.identity_column)
        chosen, candidates = choose_weights(run, blocks, scalers, tuning, criterion, table,
                                            cluster_settings.identity_column, cluster_settings.ks(), settings.seed)
        weights = np.asarray(chosen)
        tuning_record = {"how": f"measured: {criterion} of k-means on {len(tuning):,} held-out rows",
                         "criterion": criterion, "rows": int(len(tuning)),
                         "candidates": candidates.to_dict(orient="records")}
        reporter.message(f"{name}: weights {', '.join(f'{b} {w:.2f}' for b, w in zip(blocks, weights))} "
                         f"({criterion} on {len(tuning):,} held-out rows)")
    meta = store_mixture(run, name, blocks, weights, key, settings.block_norm, settings.block_dims,
                         settings.mix_dims, settings.seed, tuning_record, scalers)
    return name, {"blocks": meta["blocks"], "weights": meta["weights"], "tuning": meta["tuning"]}


def informed_pair(run: RunFolder, singles: list[str], tuning: np.ndarray, table: pd.DataFrame,
                  label_columns: tuple[str, ...], reporter: Reporter):
    """``--mix auto``: for each label column, the single descriptor whose selected clustering
    has the highest AMI with it on the tuning rows (never the rows the comparison reports on).
    None, with a message, when fewer than two label columns or descriptors can be paired."""
    from sklearn.metrics import adjusted_mutual_info_score

    from vehiclust.cluster.metrics import _codes
    from vehiclust.compare.settings import MixSpec

    columns = [c for c in label_columns if c in table.columns]
    labels = {n: Clustering.load_labels(CLUSTERING.path(run, n))[tuning] for n in singles}
    picks, why = [], []
    for column in columns:
        codes = _codes(table[column].iloc[tuning].reset_index(drop=True))
        known = codes >= 0
        if known.sum() < 10:
            continue
        ranked = sorted(singles, key=lambda n: -adjusted_mutual_info_score(codes[known], labels[n][known]))
        pick = next((n for n in ranked if n not in picks), None)
        if pick is not None:
            picks.append(pick)
            why.append(f"{column}: {pick}")
    if len(picks) < 2:
        reporter.message("--mix auto: skipped, it needs two label columns (e.g. type and color) and two descriptors")
        return None
    reporter.message(f"--mix auto: {' + '.join(picks)} (best on the held-out rows for {'; '.join(why)})")
    return MixSpec(tuple(picks[:2]))


def build_consensus(run: RunFolder, singles: list[str], labels: dict[str, np.ndarray], valid: np.ndarray,
                    table: pd.DataFrame, cluster_settings: ClusterSettings, settings: CompareSettings) -> pd.DataFrame:
    """Consensus of the single descriptors' selected clusterings -> clusterings/consensus.npz and
    its runs.csv row."""
    from vehiclust.cluster.metrics import LabelChecks

    started = time.perf_counter()
    stacked = np.column_stack([labels[n][valid] for n in singles]).astype(np.int64)
    result = consensus(stacked, settings.consensus_sample, settings.seed, k_max=max(cluster_settings.ks()))
    n_total = len(table)
    full = np.full(n_total, -1, dtype=np.int32)
    sizes = np.bincount(result["labels"])
    order = np.argsort(-sizes, kind="stable")
    rename = np.empty(len(sizes), dtype=np.int64)
    rename[order] = np.arange(len(sizes))
    full[valid] = rename[result["labels"]]
    distance = np.full(n_total, np.nan, dtype=np.float32)
    distance[valid] = 1.0 - result["strength"]  # typical members: those every clustering agrees on
    CLUSTERING.save(run, Clustering(labels=full, distance=distance, centers=np.zeros((0, 0), np.float32),
                                    embedding_rows=valid, preprocessing="co-association",
                                    algorithm="evidence_accumulation",
                                    params=f"k={result['k']}, of {', '.join(singles)}"), CONSENSUS)
    label_table = _labels(table, cluster_settings)
    checks = LabelChecks(label_table.iloc[valid].reset_index(drop=True) if label_table is not None else None,
                         cluster_settings.label_columns, cluster_settings.identity_column, settings.seed)
    share = sizes / sizes.sum()
    record = {"descriptor": CONSENSUS, "preprocessing": "co-association", "algorithm": "evidence_accumulation",
              "params": f"k={result['k']}", "k": result["k"], "n_clusters": result["k"], "n_rows": len(valid),
              "stability": result["stability"], "stability_std": 0.0, "noise_share": 0.0,
              "min_cluster_share": float(share.min()), "max_cluster_share": float(share.max()),
              "size_balance": float(-(share * np.log(share)).sum() / np.log(len(share))) if len(share) > 1 else 0.0,
              "score": np.nan, "selected": True,
              "reason": (f"evidence accumulation of {', '.join(singles)}: average linkage on 1 - co-association of "
                         f"{result['sample_rows']:,} rows, cut at k={result['k']}, the cut sharing the most information "
                         f"with them (mean NMI); other rows join "
                         f"the cluster they co-occur with most"),
              "note": "", "seconds": round(time.perf_counter() - started, 3),
              **checks(full[valid])}
    return pd.DataFrame([record])


def choose_best(run: RunFolder, override: str | None) -> pd.DataFrame:
    """Apply the best rule (or the override) to comparison.csv; store the choice in best.json."""
    comparison = COMPARISON.load(run)
    comparison, name, why, rule = apply_best(comparison, override)
    measure = deciding_measure(comparison)
    ranked = comparison.sort_values("rank")
    others = scored_runners_up(pd.concat([ranked[ranked["name"] == name], ranked[ranked["name"] != name]]), measure)
    value = comparison.loc[comparison["name"] == name, measure].iloc[0]
    notes = comparison["eligible_note"].astype(object).fillna("").astype(str)
    tied = comparison.loc[comparison["tie"].astype(bool) & (comparison["name"] != name), "name"]
    BestChoice(name=name, rule=rule, reason=why, measure=measure, score=_number(value),
               runner_up=str(others["name"].iloc[0]) if len(others) else None,
               runner_up_score=_number(others[measure].iloc[0]) if len(others) else None,
               override=override, cluster_key=cluster_key(run), tie_with=[str(n) for n in tied],
               not_eligible=dict(zip(comparison.loc[notes != "", "name"], notes[notes != ""]))).save(run)
    COMPARISON.save(run, comparison)
    return comparison


def _number(value) -> float | None:
    return None if pd.isna(value) else float(value)


# -- the stage class (core) ----------------------------------------------------------------------
class CompareStage(Stage):
    """Mixtures, consensus and comparison of the clusterings of ``ctx.descriptors`` (those the
    cluster stage could cluster, :func:`clusterable`). Always runs: the heavy part skips itself
    while :func:`compare_key` is unchanged, the best rule is cheap and applied on every call (so
    changing only ``--best`` costs nothing)."""

    name = "compare"
    always_runs = True

    def __init__(self, settings: CompareSettings | None = None, cluster_settings: ClusterSettings | None = None):
        super().__init__(settings or CompareSettings())
        self.cluster_settings = cluster_settings or ClusterSettings()

    def key(self, ctx: RunContext) -> str:
        singles = [n for n in dict.fromkeys(clusterable(ctx.run, ctx.descriptors)) if not is_derived(n)]
        return compare_key(ctx.run, singles, self.cluster_settings, self.settings)

    def outputs(self, ctx: RunContext) -> list[Path]:
        return [a.path(ctx.run) for a in OUTPUTS]

    def run(self, ctx: RunContext) -> dict:
        compare(ctx.run, clusterable(ctx.run, ctx.descriptors), self.cluster_settings, self.settings, ctx.reporter)
        return ctx.run.stage_facts(self.name)
