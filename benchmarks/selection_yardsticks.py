"""Selection regret: how much worse the clustering vehiclust delivers is than the best one it computed.

The real pipeline (``run_pipeline`` with the settings a user of ``vehiclust run`` gets, k not
given) runs on labelled collections; the labels stay outside the run folder, in this script, so
they can only check the choice. Every clustering the sweep computed is kept (the benchmark
option ``ClusterSettings(keep_run_labels=True)``) and scored against the labels: the best of them
is the tool's own oracle, and

    regret = NMI(oracle) - NMI(delivered)

overall and per descriptor (its selected run against its own best run). Each delivered level
has its own row: ``cluster`` (the regret of the summary and the targets) and ``cluster_coarse``
(the broad level, when the delivered clustering is the finer level of a hierarchy); the better
level is never picked by looking at the labels.
Noise (-1) is scored as one more group: a clustering that refuses rows pays for it.

The collections:

* ``digits``: scikit-learn's 1,797 handwritten digits written as a folder of 64 x 64 PNG images
  (real labelled images that are not vehicles); label: the digit;
* ``demo``: the demo collection (``vehiclust.demo``, size ``--demo-size``); labels: type, colour
  and type+colour (the primary one), on the clean images of its ground truth;
* ``case``: a case bundle (images_paths.csv + descriptor pickles, no images) with three
  descriptors: ``rich`` (8 planted groups of vehicles), ``binary`` (its only structure is one
  binary attribute per vehicle, independent of the groups) and ``noise`` (pure Gaussian noise);
  label: the group;
* ``flat``: a case bundle with descriptors of no structure at all: the delivered choice must
  say "weak".

Run (nice: the machine is shared)::

    nice .venv/bin/python benchmarks/selection_yardsticks.py [--only digits,case] [--case-rows 2000]
        [--digits-rows 1797] [--flat-rows 800] [--demo-size small] [--twice] [--keep DIR] [--csv FILE]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pickle
import platform
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.metrics import adjusted_rand_score, normalized_mutual_info_score

from vehiclust.cluster import ClusterSettings
from vehiclust.compare.best import all_runs
from vehiclust.pipeline import RunSettings, run_pipeline
from vehiclust.report.stage import ReportSettings
from vehiclust.runfolder import CLUSTERING, CLUSTERS, RUN_LABELS, RunFolder

WEAK_WORD = "weak"
PER_VEHICLE = 8


@dataclass
class Collection:
    """An input for ``vehiclust run`` and the truth that checks it (by collection path)."""

    name: str
    input: Path
    truth: pd.DataFrame  # "path" plus one column per label; rows missing here are not scored
    primary: str | None  # the label the overall regret is measured on (None: no structure)
    labels: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- the collections

def digits_collection(root: Path, rows: int, seed: int) -> Collection:
    """sklearn's digits as 64 x 64 greyscale PNGs in one flat folder (the file name says nothing)."""
    from PIL import Image
    from sklearn.datasets import load_digits

    X, y = load_digits(return_X_y=True)
    pick = np.sort(np.random.default_rng(seed).permutation(len(y))[:rows])
    folder = root / "digits"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, index in enumerate(pick):
        pixels = (255 - X[index].reshape(8, 8) * (255 / 16)).astype(np.uint8)  # dark ink on paper
        name = f"{i:05d}.png"
        if not (folder / name).exists():  # with --keep, a second run reuses the folder's stages
            Image.fromarray(pixels, "L").resize((64, 64), Image.BILINEAR).convert("RGB").save(folder / name)
        paths.append(name)
    truth = pd.DataFrame({"path": paths, "digit": y[pick].astype(str)})
    return Collection("digits", folder, truth, "digit", ["digit"])


