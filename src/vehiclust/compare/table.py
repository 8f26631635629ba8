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
The footing space (:func:`footing_spaces`)
    Where the best rule measures structure (``excess``): each clustering in the linear space of
    the descriptor it was computed on (a single descriptor made one block as the common space
    makes its blocks; a mixture's matrix as stored, centred and scaled), the consensus in the
    common space (it is computed from every single descriptor, so it has no space of its own;
    there its excess is diluted as a single's would be, and it wins on excess only when its
    structure stands out even so). Not the common space for all: there the other
    descriptors' blocks, which carry none of this clustering's structure, hold most of the
    variance, and an excellent fine clustering of one descriptor (digits' efficientnet_lite0 at
    k=9, NMI 0.73) measured below column-permuted data. Not the sweep's UMAP space either: UMAP
    packs any data into clumps and inflates every clustering's excess alike.
The rows
    Everything is measured on the evaluation rows: rows valid in every descriptor, minus the
    held-out vehicles that chose the mixture weights.
The best rule (:func:`rule_order`)
    1. **Not eligible**: a descriptor that does not apply to the collection (a ``vehicle``-tagged
       descriptor when most images hold no vehicle: P(not a vehicle) >= ``NO_VEHICLE_PROBABILITY``
       for more than ``NO_VEHICLE_MAJORITY`` of them), and a clustering with no structure beyond a
       structureless reference (``excess`` not above two standard errors and ``MIN_EXCESS``).
    2. When at least ``MIN_VOTERS`` single descriptors apply and at least two are eligible, the
       eligible one that agrees most with the others: the highest ``agreement``, its mean AMI
       with the other single descriptors that apply (AMI is corrected for chance, so more
       clusters gain nothing by themselves; each view's idiosyncrasies, such as a softmax's
       corners or camera light, are not shared by the others, the structure of the collection
       is). Every descriptor that
       applies votes, eligible or not: a structureless voter agrees with every candidate alike
       (AMI about 0) and changes no order, while an excess that is merely not significant (the
       demo of seed 1: vehicle_type 0.005 +- 0.043) must not take a real view's vote away and
       leave two colour descriptors to agree with each other. Otherwise the highest
       ``excess_score = coverage x excess+ x stability+`` among the eligible, ``excess`` being the
       geometry in the footing space beyond k-means with as many clusters on that space with each
       column permuted independently (:mod:`vehiclust.cluster.reference`): the reference has the
       candidate's own k, dimensions and marginals, so few dimensions, few clusters and
       non-Gaussian marginals (a lone binary column) gain nothing by themselves. Mixtures and the
       consensus are built from the single descriptors, so they do not vote; they are
       delivered by the rule only through ``excess_score``, or with ``--best``. Chosen by the
       selection benchmark over the Gaussian reference, common_score, the permuted excess alone
       and agreement among all clusterings (the worst regret over every collection, the demo
       of seeds 0, 1 and 2 included; the candidates' table is in the notes).
    3. Every eligible clustering within one standard error of the difference from the leader
       (``excess_std``, from resampled rows and references) is **tied** with it (``tie_with``),
       and the tie goes to a single descriptor before a mixture before the consensus (the
       simplest explanation first), then to the first in the run's order of descriptors: a rule
       no measurement enters, so seed, threads and load cannot flip it.
    4. When nothing is eligible, the best of the rest that apply is delivered, and the reason
       says the structure is weak.
    Label columns never vote, and **vehicle ids are a label**: they are an annotation some
    collections carry (the VeRi-Wild folders), not a property of the images, so a rule that used
    them would be a different rule on every collection without them. ``identity_lift`` is
    reported beside the choice as its check. ``--best NAME`` overrides the rule.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from sklearn.metrics import silhouette_score

from vehiclust.cluster.metrics import LabelChecks, cluster_geometry, internal_metrics
from vehiclust.cluster.select import selection_score
from vehiclust.cluster.reference import excess, resampled_agreement
from vehiclust.compare.fusion import FIT_ROWS, block_rows, fit_blocks, sample_rows
from vehiclust.compare.settings import ALIASES, CONSENSUS, MIX_PREFIX, CompareSettings
from vehiclust.errors import VehiclustError
from vehiclust.rules import JOINT, JOINT_COLUMNS, joint_label
from vehiclust.runfolder import RunFolder

COMMON_SPACE = ("equal-weight block-normalised concatenation of every single descriptor "
                "(each block centred, PCA to at most {dims} dims, total variance 1)")
RULE = ("with at least 3 single descriptors that apply and at least 2 of them eligible, the eligible one with "
        "the highest agreement = mean AMI with the other single descriptors that apply; otherwise the highest excess_score "
        "among the eligible clusterings; "
        "eligible: a descriptor that applies to the collection and a clustering with structure beyond a "
        "structureless reference (excess_score = coverage x excess+ x stability+, excess = (geometry - reference) "
        "/ (1 - reference) in the linear space of the clustering's own descriptor, the consensus's in the common "
        "space, reference = k-means with as many clusters on that space with each column permuted); clusterings "
        "within one standard error of the leader are tied, and a tie goes to a single descriptor before a mixture "
        "before the consensus, then to the first in the run's order; label columns and vehicle ids "
        "(identity_lift) only check the choice")
MEASURE = "excess_score"
# what counts as "no structure": measured on the selection benchmark (seed 0), structureless data
# (pure noise, a lone binary column, the flat collection, a consensus of them) gives -0.045..-0.016
# in its own space, the digits and planted groups 0.024 (digits' colour histogram) and more; two
# standard errors above a small floor
MIN_EXCESS = 0.01
NO_VEHICLE_PROBABILITY = 0.5
NO_VEHICLE_MAJORITY = 0.5
KIND_ORDER = {"descriptor": 0, "mixture": 1, "consensus": 2}
MIN_VOTERS = 3  # single descriptors that apply, for agreement to decide: with two, each agrees with the other alike


def kind_of(name: str) -> str:
    return "consensus" if name == CONSENSUS else "mixture" if name.startswith(MIX_PREFIX) else "descriptor"


def common_space(run: RunFolder, singles: list[str], rows: np.ndarray, settings: CompareSettings) -> np.ndarray:
    """The common space (see the module docstring) of ``rows``; blocks fitted on a sample of them."""
    fit = sample_rows(rows, FIT_ROWS, settings.seed)
    scalers = fit_blocks(run, tuple(singles), fit, settings.block_norm, settings.block_dims, settings.seed)
    return block_rows(run, tuple(singles), scalers, rows, np.ones(len(singles)))


def footing_spaces(run: RunFolder, names: list[str], rows: np.ndarray, common: np.ndarray,
                   settings: CompareSettings) -> dict[str, np.ndarray]:
    """Each clustering's footing space on ``rows``: a single descriptor as one block of the
    common space is made (``block_norm``, PCA to at most ``block_dims``, one scale), a
    mixture's matrix as stored (centred and scaled only: it was normalised and reduced when it
    was made), and the common space itself for the consensus, which is computed from every
    single descriptor."""
    fit = sample_rows(rows, FIT_ROWS, settings.seed)
    spaces = {}
    for name in names:
        if kind_of(name) == "consensus":
            spaces[name] = common
            continue
        matrix = run.load_descriptor(name)
        norm, dims = ("variance", matrix.shape[1]) if kind_of(name) == "mixture" else \
            (settings.block_norm, settings.block_dims)
        scaler = fit_blocks(run, (name,), fit, norm, dims, settings.seed)[0]
        spaces[name] = scaler.transform(matrix[rows])
    return spaces


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
                     label_columns: tuple[str, ...], identity_column: str,
                     coarse: dict[str, np.ndarray] | None = None) -> pd.DataFrame:
    """One row per clustering in ``labels`` (full-length label arrays); ``selected`` holds each
    one's runs.csv row (own-space metrics, stability), indexed by name; ``coarse`` the broad level
    of those delivered as the finer level of a hierarchy, whose structure the footing measures."""
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
    spaces = footing_spaces(run, list(labels), shared, X, settings)
    out = add_footing(out, spaces, {n: lab[shared] for n, lab in labels.items()}, settings.seed,
                      not_applicable(run, table, singles), {n: lab[shared] for n, lab in (coarse or {}).items()})
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


def add_footing(frame: pd.DataFrame, spaces: dict[str, np.ndarray], labels: dict[str, np.ndarray], seed: int,
                inapplicable: dict[str, str], coarse: dict[str, np.ndarray] | None = None) -> pd.DataFrame:
    """The footing columns (:mod:`vehiclust.cluster.reference`, permuted reference, each
    clustering in its footing space, ``spaces``) and ``eligible_note``.

    The excess of a clustering delivered as the finer level of a hierarchy is its broad level's
    (``coarse``): that split is the structure the hierarchy stands on; the finer one is measured
    inside each broad cluster by the sweep."""
    frame = frame.copy()
    coarse = coarse or {}
    frame["excess_of"] = ["cluster_coarse" if n in coarse else "cluster" for n in frame["name"]]
    frame["excess_space"] = ["common" if kind_of(n) == "consensus" else "own" for n in frame["name"]]
    measured = [coarse.get(name, labels[name]) for name in frame["name"]]
    found = pd.DataFrame([excess(spaces[name], lab, "permuted", seed) for name, lab in zip(frame["name"], measured)],
                         index=frame.index)
    frame["excess_k"] = [len(np.unique(lab[lab >= 0])) for lab in measured]
    frame["geometry"], frame["reference"] = found["geometry"], found["reference"]
    frame["excess"], frame["excess_std"] = found["excess"], found["excess_std"]
    weight = (1 - frame["noise_share"].astype(float)) * frame["stability"].astype(float).clip(0, 1).fillna(0.0)
    frame[MEASURE] = weight * frame["excess"].clip(lower=0)
    frame[MEASURE + "_std"] = weight * frame["excess_std"]
    frame["applies"] = ~frame["name"].isin(list(inapplicable))
    frame["eligible_note"] = eligibility(frame, inapplicable)
    voters = frame[frame["applies"] & (frame["kind"] == "descriptor")]["name"].tolist()
    frame["agreement"], frame["agreement_std"] = np.nan, np.nan
    if len(voters) >= MIN_VOTERS:
        found = resampled_agreement({n: labels[n] for n in voters}, seed)
        at = frame["name"].isin(voters)
        frame.loc[at, "agreement"] = [found[n][0] for n in frame.loc[at, "name"]]
        frame.loc[at, "agreement_std"] = [found[n][1] for n in frame.loc[at, "name"]]
    return frame


def deciding_measure(frame: pd.DataFrame) -> str:
    """``agreement`` when at least ``MIN_VOTERS`` single descriptors vote and two of them are
    eligible (with one, there is no choice for agreement to make), else ``excess_score``."""
    if "agreement" not in frame.columns or frame["agreement"].notna().sum() < MIN_VOTERS:
        return MEASURE
    return "agreement" if eligible_voters(frame).sum() >= 2 else MEASURE


def eligible_voters(frame: pd.DataFrame) -> pd.Series:
    """The rows that may be delivered under the agreement rule: eligible single descriptors that voted."""
    return frame["agreement"].notna() & (frame["eligible_note"].astype(object).fillna("").astype(str) == "")


def not_applicable(run: RunFolder, table: pd.DataFrame, singles: list[str]) -> dict[str, str]:
    """{descriptor: why} for the ``vehicle``-tagged descriptors when most images hold no vehicle."""
    from vehiclust.outliers.evidence import load_not_a_vehicle

    not_vehicle = load_not_a_vehicle(run, table)
    if not_vehicle is None or not len(not_vehicle):
        return {}
    share = float((not_vehicle >= NO_VEHICLE_PROBABILITY).mean())
    if share <= NO_VEHICLE_MAJORITY:
        return {}
    why = (f"does not apply: {share:.0%} of the images hold no vehicle (P(not a vehicle) >= "
           f"{NO_VEHICLE_PROBABILITY}) and it describes vehicles")
    return {name: why for name in singles if "vehicle" in descriptor_tags(name)}


def descriptor_tags(name: str) -> tuple[str, ...]:
    """The registry's tags of a computed descriptor; () for imported ones and mixtures."""
    from vehiclust.describe.registry import DESCRIPTORS

    return tuple(DESCRIPTORS.get(name).tags) if name in DESCRIPTORS else ()


def eligibility(frame: pd.DataFrame, inapplicable: dict[str, str]) -> pd.Series:
    """'' for clusterings that may be delivered, else why not (the rule, step 1)."""
    why = pd.Series("", index=frame.index, dtype=object)
    for i, row in frame.iterrows():
        needed = max(MIN_EXCESS, 2 * float(row["excess_std"]))
        if row["name"] in inapplicable:
            why[i] = inapplicable[row["name"]]
        elif not float(row["excess"]) > needed:
            why[i] = (f"no structure beyond a structureless reference (excess {row['excess']:.3f}, "
                      f"needs > {needed:.3f})")
    return why


def rule_order(frame: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series, bool]:
    """The rows best first (the module docstring's rule), which rows tie with the leader, and
    whether any row was eligible."""
    note = frame["eligible_note"].astype(object).fillna("").astype(str)  # '' reads back as NaN
    ok = note == ""
    applies = frame["applies"].astype(bool)
    pool = frame[ok] if ok.any() else frame[applies] if applies.any() else frame
    measure = deciding_measure(frame)
    if measure == "agreement":
        pool = frame[eligible_voters(frame)]
    value, spread = pool[measure].astype(float).fillna(-np.inf), pool[measure + "_std"].astype(float).fillna(0.0)
    leader = value.idxmax()
    tied = pool[value >= value[leader] - np.hypot(spread[leader], spread)]
    first = tied.assign(_kind=tied["kind"].map(KIND_ORDER), _order=tied.index).sort_values(["_kind", "_order"])
    rest = frame.assign(_ok=ok, _value=frame[MEASURE].astype(float).fillna(-np.inf)).drop(index=first.index)
    rest = rest.sort_values(["_ok", "_value"], ascending=False, kind="stable")
    ordered = pd.concat([frame.loc[first.index], frame.loc[rest.index]])
    tie = frame.index.isin(tied.index) & (len(tied) > 1)
    return ordered, pd.Series(tie, index=frame.index), bool(ok.any())


def apply_best(frame: pd.DataFrame, override: str | None) -> tuple[pd.DataFrame, str, str, str]:
    """Mark the best row (``best``, ``rank``, ``tie``); returns (frame, name, why, the rule)."""
    frame = frame.copy()
    ranked, tie, any_eligible = rule_order(frame)
    by_rule = str(ranked["name"].iloc[0])
    if override:
        name = resolve_name(override, list(frame["name"]))
        why = f"best overall: chosen by the user (--best {override}); the rule would pick {by_rule}"
    else:
        name, why = by_rule, _why(frame, ranked, tie, any_eligible)
    frame["best"] = frame["name"] == name
    frame["rank"] = pd.Series(np.arange(1, len(ranked) + 1), index=ranked.index).reindex(frame.index)
    frame["tie"] = tie
    return frame, name, why, RULE


def scored_runners_up(ranked: pd.DataFrame, measure: str) -> pd.DataFrame:
    """The ranked candidates after the best that the deciding measure scored (under the agreement
    rule, mixtures and the consensus do not vote, so they have no agreement to compare), the
    eligible ones only when there are any (a descriptor that does not apply is no runner-up)."""
    rest = ranked.iloc[1:]
    rest = rest[rest[measure].notna()]
    eligible = rest["eligible_note"].astype(object).fillna("").astype(str) == ""
    return rest[eligible] if eligible.any() else rest


def _why(frame: pd.DataFrame, ranked: pd.DataFrame, tie: pd.Series, any_eligible: bool) -> str:
    top = ranked.iloc[0]
    measure = deciding_measure(frame)
    text = f"best overall: {measure} {top[measure]:.3f} ± {top[measure + '_std']:.3f}"
    if measure == "agreement":
        voters = int(frame["agreement"].notna().sum())
        text += f" (mean AMI with the other {voters - 1} single descriptors that apply)"
    level = " (its coarse level, cluster_coarse)" if top.get("excess_of") == "cluster_coarse" else ""
    k = int(top.get("excess_k", top["n_clusters"]))
    text += f"; excess {top['excess']:.3f} over a structureless reference at k={k}{level}"
    if "identity_lift" in frame.columns and pd.notna(top.get("identity_lift")):
        text += f"; check: identity_lift {top['identity_lift']:.3f}"
    tied = [str(n) for n in frame.loc[tie, "name"] if n != top["name"]]
    if tied:
        text += (f"; TIE with {', '.join(tied)} (within one standard error), broken by the stable rule: a single "
                 f"descriptor before a mixture before the consensus, then the run's order")
    elif len(runners := scored_runners_up(ranked, measure)) > 0:
        runner = runners.iloc[0]
        text += f"; runner-up {runner['name']} ({measure} {runner[measure]:.3f})"
    excluded = frame[frame["eligible_note"].astype(object).fillna("").astype(str) != ""]
    if len(excluded):
        text += "; not eligible: " + "; ".join(f"{n}: {w}" for n, w in zip(excluded["name"], excluded["eligible_note"]))
    if not any_eligible:
        text = "weak structure: no clustering has structure beyond a structureless reference; " + text
    return text


def _own_space(own: pd.Series) -> str:
    """"N x D" of the space the run was measured in ('' for the consensus, which has none)."""
    dims = own.get("space_dims")
    if pd.isna(own.get("n_rows")) or dims is None or pd.isna(dims):
        return ""
    return f"{int(own['n_rows'])} x {int(dims)}"
