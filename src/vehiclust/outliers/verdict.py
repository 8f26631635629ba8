"""The outliers stage: every check's score per image, then one verdict with its reasons.

The verdict is the maximum over checks of their scores; an image is an outlier when that
reaches 0.5, and its reasons are the checks that reached it. No share is fixed in advance:
a clean collection gets (almost) no outliers.
"""

from __future__ import annotations

import time

import numpy as np
import pandas as pd

from vehiclust.cluster.sweep import clustering_path
from vehiclust.outliers.checks import FLAG_AT, isolation_score, small_score, unreadable_score
from vehiclust.progress import NullReporter, Reporter
from vehiclust.runfolder import RunFolder, fingerprint, write_csv


def outliers(run: RunFolder, names: list[str], reporter: Reporter | None = None) -> pd.DataFrame:
    reporter = reporter or NullReporter()
    cluster_record = run.stage_record("cluster") or {}
    key = fingerprint("outliers", names, cluster_record.get("fingerprint"),
                      (run.stage_record("ingest") or {}).get("fingerprint"))
    if run.stage_is_current("outliers", key, [run.path("outliers.csv")]):
        reporter.message("outliers: up to date")
        return pd.read_csv(run.path("outliers.csv"), keep_default_na=False)
    started = time.perf_counter()
    table = run.load_collection()
    scores = compute_scores(run, table, names)
    write_csv(run.path("outliers.csv"), scores)
    run.record_stage("outliers", key, time.perf_counter() - started,
                     flagged=int(scores["is_outlier"].sum()), rows=len(scores))
    return scores


def compute_scores(run: RunFolder, table: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    decode_errors: dict[int, str] = {}
    invalid_vector = np.zeros(len(table))
    for name in names:
        meta = run.descriptor_meta(name)
        for row, reason in run.invalid_rows(name).items():
            if meta.get("kind") == "imported":
                invalid_vector[row] = 1.0
            else:
                decode_errors.setdefault(row, reason)
    unreadable, error_text = unreadable_score(table, decode_errors)
    checks = {
        "unreadable": unreadable,
        "invalid_vector": invalid_vector,
        "small": small_score(table["width"].to_numpy(), table["height"].to_numpy()),
    }
    per_descriptor = {}
    for name in names:
        selected = np.load(clustering_path(run, name))
        per_descriptor[f"isolated_{name}"] = isolation_score(selected["labels"], selected["distance"])
    if per_descriptor:
        checks["isolated"] = np.mean(list(per_descriptor.values()), axis=0)
    frame = pd.DataFrame({"row": table["row"], "path": table["path"], "error": error_text})
    for check, score in {**checks, **per_descriptor}.items():
        frame[f"{check}_score"] = np.round(score, 4)
    return add_verdict(frame, list(checks))


def add_verdict(frame: pd.DataFrame, checks: list[str]) -> pd.DataFrame:
    scores = frame[[f"{c}_score" for c in checks]].to_numpy()
    frame["outlier_score"] = np.round(scores.max(axis=1), 4)
    frame["is_outlier"] = frame["outlier_score"] >= FLAG_AT
    flagged = scores >= FLAG_AT
    frame["outlier_reasons"] = [";".join(c for c, hit in zip(checks, row) if hit) for row in flagged]
    return frame