def demo_collection(root: Path, size: str, seed: int) -> Collection:
    from vehiclust.cache import cache_root
    from vehiclust.demo import build_demo, load_ground_truth
    from vehiclust.demo_run import parse_size

    size = parse_size(size)
    folder = cache_root() / "demo" / f"{size}-seed{seed}"
    demo = build_demo(folder, size=size, seed=seed)
    truth = load_ground_truth(folder)
    clean = truth[~truth["is_outlier"].astype(bool)].copy()
    clean["type+color"] = clean["type"].astype(str) + "/" + clean["color"].astype(str)
    return Collection("demo", Path(demo.root), clean[["path", "type", "color", "type+color"]], "type+color",
                      ["type+color", "type", "color"])


def _bundle(folder: Path, n_vehicles: int, descriptors: dict[str, np.ndarray]) -> list[str]:
    """Write images_paths.csv (VeRi-Wild paths, 8 images per vehicle) and the pickles; returns
    the collection paths as ingest writes them."""
    rows = len(next(iter(descriptors.values())))
    vehicle = np.arange(rows) // PER_VEHICLE
    windows = [f"veriwild\\1\\{v + 1:05d}\\{i + 1:06d}.jpg" for i, v in enumerate(vehicle)]
    if (folder / "images_paths.csv").exists():  # with --keep, a second run reuses the folder's stages
        return windows
    (folder / "descriptors").mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"paths": windows}).to_csv(folder / "images_paths.csv", index=False)
    for name, matrix in descriptors.items():
        with open(folder / "descriptors" / f"{name}.pickle", "wb") as fh:
            pickle.dump(matrix.astype(np.float32), fh, protocol=pickle.HIGHEST_PROTOCOL)
    return windows


def relu_features(latent: np.ndarray, cols: int, rng: np.random.Generator) -> np.ndarray:
    """Non-negative features like a CNN's: a random ReLU layer over the latent vectors."""
    weights = rng.normal(size=(latent.shape[1], cols)) / np.sqrt(latent.shape[1])
    return np.maximum(latent @ weights, 0)


def case_collection(root: Path, rows: int, seed: int, groups: int = 8) -> Collection:
    """rich: planted groups; binary: one binary attribute per vehicle; noise: nothing."""
    rng = np.random.default_rng(seed)
    n_vehicles = rows // PER_VEHICLE
    rows = n_vehicles * PER_VEHICLE
    vehicle = np.arange(rows) // PER_VEHICLE
    group = rng.integers(0, groups, n_vehicles)[vehicle]
    attribute = rng.integers(0, 2, n_vehicles)[vehicle]  # independent of the group
    latent = 16
    centres = rng.normal(size=(groups, latent)) * 1.2
    rich_latent = centres[group] + 0.5 * rng.normal(size=(n_vehicles, latent))[vehicle] + rng.normal(size=(rows, latent))
    binary = rng.normal(size=(rows, 12))
    binary[:, 0] += 6.0 * attribute  # a clean two-way split and nothing else
    descriptors = {"rich": relu_features(rich_latent, 256, rng), "binary": binary,
                   "noise": rng.normal(size=(rows, 64))}
    folder = root / "case"
    paths = _bundle(folder, n_vehicles, descriptors)
    truth = pd.DataFrame({"path": paths, "group": group.astype(str), "attribute": attribute.astype(str)})
    return Collection("case", folder, truth, "group", ["group", "attribute"])


def flat_collection(root: Path, rows: int, seed: int) -> Collection:
    """No structure at all: Gaussian and uniform noise."""
    rng = np.random.default_rng(seed + 7)
    rows = rows // PER_VEHICLE * PER_VEHICLE
    folder = root / "flat"
    paths = _bundle(folder, rows // PER_VEHICLE, {"gauss": rng.normal(size=(rows, 64)),
                                                  "uniform": rng.uniform(size=(rows, 16))})
    return Collection("flat", folder, pd.DataFrame({"path": paths}), None, [])


# ---------------------------------------------------------------- scoring

