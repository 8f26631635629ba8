"""The outliers stage: every check's score per image, then one verdict with its reasons.

Checks, each a score in [0, 1] with its own threshold (see :mod:`vehiclust.quality.checks` for
the image quality ones):

* ``unreadable`` / ``invalid_vector``: the file or its descriptor row could not be used (1 / 0);
* the image quality checks, from the ``quality`` descriptor and the collection's width/height
  (the size checks work without the descriptor);
* ``duplicate`` (content hash) and ``near_duplicate`` (perceptual hash), later copies only;
* ``no_vehicle``: the ``not_a_vehicle`` column of the ``vehicle_type`` descriptor, when present
  (probability; flagged at 0.8, see ``OutlierSettings.no_vehicle_threshold``);
* ``isolated``: density / isolation detectors in each clustered descriptor's space
  (:mod:`vehiclust.outliers.detectors`) plus the distance to the assigned cluster centre, each as
  a robust z-score (median / MAD); a descriptor's z is the mean over its detectors (consensus:
  one detector's heavy tail does not make an outlier), the image's the largest over descriptors.
  Flagged at z = ``isolation_z`` (3). On outlier-free data (Gaussian, Student-t, blobs, 5,000 x
  64) the consensus z passed 3 for 0-0.5% of rows, on the demo's clean images for none.

The verdict: each check's score is mapped onto a common *severity* with its threshold at 0.5
(``s / t / 2`` below it, ``0.5 + (s - t) / (1 - t) / 2`` above), ``outlier_score`` is the largest
severity, ``is_outlier`` says whether any check reached its threshold and ``outlier_reasons``
lists the reason codes of those that did. No share is fixed in advance; ``contamination``
(a share) replaces the thresholds by "the top share by outlier_score" for users who want that.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

import numpy as np
import pandas as pd

from vehiclust.describe.extract import descriptor_is_current
from vehiclust.errors import VehiclustError
from vehiclust.outliers.checks import FLAG_AT, cluster_distance_z, unreadable_score
from vehiclust.outliers.detectors import DETECTORS, DetectorSettings, available_detectors, robust_z, score_descriptor
from vehiclust.progress import NullReporter, Reporter
from vehiclust.quality.checks import DEFAULT_CHECKS, CheckContext, create_checks
from vehiclust.quality.duplicates import NEAR_MAX_DISTANCE, exact_duplicates, hashes_from_chunks, near_duplicates
from vehiclust.runfolder import CLUSTERING, OUTLIERS, RunFolder, fingerprint, load_quality_table


QUALITY_DESCRIPTOR = "quality"
VEHICLE_DESCRIPTOR = "vehicle_type"
NOT_A_VEHICLE = "not_a_vehicle"
SIGNATURE_COLUMNS = ("brightness", "contrast", "chroma")  # (+ log aspect) confirm near duplicates
# reason codes in the order they are listed
REASON_ORDER = ("unreadable", "invalid_vector", "no_vehicle", "blurry", "dark", "overexposed", "low_contrast",
                "low_information", "noisy", "small", "odd_aspect", "grayscale", "jpeg", "duplicate",
                "near_duplicate", "isolated")


@dataclass(frozen=True)
class OutlierSettings:
    checks: tuple[str, ...] = DEFAULT_CHECKS
    check_overrides: dict = field(default_factory=dict)  # {"dark": {"threshold": 0.6, "mode": "relative"}}
    group_by: str | None = "auto"  # relative checks per camera ("auto": camera_id when present)
    detectors: DetectorSettings = field(default_factory=DetectorSettings)
    use_cluster_distance: bool = True
    isolation_z: float = 3.0
    isolation_combine: str = "max"  # over descriptors: "max" (isolated in some space) or "mean"
    near_duplicate_distance: int = NEAR_MAX_DISTANCE
    # vehicle_type's not_a_vehicle is not calibrated at 0.5: on the demo 5.6% of clean crops
    # (night ones most) pass 0.5, 1.2% pass 0.8, with 94% of the no-vehicle crops
    no_vehicle_threshold: float = 0.8
    thresholds: dict = field(default_factory=dict)  # threshold of the non-image checks, by name
    contamination: float | None = None  # a fixed share instead of thresholds


NON_IMAGE_CHECKS = ("unreadable", "invalid_vector", "duplicate", "near_duplicate", "no_vehicle", "isolated")


def outlier_settings(contamination: float | None = None, thresholds: list[str] | None = None,
                     group_by: str | None = "auto", detectors: str | None = None) -> OutlierSettings:
    """Settings from command-line style options.

    ``thresholds``: ``"check=value"`` items, e.g. ``["dark=0.6", "no_vehicle=0.9", "isolated=0.7"]``
    (a score threshold in (0, 1]); ``group_by``: a collection column, ``"auto"`` or ``"none"``;
    ``detectors``: comma-separated detector names.
    """
    from vehiclust.outliers.detectors import DETECTORS
    from vehiclust.quality.checks import CHECKS

    overrides: dict[str, dict] = {}
    other: dict[str, float] = {}
    for item in thresholds or []:
        name, sep, value = item.partition("=")
        name = name.strip()
        try:
            number = float(value)
        except ValueError:
            number = float("nan")
        if not sep or not 0.0 < number <= 1.0:
            raise VehiclustError(f"--threshold expects CHECK=VALUE with VALUE in (0, 1], got {item!r}")
        if name in CHECKS:
            overrides[name] = {"threshold": number}
        elif name in NON_IMAGE_CHECKS:
            other[name] = number
        else:
            raise VehiclustError(f"--threshold: unknown check {name!r}; checks: "
                                 f"{', '.join(list(CHECKS) + list(NON_IMAGE_CHECKS))}")
    detector_settings = DetectorSettings()
    if detectors is not None:
        names = tuple(n.strip() for n in detectors.split(",") if n.strip())
        unknown = [n for n in names if n not in DETECTORS]
        if unknown:
            raise VehiclustError(f"--detectors: unknown {', '.join(unknown)}; available: {', '.join(DETECTORS)}")
        detector_settings = DetectorSettings(detectors=names)
    no_vehicle = other.pop("no_vehicle", OutlierSettings.no_vehicle_threshold)
    return OutlierSettings(check_overrides=overrides, thresholds=other, contamination=contamination,
                           group_by=None if group_by in (None, "none") else group_by,
                           detectors=detector_settings, no_vehicle_threshold=no_vehicle)



def outliers(run: RunFolder, names: list[str], reporter: Reporter | None = None,
             settings: OutlierSettings | None = None) -> pd.DataFrame:
    """Score every image of ``run`` and write ``outliers.csv``; returns that table."""
    reporter = reporter or NullReporter()
    settings = settings or OutlierSettings()
    if settings.contamination is not None and not 0.0 < settings.contamination < 1.0:
        raise VehiclustError(f"contamination must be a share between 0 and 1, got {settings.contamination}")
    key = outliers_key(run, names, settings)
    if run.stage_is_current("outliers", key, [OUTLIERS.path(run)]):
        reporter.message("outliers: up to date")
        return OUTLIERS.load(run)
    started = time.perf_counter()
    table = run.load_collection()
    scores = compute_scores(run, table, names, settings, reporter)
    OUTLIERS.save(run, scores)
    run.record_stage("outliers", key, time.perf_counter() - started,
                     flagged=int(scores["is_outlier"].sum()), rows=len(scores))
    return scores


def outliers_key(run: RunFolder, names: list[str], settings: OutlierSettings) -> str:
    extra = [n for n in (QUALITY_DESCRIPTOR, VEHICLE_DESCRIPTOR) if n in run.descriptor_names()]
    return fingerprint("outliers", 2, names, (run.stage_record("cluster") or {}).get("fingerprint"),
                       (run.stage_record("ingest") or {}).get("fingerprint"),
                       {n: run.descriptor_meta(n).get("fingerprint") for n in extra},
                       asdict(settings), available_detectors())


# -- inputs --------------------------------------------------------------------------------------
def load_quality(run: RunFolder, table: pd.DataFrame) -> pd.DataFrame | None:
    """The quality descriptor as a table with named columns, or None when absent or stale."""
    if not descriptor_is_current(run, QUALITY_DESCRIPTOR, table):
        return None
    return load_quality_table(run, len(table))


def load_not_a_vehicle(run: RunFolder, table: pd.DataFrame) -> np.ndarray | None:
    """P(not a vehicle) per row from the vehicle_type descriptor, when it has that column."""
    if not descriptor_is_current(run, VEHICLE_DESCRIPTOR, table):
        return None
    meta = run.descriptor_meta(VEHICLE_DESCRIPTOR)
    columns = meta.get("columns") or meta.get("classes") or meta.get("labels") or []
    if NOT_A_VEHICLE not in columns:
        return None
    matrix = run.load_descriptor(VEHICLE_DESCRIPTOR)
    values = np.asarray(matrix[:, list(columns).index(NOT_A_VEHICLE)], dtype=np.float64)
    values[list(run.invalid_rows(VEHICLE_DESCRIPTOR))] = 0.0
    return np.nan_to_num(values)


def _groups(table: pd.DataFrame, group_by: str | None) -> np.ndarray | None:
    if group_by == "auto":
        group_by = "camera_id" if "camera_id" in table.columns else None
    if group_by is None:
        return None
    if group_by not in table.columns:
        raise VehiclustError(f"group_by: the collection has no column {group_by!r}")
    return table[group_by].astype(str).to_numpy()


# -- scores --------------------------------------------------------------------------------------
def compute_scores(run: RunFolder, table: pd.DataFrame, names: list[str],
                   settings: OutlierSettings | None = None, reporter: Reporter | None = None) -> pd.DataFrame:
    settings = settings or OutlierSettings()
    reporter = reporter or NullReporter()
    n = len(table)
    decode_errors: dict[int, str] = {}
    invalid_vector = np.zeros(n)
    for name in names:
        meta = run.descriptor_meta(name)
        for row, reason in run.invalid_rows(name).items():
            if meta.get("kind") == "imported":
                invalid_vector[row] = 1.0
            else:
                decode_errors.setdefault(row, reason)
    quality = load_quality(run, table)
    if quality is not None:
        for row, reason in run.invalid_rows(QUALITY_DESCRIPTOR).items():
            decode_errors.setdefault(row, reason)
    unreadable, error_text = unreadable_score(table, decode_errors)
    readable = unreadable < 1.0

    checks: dict[str, np.ndarray] = {"unreadable": unreadable, "invalid_vector": invalid_vector}
    codes: dict[str, str] = {"unreadable": "unreadable", "invalid_vector": "invalid_vector"}
    thresholds: dict[str, float] = {}

    # image quality
    data = pd.DataFrame({"width": table["width"].to_numpy(), "height": table["height"].to_numpy()})
    if quality is not None:
        data = pd.concat([data, quality.drop(columns=[c for c in ("width", "height") if c in quality])], axis=1)
    measured = readable & (np.all(np.isfinite(quality.to_numpy()), axis=1) if quality is not None else True)
    context = CheckContext(groups=_groups(table, settings.group_by), valid=readable)
    quality_checks = create_checks(settings.checks, settings.check_overrides)
    for check in quality_checks:
        if not check.available(data):
            continue
        valid = readable if set(check.requires) <= {"width", "height"} else measured
        checks[check.name] = check.score(data, CheckContext(context.groups, valid))
        codes[check.name] = check.code
        thresholds[check.name] = check.threshold

    # duplicates
    duplicate_of = np.full(n, -1, dtype=np.int64)
    if "content_hash" in table.columns:
        checks["duplicate"], duplicate_of = exact_duplicates(table["content_hash"], readable)
        codes["duplicate"] = "duplicate"
    near_of = np.full(n, -1, dtype=np.int64)
    if quality is not None and {"phash16_0", "phash16_3"} <= set(quality.columns):
        chunks = quality[[f"phash16_{i}" for i in range(4)]].to_numpy()
        ok = measured & np.all(np.isfinite(chunks), axis=1)
        hashes = hashes_from_chunks(np.where(np.isfinite(chunks), chunks, 0))
        width, height = data["width"].to_numpy(np.float64), data["height"].to_numpy(np.float64)
        with np.errstate(divide="ignore", invalid="ignore"):
            aspect = np.log(width / height)
        signature = np.column_stack([quality[c].to_numpy() for c in SIGNATURE_COLUMNS if c in quality] + [aspect])
        checks["near_duplicate"], near_of, _ = near_duplicates(
            hashes, ok, duplicate_of, settings.near_duplicate_distance, signature=signature,
            size_keys=(width * 100003 + height).astype(np.int64))
        codes["near_duplicate"] = "near_duplicate"

    # no vehicle
    not_vehicle = load_not_a_vehicle(run, table)
    if not_vehicle is not None:
        checks["no_vehicle"] = np.where(readable, not_vehicle, 0.0)
        codes["no_vehicle"] = "no_vehicle"
        thresholds["no_vehicle"] = settings.no_vehicle_threshold

    # isolation in descriptor space
    per_descriptor, isolated_by = isolation_scores(run, names, readable, settings, reporter)
    if per_descriptor:
        stacked = np.array(list(per_descriptor.values()))
        z = stacked.mean(axis=0) if settings.isolation_combine == "mean" else stacked.max(axis=0)
        checks["isolated"] = np.where(readable, np.clip(z / (2 * settings.isolation_z), 0, 1), 0.0)
        codes["isolated"] = "isolated"

    for name, value in settings.thresholds.items():
        thresholds[name] = float(value)
    frame = pd.DataFrame({"row": table["row"], "path": table["path"], "error": error_text})
    for check, score in checks.items():
        frame[f"{check}_score"] = np.round(score, 4)
    for name, z in per_descriptor.items():
        frame[f"isolated_{name}_score"] = np.round(np.clip(z / (2 * settings.isolation_z), 0, 1), 4)
    frame = add_verdict(frame, list(checks), codes, thresholds, settings.contamination)
    if quality is not None and "brisque" in quality.columns:
        frame["brisque"] = np.round(quality["brisque"].to_numpy(), 2)
    paths = table["path"].to_numpy()
    frame["duplicate_of"] = [paths[d] if d >= 0 else (paths[m] if m >= 0 else "")
                             for d, m in zip(duplicate_of, near_of)]
    frame["isolated_by"] = isolated_by if isolated_by is not None else ""
    return frame


def isolation_scores(run: RunFolder, names: list[str], readable: np.ndarray, settings: OutlierSettings,
                     reporter: Reporter) -> tuple[dict[str, np.ndarray], list[str] | None]:
    """Consensus robust z per descriptor, and per row the (descriptor:detector) pairs over the
    threshold, strongest first."""
    per_descriptor: dict[str, np.ndarray] = {}
    contributions: list[tuple[str, np.ndarray]] = []
    spaces = [nm for nm in names if nm != QUALITY_DESCRIPTOR]
    if not spaces:
        return {}, None
    with reporter.task("Outlier detectors", len(spaces)) as task:
        for name in spaces:
            matrix = run.load_descriptor(name)
            invalid = np.fromiter(run.invalid_rows(name), dtype=np.int64)
            usable = readable.copy()
            usable[invalid] = False
            rows = np.flatnonzero(usable)
            zs: dict[str, np.ndarray] = {}
            if len(rows) > max(settings.detectors.k + 1, 10) and settings.detectors.detectors:
                raw = score_descriptor(matrix, rows, settings.detectors)
                for det, values in raw.items():
                    z = np.zeros(len(readable))
                    z[rows] = robust_z(values, DETECTORS[det].log_scale)
                    zs[det] = z
            if settings.use_cluster_distance and CLUSTERING.exists(run, name):
                selected = CLUSTERING.load(run, name)
                z = cluster_distance_z(selected["labels"], selected["distance_input"] if "distance_input" in selected else selected["distance"])
                zs["centroid"] = np.where(usable, z, 0.0)
            if zs:
                per_descriptor[name] = np.mean(list(zs.values()), axis=0)
                contributions += [(f"{name}:{det}", z) for det, z in zs.items()]
            task.advance()
    if not contributions:
        return per_descriptor, None
    labels = [c[0] for c in contributions]
    stacked = np.array([c[1] for c in contributions])
    over = stacked >= settings.isolation_z
    order = np.argsort(-stacked, axis=0)
    text = []
    for i in range(stacked.shape[1]):
        hits = [labels[j] for j in order[:, i] if over[j, i]][:4]
        text.append(";".join(hits))
    return per_descriptor, text


# -- the verdict ---------------------------------------------------------------------------------
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
