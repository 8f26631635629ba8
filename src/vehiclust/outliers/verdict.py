"""The verdict: every check's score per image combined into one decision with its reasons.

Each check's score is mapped onto a common *severity* with its threshold at 0.5 (``s / t / 2``
below it, ``0.5 + (s - t) / (1 - t) / 2`` above), ``outlier_score`` is the largest severity,
``is_outlier`` says whether any check reached its threshold and ``outlier_reasons`` lists the
reason codes of those that did. No share is fixed in advance; ``contamination`` (a share)
replaces the thresholds by "the top share by outlier_score" for users who want that.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from vehiclust.outliers.checks import FLAG_AT, Check, CheckResult, CheckSpec
from vehiclust.outliers.evidence import Evidence

# reason codes in the order they are listed (the report shows the first as the main reason);
# codes not named here follow in the order of the checks
REASON_ORDER = ("unreadable", "invalid_vector", "no_vehicle", "blurry", "dark", "overexposed", "low_contrast",
                "low_information", "noisy", "small", "odd_aspect", "grayscale", "jpeg", "duplicate",
                "near_duplicate", "isolated")


def verdict_table(evidence: Evidence, scored: list[tuple[CheckSpec, Check, CheckResult]],
                  contamination: float | None = None) -> pd.DataFrame:
    """outliers.csv: row, path, error, every check's score (and its parts), the verdict, then
    brisque, duplicate_of and isolated_by."""
    table = evidence.table
    frame = pd.DataFrame({"row": table["row"], "path": table["path"], "error": evidence.error})
    for spec, _, result in scored:
        frame[f"{spec.name}_score"] = np.round(result.score, 4)
    for _, _, result in scored:
        for part, values in result.parts.items():
            frame[f"{part}_score"] = np.round(values, 4)
    names = [spec.name for spec, _, _ in scored]
    frame = add_verdict(frame, names, {spec.name: spec.code for spec, _, _ in scored},
                        {spec.name: check.threshold for spec, check, _ in scored}, contamination)
    if evidence.quality is not None and "brisque" in evidence.quality.columns:
        frame["brisque"] = np.round(evidence.quality["brisque"].to_numpy(), 2)
    frame["duplicate_of"] = _copied_paths(table["path"].to_numpy(), [r.copy_of for _, _, r in scored])
    because = {spec.name: result.because for spec, _, result in scored if result.because is not None}
    frame["isolated_by"] = because.get("isolated", "")
    return frame


def _copied_paths(paths: np.ndarray, copies: list[np.ndarray | None]) -> list[str]:
    """Per row the path it copies, from the first check that names one."""
    original = np.full(len(paths), -1, dtype=np.int64)
    for copy_of in copies:
        if copy_of is not None:
            original = np.where(original >= 0, original, copy_of)
    return [paths[o] if o >= 0 else "" for o in original]


def severity(score: np.ndarray, threshold: float) -> np.ndarray:
    """Scores on a common scale where every check's threshold sits at 0.5."""
    score = np.asarray(score, dtype=np.float64)
    if threshold >= 1.0:
        return np.where(score >= 1.0, 1.0, 0.5 * score)
    return np.where(score < threshold, 0.5 * score / threshold,
                    0.5 + 0.5 * (score - threshold) / (1.0 - threshold))


def add_verdict(frame: pd.DataFrame, checks: list[str], codes: dict[str, str] | None = None,
                thresholds: dict[str, float] | None = None, contamination: float | None = None) -> pd.DataFrame:
    codes = codes or {c: c for c in checks}
    thresholds = thresholds or {}
    sev = np.column_stack([severity(frame[f"{c}_score"].to_numpy(), thresholds.get(c, FLAG_AT)) for c in checks]) \
        if checks else np.zeros((len(frame), 0))
    outlier_score = sev.max(axis=1) if checks else np.zeros(len(frame))
    flagged = sev >= FLAG_AT
    if contamination is not None:
        count = int(round(contamination * len(frame)))
        chosen = np.zeros(len(frame), bool)
        chosen[np.argsort(-outlier_score, kind="stable")[:count]] = True
        chosen |= frame["unreadable_score"].to_numpy() >= 1.0 if "unreadable_score" in frame else False
        # below-threshold picks are explained by their strongest check
        strongest = np.zeros_like(flagged)
        strongest[np.arange(len(frame)), sev.argmax(axis=1)] = True
        flagged = np.where(chosen[:, None], flagged | (strongest & ~flagged.any(axis=1, keepdims=True)), False)
    frame["outlier_score"] = np.round(outlier_score, 4)
    frame["is_outlier"] = flagged.any(axis=1)
    frame["outlier_reasons"] = [_reasons([codes[c] for c, hit in zip(checks, row) if hit]) for row in flagged]
    return frame


def _reasons(found: list[str]) -> str:
    unique = list(dict.fromkeys(found))
    ordered = [r for r in REASON_ORDER if r in unique] + [r for r in unique if r not in REASON_ORDER]
    return ";".join(ordered)