def truth_by_row(run: RunFolder, collection: Collection) -> pd.DataFrame:
    """The truth aligned with the collection's rows (NaN where a row has none)."""
    paths = run.load_collection()["path"].astype(str).str.replace("\\", "/", regex=False)
    truth = collection.truth.assign(path=collection.truth["path"].astype(str).str.replace("\\", "/", regex=False))
    aligned = pd.DataFrame({"path": paths}).merge(truth, on="path", how="left")
    if len(aligned) != len(paths):
        raise SystemExit(f"{collection.name}: truth paths are not unique")
    if collection.labels and aligned[collection.labels[0]].isna().all():
        raise SystemExit(f"{collection.name}: no collection path matches the truth (e.g. {paths.iloc[0]!r})")
    return aligned


def scores(labels: np.ndarray, truth: pd.Series) -> tuple[float, float]:
    known = truth.notna().to_numpy()
    y, lab = truth[known].astype(str).to_numpy(), labels[known]
    return float(normalized_mutual_info_score(y, lab)), float(adjusted_rand_score(y, lab))


def every_run(run: RunFolder, runs: pd.DataFrame) -> pd.DataFrame:
    """One row per clustering the tool computed: descriptor, run label, selected, labels."""
    records = []
    for name in runs["descriptor"].unique():
        if RUN_LABELS.exists(run, name):
            stored = RUN_LABELS.load(run, name)
            for i, labels in enumerate(stored["labels"]):
                records.append({"descriptor": name, "labels": labels,
                                "run": f"{stored['algorithm'][i]} on {stored['preprocessing'][i]} ({stored['params'][i]})"})
        elif CLUSTERING.exists(run, name):  # the consensus: one clustering, no sweep
            stored = CLUSTERING.load(run, name)
            records.append({"descriptor": name, "labels": stored.labels,
                            "run": f"{stored.algorithm} ({stored.params})"})
    return pd.DataFrame(records)


def delivered_levels(run: RunFolder) -> dict[str, np.ndarray]:
    """clusters.csv's delivered columns (cluster, and cluster_coarse where the file has one), in
    collection row order."""
    clusters = CLUSTERS.load(run)
    paths = run.load_collection()["path"].astype(str)
    clusters = clusters.set_index("path").reindex(paths)
    return {c: clusters[c].fillna(-1).astype(int).to_numpy() for c in ("cluster", "cluster_coarse")
            if c in clusters.columns}


def best_row(runs: pd.DataFrame) -> pd.Series:
    return runs[runs["best_overall"].astype(bool)].iloc[0]


def regret_rows(collection: Collection, run: RunFolder) -> list[dict]:
    runs = all_runs(run)
    truth = truth_by_row(run, collection)
    computed = every_run(run, runs)
    best = best_row(runs)
    delivered = delivered_levels(run)
    weak = WEAK_WORD in str(best["reason"]).lower()
    rows = []
    for label in collection.labels:
        y = truth[label]
        computed[["nmi", "ari"]] = [scores(lab, y) for lab in computed["labels"]]
        oracle = computed.loc[computed["nmi"].idxmax()]
        for level, lab in delivered.items():
            nmi, ari = scores(lab, y)
            rows.append({"collection": collection.name, "label": label + (" *" if label == collection.primary else ""),
                         "descriptor": f"DELIVERED {best['descriptor']}", "level": level,
                         "delivered": _short(best, level), "nmi": nmi, "ari": ari,
                         "oracle": f"{oracle['descriptor']}: {oracle['run']}", "oracle_nmi": oracle["nmi"],
                         "oracle_ari": oracle["ari"], "regret": oracle["nmi"] - nmi, "weak": weak})
        for name, own in computed.groupby("descriptor", sort=False):
            chosen = runs[(runs["descriptor"] == name) & runs["selected"].astype(bool)].iloc[0]
            selected = scores(CLUSTERING.load(run, name).labels, y)
            top = own.loc[own["nmi"].idxmax()]
            rows.append({"collection": collection.name, "label": label, "descriptor": name, "level": "selected",
                         "delivered": f"{chosen['algorithm']} {chosen['preprocessing']} k={int(chosen['n_clusters'])}",
                         "nmi": selected[0], "ari": selected[1], "oracle": top["run"], "oracle_nmi": top["nmi"],
                         "oracle_ari": top["ari"], "regret": top["nmi"] - selected[0],
                         "weak": WEAK_WORD in str(chosen["reason"]).lower()})
    if not collection.labels:
        rows.append({"collection": collection.name, "label": "(none)", "descriptor": f"DELIVERED {best['descriptor']}",
                     "level": "cluster", "delivered": _short(best, "cluster"), "weak": weak})
    return rows


