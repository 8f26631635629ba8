"""The best clustering as its own artifact, ``best.json``, and the runs of every clustering in
one view.

``best.json`` is written by the compare stage only (:func:`vehiclust.compare.stage.choose_best`,
on every call, so ``--best`` costs nothing): the name, the rule, the reason, the score of the
leader and the runner-up under that rule, and the cluster stage's fingerprint it was chosen on.
``runs.csv`` (cluster stage) and ``mixture_runs.csv`` (compare stage) are each written by one
stage; :func:`all_runs` joins them and marks ``best_overall`` from ``best.json``, or, when no
comparison was made on the current clustering, from the cluster stage's rule
(:func:`vehiclust.cluster.select.overall_choice`). The report, ``clusters.csv`` and
:func:`vehiclust.load_run` read runs through it.
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields

import pandas as pd

from vehiclust.cluster.select import overall_choice
from vehiclust.cluster.sweep import RUN_COLUMNS
from vehiclust.errors import VehiclustError
from vehiclust.runfolder import BEST, MIXTURE_RUNS, RUNS, Artifact, RunFolder
# the combined view's leading columns: runs.csv's, with the overall choice beside ``selected``
VIEW_COLUMNS = RUN_COLUMNS[:RUN_COLUMNS.index("selected") + 1] + ["best_overall"] + \
    RUN_COLUMNS[RUN_COLUMNS.index("selected") + 1:]


@dataclass(frozen=True)
class BestChoice:
    name: str  # the clustering: a descriptor, a mixture or the consensus
    rule: str  # the rule in words (or that the user chose)
    reason: str  # the sentence added to that run's reason
    measure: str  # the column the rule ranks by
    score: float | None  # the chosen clustering's value of ``measure``
    runner_up: str | None
    runner_up_score: float | None
    override: str | None  # --best as the user wrote it
    cluster_key: str | None  # fingerprint of the cluster stage the choice was made on
    tie_with: list[str] = field(default_factory=list)  # clusterings tied with the leader (the tie's rule: compare.table)
    not_eligible: dict[str, str] = field(default_factory=dict)  # clustering: why it may not be delivered

    def save(self, run: RunFolder) -> None:
        BEST.save(run, asdict(self))

    @classmethod
    def load(cls, run: RunFolder) -> BestChoice | None:
        """The stored choice, or None when there is none or it was made on another clustering."""
        if not BEST.exists(run):
            return None
        stored = BEST.load(run)
        known = {f.name: f for f in fields(cls)}
        required = {n for n, f in known.items() if f.default is MISSING and f.default_factory is MISSING}
        problems = [f"{what} {', '.join(sorted(names))}" for what, names in
                    (("no", required - stored.keys()), ("unknown", stored.keys() - known.keys())) if names]
        if not isinstance(stored["name"], str):
            problems.append("a name that is not text")
        if problems:
            raise VehiclustError(f"{BEST.path(run)}: not a choice vehiclust wrote ({'; '.join(problems)}); "
                                 f"re-run `vehiclust compare {run.root}`")
        choice = cls(**stored)
        return choice if choice.cluster_key == cluster_key(run) else None


def cluster_key(run: RunFolder) -> str | None:
    return (run.stage_record("cluster") or {}).get("fingerprint")


def read_runs(run: RunFolder, artifact: Artifact = RUNS) -> pd.DataFrame:
    runs = artifact.load(run)
    runs["reason"] = runs["reason"].astype(object).fillna("")  # an all-empty column reads as float
    return runs


def all_runs(run: RunFolder) -> pd.DataFrame:
    """runs.csv, then the mixtures' and the consensus's runs, with ``best_overall`` marked and
    its reason appended to that run's."""
    runs = read_runs(run).drop(columns=["best_overall"], errors="ignore")
    best = BestChoice.load(run)
    if best is not None and MIXTURE_RUNS.exists(run):
        derived = read_runs(run, MIXTURE_RUNS)
        if len(derived):
            runs = pd.concat([runs, derived], ignore_index=True)
    chosen, why = runs.index[[]], ""
    if best is not None:
        chosen, why = runs.index[runs["selected"].astype(bool) & (runs["descriptor"] == best.name)], best.reason
    if chosen.empty:  # no current comparison (or its runs are gone): the cluster stage's rule
        index, why = overall_choice(runs)
        chosen = runs.index[[index]] if index is not None else runs.index[[]]
    runs["best_overall"] = runs.index.isin(chosen)
    runs.loc[chosen, "reason"] = runs.loc[chosen, "reason"] + "; " + why
    leading = [c for c in VIEW_COLUMNS if c in runs.columns]
    return runs[leading + [c for c in runs.columns if c not in leading]]


def best_name(run: RunFolder) -> str:
    """The name of the best clustering (see :func:`all_runs`)."""
    return best_in(all_runs(run))


def best_in(runs: pd.DataFrame) -> str:
    """The clustering marked ``best_overall`` in :func:`all_runs`' view."""
    return str(runs.loc[runs["best_overall"], "descriptor"].iloc[0])