def _short(best: pd.Series, level: str) -> str:
    text = f"{best['algorithm']} {best['preprocessing']} k={int(best['n_clusters'])}"
    return text if level == "cluster" else f"{level} of {text}"


# ---------------------------------------------------------------- candidate rules

def candidate_measures(collection: Collection, run: RunFolder) -> pd.DataFrame:
    """Every compared clustering's measures under each candidate overall rule (``--rules``): the
    comparison's columns (the permuted excess in each clustering's own space) plus the excess over
    a Gaussian reference in the common space and the agreement, on the comparison's shared sample,
    and the NMI against the primary label."""
    from vehiclust.cluster import reference as footing
    from vehiclust.compare.fusion import common_valid_rows, sample_rows
    from vehiclust.compare.settings import CompareSettings
    from vehiclust.compare.table import common_space
    from vehiclust.compare.weights import split_tuning_rows
    from vehiclust.runfolder import COMPARE_INFO, COMPARISON

    settings, identity = CompareSettings(), ClusterSettings().identity_column
    singles, table = COMPARE_INFO.load(run)["singles"], run.load_collection()
    valid = common_valid_rows(run, tuple(singles))
    _, evaluation = split_tuning_rows(valid, table[identity] if identity in table.columns else None,
                                      settings.tuning_share, settings.tuning_rows, settings.seed)
    shared = sample_rows(evaluation, settings.shared_sample, settings.seed + 3)  # as comparison_table
    X = common_space(run, singles, shared, settings)
    frame = COMPARISON.load(run).reset_index(drop=True)
    labels = {n: CLUSTERING.load(run, n).labels for n in frame["name"]}
    gaussian = [footing.excess(X, labels[n][shared], "gaussian", settings.seed) for n in frame["name"]]
    frame["x_gaussian"] = [g["excess"] for g in gaussian]
    frame["x_gaussian_std"] = [g["excess_std"] for g in gaussian]
    applies = frame["applies"].astype(bool)
    voters = {n: labels[n][shared] for n in frame.loc[applies & (frame["kind"] == "descriptor"), "name"]}
    frame["agreement_singles"] = frame["name"].map(footing.agreement(voters))
    frame["agreement_all"] = frame["name"].map(footing.agreement({n: labels[n][shared]
                                                                  for n in frame.loc[applies, "name"]}))
    frame["collection"] = collection.name
    if collection.primary:
        truth = truth_by_row(run, collection)[collection.primary]
        oracle = max(scores(lab, truth)[0] for lab in every_run(run, all_runs(run))["labels"])
        frame["regret"] = [oracle - scores(labels[n], truth)[0] for n in frame["name"]]
    return frame


def _significant(value: pd.Series, spread: pd.Series) -> pd.Series:
    from vehiclust.compare.table import MIN_EXCESS

    return value > np.maximum(MIN_EXCESS, 2 * spread)


def _weighted(frame: pd.DataFrame, column: str) -> pd.Series:
    return frame[column].clip(lower=0) * frame["stability"].clip(0, 1) * (1 - frame["noise_share"])


# name: (measure, eligible or None, candidates: "all" or "singles"), on one collection's frame
CANDIDATE_RULES = {
    "main: identity_lift with ids, else common_score": (
        lambda f: f["identity_lift"].fillna(-1) if "identity_lift" in f and f["identity_lift"].notna().any()
        else f["common_score"], None, "all"),
    "common_score, not-applicable excluded": (lambda f: f["common_score"], "applies", "all"),
    "excess over Gaussian ref (common space)": (lambda f: _weighted(f, "x_gaussian"),
                                                lambda f: _significant(f["x_gaussian"], f["x_gaussian_std"]), "all"),
    "excess over permuted ref (own space), no ties": (lambda f: f["excess_score"], "eligible_note", "all"),
    "agreement (mean AMI with all applicable), all": (lambda f: f["agreement_all"], "eligible_note", "all"),
    "agreement (mean AMI with all applicable), singles": (lambda f: f["agreement_all"], "eligible_note", "singles"),
    "agreement (mean AMI with applicable singles), singles": (lambda f: f["agreement_singles"], "eligible_note",
                                                               "singles"),
    "excess permuted x agreement": (lambda f: f["excess_score"] * f["agreement_all"], "eligible_note", "all"),
    "excess permuted, single descriptors": (lambda f: f["excess_score"], "eligible_note", "singles"),
}


def candidate_pick(frame: pd.DataFrame, measure, eligible, among: str) -> tuple[str, float]:
    """(the delivered name, prefixed "weak: " when nothing was eligible; its regret)."""
    pool = frame[frame["applies"].astype(bool)] if eligible is not None else frame
    if among == "singles":
        pool = pool[pool["kind"] == "descriptor"]
    if eligible == "eligible_note":
        ok = pool["eligible_note"].astype(object).fillna("").astype(str) == ""
    elif callable(eligible):
        ok = eligible(pool)
    else:
        ok = pd.Series(True, index=pool.index)
    chosen = measure(pool[ok] if ok.any() else pool).idxmax()
    prefix = "" if ok.any() else "weak: "
    return prefix + str(frame.at[chosen, "name"]), float(frame.at[chosen, "regret"]) if "regret" in frame else np.nan


def rule_table(measures: pd.DataFrame) -> pd.DataFrame:
    """One row per candidate rule: its pick and regret on each collection, the worst regret over
    the labelled ones (weak on a labelled collection counts as a failure), and the flat verdict;
    the landed rule (``compare.table``, with its ties) is the last row."""
    from vehiclust.compare.table import apply_best

    rules = dict(CANDIDATE_RULES)
    rows = []
    landed = ("landed: agreement with applicable singles (>= 3, 2 eligible), else excess; ties", (None, None, None))
    for rule, (measure, eligible, among) in list(rules.items()) + [landed]:
        row = {"rule": rule}
        worst = 0.0
        for name, frame in measures.groupby("collection", sort=False):
            frame = frame.reset_index(drop=True)
            if measure is None:
                _, pick, why, _ = apply_best(frame, None)
                regret = float(frame.loc[frame["name"] == pick, "regret"].iloc[0]) if "regret" in frame else np.nan
                pick = ("weak: " if why.startswith("weak") else "") + pick + (" (tie)" if "TIE" in why else "")
            else:
                pick, regret = candidate_pick(frame, measure, eligible, among)
            row[name] = pick if np.isnan(regret) else f"{pick} {regret:.3f}"
            if not np.isnan(regret):
                worst = max(worst, np.inf if pick.startswith("weak") else regret)
        row["worst regret"] = worst
        rows.append(row)
    return pd.DataFrame(rows)


# ---------------------------------------------------------------- running

def run_collection(collection: Collection, out: Path) -> tuple[RunFolder, float]:
    settings = RunSettings(cluster=ClusterSettings(keep_run_labels=True),
                           report=ReportSettings(notebook=False))
    started = time.perf_counter()
    run_pipeline(collection.input, out, settings)
    return RunFolder(out), time.perf_counter() - started


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:12]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="digits,demo,case,flat", help="collections to run, comma-separated")
    parser.add_argument("--digits-rows", type=int, default=1797)
    parser.add_argument("--case-rows", type=int, default=1600)
    parser.add_argument("--flat-rows", type=int, default=800)
    parser.add_argument("--demo-size", default="small")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--twice", action="store_true", help="run each collection twice; compare clusters.csv")
    parser.add_argument("--keep", type=Path, help="keep the inputs and run folders here")
    parser.add_argument("--csv", type=Path, help="also write the table here")
    parser.add_argument("--rules", action="store_true",
                        help="also judge every candidate overall rule on each collection (the table of candidates)")
    args = parser.parse_args()
    root = Path(args.keep or tempfile.mkdtemp(prefix="selection-"))
    makers = {"digits": lambda: digits_collection(root / "inputs", args.digits_rows, args.seed),
              "demo": lambda: demo_collection(root / "inputs", args.demo_size, args.seed),
              "case": lambda: case_collection(root / "inputs", args.case_rows, args.seed),
              "flat": lambda: flat_collection(root / "inputs", args.flat_rows, args.seed)}
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores (shared: timings are noisy); folders: {root}",
          flush=True)
    table, timings, measures = [], [], []
    try:
        for name in args.only.split(","):
            collection = makers[name.strip()]()
            run, seconds = run_collection(collection, root / "runs" / name)
            line = f"{name}: {seconds:.0f}s"
            if args.twice:
                again, seconds_again = run_collection(collection, root / "runs" / f"{name}-again")
                same = digest(CLUSTERS.path(run)) == digest(CLUSTERS.path(again))
                line += f"; again {seconds_again:.0f}s, clusters.csv {'identical' if same else 'DIFFERENT'}"
            print(line, flush=True)
            timings.append(line)
            table += regret_rows(collection, run)
            if args.rules:
                measures.append(candidate_measures(collection, run))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    frame = pd.DataFrame(table)
    if args.csv:
        frame.to_csv(args.csv, index=False)
    with pd.option_context("display.width", 250, "display.max_colwidth", 60, "display.max_rows", 500):
        print(frame.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    summary(frame)
    if measures:
        rules = rule_table(pd.concat(measures, ignore_index=True))
        print("\ncandidate overall rules (criterion fixed before looking: the worst regret on the primary label "
              "over the labelled collections; flat must be weak):")
        with pd.option_context("display.width", 250, "display.max_colwidth", 60):
            print(rules.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
        if args.csv:
            rules.to_csv(args.csv.with_suffix(".rules.csv"), index=False)


def summary(frame: pd.DataFrame) -> None:
    """Worst regret per collection on its primary label, overall and per descriptor."""
    scored = frame[frame["regret"].notna()] if "regret" in frame.columns else frame.iloc[0:0]
    print("\nworst regret per collection (primary label *, the delivered `cluster` column; target <= 0.05):")
    for name, group in frame.groupby("collection", sort=False):
        primary = scored[(scored["collection"] == name) & scored["label"].str.endswith(" *")
                         & (scored["level"] == "cluster")]
        delivered = frame[(frame["collection"] == name) & frame["descriptor"].str.startswith("DELIVERED")]
        parts = [f"weak={bool(delivered['weak'].iloc[0])}"]
        if len(primary):
            label = primary["label"].iloc[0].rstrip(" *")
            own = scored[(scored["collection"] == name) & (scored["label"] == label) & (scored["level"] == "selected")]
            overall = primary["regret"].iloc[0]
            parts = [f"overall {overall:.3f} (NMI {primary['nmi'].iloc[0]:.3f} ARI {primary['ari'].iloc[0]:.3f})",
                     f"worst descriptor {own['regret'].max():.3f} ({own.loc[own['regret'].idxmax(), 'descriptor']})"] + parts
        print(f"  {name}: " + "; ".join(parts))


if __name__ == "__main__":
    main()
