"""Image quality checks: one class per check, each a score in [0, 1] per image over a batch.

A check reads a *raw value* in natural units from the per-image table (the ``quality``
descriptor's columns joined with the collection's ``width``/``height``), and turns it into a
score (higher = worse) that reaches its ``threshold`` (0.5 by default) where the image should be
flagged. Two ways to score, chosen per check and overridable:

* **absolute**: a linear ramp from ``good`` (score 0) to ``bad`` (score 1); the default threshold
  0.5 sits halfway, at the value in the table below.
* **relative**: robust z-score of the raw value (optionally its log) against the median and MAD
  of its *group* (the camera, when the collection says which camera took each image, and groups
  have at least ``MIN_GROUP`` images; else the whole collection); score = z / (2 z_at), so the
  threshold 0.5 sits at z = ``z_at``. ``min_scale`` floors the spread so that a very uniform
  collection does not turn tiny differences into outliers.

``max_share`` is the collection-adaptive guard for conditions that can be a group's normal
state: when more than that share of a group is over the threshold (a night camera whose images
are all dark, an infrared camera's grey images), the condition is that group's property, not an
outlier, and the group's scores are damped below the threshold (order kept).

Defaults (thresholds validated on the demo collection; see the tests and benchmarks):

============  ==========  ==========================================  ===========================
check         mode        raw value                                   flagged at (score 0.5)
============  ==========  ==========================================  ===========================
small         absolute    shorter side, px                            < 32 px (0 at 64, 1 at 0)
odd_aspect    relative    log(width / height), two-sided              |z| > 3.5 (spread >= 0.1)
dark          absolute    mean luminance                              < 0.09 (max_share 0.5)
overexposed   absolute    mean luminance; 1st percentile of luminance > 0.70; or > 0.25 when the mean
                                                                      is > 0.6 (washed out)
low_contrast  absolute    99th - 1st percentile of luminance          < 0.12
low_information absolute  entropy of the luminance histogram, bits    < 3 bits
blurry        absolute    Crete-Roffet blur, worse axis, 64-px thumb  > 0.45 (max_share 0.5)
motion_blur   absolute    |horizontal - vertical| blur                > 0.25 while the worse axis
                                                                      is > 0.35 (reason: blurry)
noisy         absolute    noise sigma (Immerkaer), 0-1 scale          > 0.04 (max_share 0.5)
grayscale     absolute    mean HSV saturation of lit pixels           < 0.03 (max_share 0.05)
jpeg          absolute    8x8 block-border gradient ratio             > 2.5
============  ==========  ==========================================  ===========================

Exact and near duplicates (:mod:`vehiclust.quality.duplicates`), "no vehicle" and isolation in
descriptor space (:mod:`vehiclust.outliers`) are scored elsewhere and join the same verdict.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
import pandas as pd

from vehiclust.errors import VehiclustError
from vehiclust.robust import robust_z

MIN_GROUP = 20  # images a group needs for its own robust statistics


@dataclass(frozen=True)
class CheckContext:
    """What relative checks and the share guard need besides the values."""

    groups: np.ndarray | None = None  # a group label per row (e.g. camera), None = one group
    valid: np.ndarray | None = None  # rows that take part (readable images with measurements)


class QualityCheck:
    """Base class. Subclasses set the class attributes and implement :meth:`raw`."""

    name: ClassVar[str]  # column prefix: ``<name>_score``
    code: ClassVar[str]  # reason code in outlier_reasons
    summary: ClassVar[str]
    requires: ClassVar[tuple[str, ...]] = ()
    default_mode: ClassVar[str] = "absolute"
    good: ClassVar[float]  # absolute: raw value scoring 0
    bad: ClassVar[float]  # absolute: raw value scoring 1
    log_scale: ClassVar[bool] = False  # relative: z of log(raw)
    two_sided: ClassVar[bool] = False  # relative: both directions are bad
    z_at: ClassVar[float] = 4.0
    min_scale: ClassVar[float] = 0.0
    default_max_share: ClassVar[float | None] = None

    def __init__(self, mode: str | None = None, threshold: float = 0.5, good: float | None = None,
                 bad: float | None = None, z_at: float | None = None, min_scale: float | None = None,
                 max_share: float | None | str = "default"):
        self.mode = mode or self.default_mode
        if self.mode not in ("absolute", "relative"):
            raise VehiclustError(f"check {self.name}: mode must be 'absolute' or 'relative', got {self.mode!r}")
        if not 0.0 < threshold <= 1.0:
            raise VehiclustError(f"check {self.name}: threshold must be in (0, 1], got {threshold}")
        self.threshold = float(threshold)
        self.good = type(self).good if good is None else float(good)
        self.bad = type(self).bad if bad is None else float(bad)
        if self.good == self.bad:
            raise VehiclustError(f"check {self.name}: good and bad must differ")
        self.z_at = type(self).z_at if z_at is None else float(z_at)
        self.min_scale = type(self).min_scale if min_scale is None else float(min_scale)
        self.max_share = self.default_max_share if max_share == "default" else max_share

    # -- what a subclass provides ------------------------------------------------------------
    def raw(self, data: pd.DataFrame) -> np.ndarray:
        raise NotImplementedError

    def absolute(self, data: pd.DataFrame) -> np.ndarray:
        return ramp(self.raw(data), self.good, self.bad)

    # -- scoring -----------------------------------------------------------------------------
    def available(self, data: pd.DataFrame) -> bool:
        return all(c in data.columns for c in self.requires)

    def score(self, data: pd.DataFrame, context: CheckContext | None = None) -> np.ndarray:
        """Scores in [0, 1] for every row (0 where the value is unknown)."""
        context = context or CheckContext()
        valid = np.ones(len(data), bool) if context.valid is None else np.asarray(context.valid, bool)
        if self.mode == "absolute":
            score = self.absolute(data)
        else:
            score = self.relative(self.raw(data), valid, context.groups)
        score = np.where(valid & np.isfinite(score), score, 0.0)
        if self.max_share is not None:
            score = self.damp_common(score, valid, context.groups)
        return np.clip(score, 0.0, 1.0)

    def relative(self, raw: np.ndarray, valid: np.ndarray, groups: np.ndarray | None) -> np.ndarray:
        values = np.asarray(raw, dtype=np.float64)
        if self.log_scale:
            values = np.log(np.maximum(values, 1e-12))
        direction = 1.0 if self.bad > self.good else -1.0
        z = np.zeros(len(values))
        for members in group_members(values, valid, groups):
            z[members] = robust_z(values[members], min_scale=self.min_scale)
        z = np.abs(z) if self.two_sided else direction * z
        return np.clip(z / (2.0 * self.z_at), 0.0, 1.0)

    def damp_common(self, score: np.ndarray, valid: np.ndarray, groups: np.ndarray | None) -> np.ndarray:
        score = score.copy()
        for members in group_members(score, valid, groups):
            flagged = score[members] >= self.threshold
            if flagged.mean() > self.max_share:
                score[members] = score[members] * (self.threshold * 0.98)
        return score

    def describe(self) -> dict:
        """One row of the thresholds table."""
        at = self.good + (self.bad - self.good) * self.threshold
        return {"check": self.name, "reason": self.code, "mode": self.mode, "threshold": self.threshold,
                "flagged_at": (f"raw {'>' if self.bad > self.good else '<'} {at:g}" if self.mode == "absolute"
                               else f"robust z {'|z|' if self.two_sided else ''} > {self.z_at * 2 * self.threshold:g}"),
                "max_share": self.max_share, "summary": self.summary}


def ramp(values: np.ndarray, good: float, bad: float) -> np.ndarray:
    return np.clip((np.asarray(values, dtype=np.float64) - good) / (bad - good), 0.0, 1.0)


def group_members(values: np.ndarray, valid: np.ndarray, groups: np.ndarray | None):
    """Index arrays of the valid rows of each group with >= MIN_GROUP rows; the rest together."""
    rows = np.flatnonzero(valid & np.isfinite(values))
    if groups is None or len(rows) == 0:
        yield rows
        return
    labels = pd.Series(np.asarray(groups)[rows])
    sizes = labels.map(labels.value_counts())
    big = sizes.to_numpy() >= MIN_GROUP
    for _, index in labels[big].groupby(labels[big], sort=False).groups.items():
        yield rows[np.asarray(index)]
    if (~big).any():
        yield rows[~big]


def _col(data: pd.DataFrame, name: str) -> np.ndarray:
    return data[name].to_numpy(dtype=np.float64)


# -- the checks ----------------------------------------------------------------------------------
class Small(QualityCheck):
    name = code = "small"
    summary = "the image is too small to show a vehicle"
    requires = ("width", "height")
    good, bad = 64.0, 0.0

    def raw(self, data):
        side = np.minimum(_col(data, "width"), _col(data, "height"))
        return np.where(side > 0, side, np.nan)  # unknown size: no score


class OddAspect(QualityCheck):
    name = code = "odd_aspect"
    summary = "width/height far from the collection's usual shapes (a truncated or odd crop)"
    requires = ("width", "height")
    default_mode = "relative"
    two_sided = True
    good, bad = np.log(3.0), np.log(6.0)  # absolute mode: |log aspect| from 3:1 to 6:1
    z_at = 3.5  # demo: 0.7-1.5% of clean crops over it, 56-66% of truncated ones
    min_scale = 0.1

    def raw(self, data):
        w, h = _col(data, "width"), _col(data, "height")
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where((w > 0) & (h > 0), np.log(w / h), np.nan)

    def absolute(self, data):
        return ramp(np.abs(self.raw(data)), self.good, self.bad)


class Dark(QualityCheck):
    name = code = "dark"
    summary = "underexposed: too dark to see the content"
    requires = ("brightness",)
    good, bad = 0.15, 0.03
    min_scale = 0.03
    default_max_share = 0.5

    def raw(self, data):
        return _col(data, "brightness")


class Overexposed(QualityCheck):
    name = code = "overexposed"
    summary = "overexposed or glare: too bright, or washed out (even the darkest pixels are light)"
    requires = ("brightness", "luma_p01")
    good, bad = 0.6, 0.8  # mean luminance
    washed_good, washed_bad = 0.15, 0.35  # 1st percentile of luminance
    min_scale = 0.05

    def raw(self, data):
        return _col(data, "brightness")

    def absolute(self, data):
        brightness = _col(data, "brightness")
        washed_out = np.minimum(ramp(_col(data, "luma_p01"), self.washed_good, self.washed_bad),
                                ramp(brightness, 0.45, 0.6))  # only when bright: grey is low_contrast
        return np.maximum(ramp(brightness, self.good, self.bad), washed_out)


class LowContrast(QualityCheck):
    name = code = "low_contrast"
    summary = "the luminance spans only a narrow range"
    requires = ("dynamic_range",)
    good, bad = 0.2, 0.04
    min_scale = 0.05

    def raw(self, data):
        return _col(data, "dynamic_range")


class LowInformation(QualityCheck):
    name = code = "low_information"
    summary = "almost uniform: few distinct grey levels"
    requires = ("entropy",)
    good, bad = 4.0, 2.0
    min_scale = 0.3

    def raw(self, data):
        return _col(data, "entropy")


class Blurry(QualityCheck):
    name = code = "blurry"
    summary = "out of focus or smeared, judged on a thumbnail (relative to the image's size)"
    requires = ("blur_h", "blur_v")
    good, bad = 0.35, 0.55
    min_scale = 0.03
    default_max_share = 0.5

    def raw(self, data):
        return np.maximum(_col(data, "blur_h"), _col(data, "blur_v"))


class MotionBlur(QualityCheck):
    name = "motion_blur"
    code = "blurry"
    summary = "smeared along one direction (horizontal and vertical blur differ)"
    requires = ("blur_h", "blur_v")
    good, bad = 0.15, 0.35
    min_scale = 0.02
    default_max_share = 0.5

    def raw(self, data):
        return np.abs(_col(data, "blur_h") - _col(data, "blur_v"))

    def absolute(self, data):
        # a difference between the axes only means motion when the worse axis is blurred at all
        worse = np.maximum(_col(data, "blur_h"), _col(data, "blur_v"))
        return np.minimum(ramp(self.raw(data), self.good, self.bad), ramp(worse, 0.3, 0.4))


class Noisy(QualityCheck):
    name = code = "noisy"
    summary = "strong sensor noise"
    requires = ("noise",)
    good, bad = 0.02, 0.06
    log_scale = True
    min_scale = 0.25  # in log units: a factor of 1.28
    default_max_share = 0.5

    def raw(self, data):
        return _col(data, "noise")


class Grayscale(QualityCheck):
    name = code = "grayscale"
    summary = "no colour: a greyscale or infrared (night camera) image"
    requires = ("saturation",)
    good, bad = 0.06, 0.0
    min_scale = 0.03
    default_max_share = 0.05

    def raw(self, data):
        return _col(data, "saturation")


class Jpeg(QualityCheck):
    name = code = "jpeg"
    summary = "heavy JPEG compression: visible 8x8 blocks"
    requires = ("blockiness",)
    good, bad = 2.0, 3.0
    log_scale = True
    min_scale = 0.1

    def raw(self, data):
        return _col(data, "blockiness")


# in the order of their outliers.csv columns; the outlier verdict registers each in
# vehiclust.outliers.checks.CHECKS (adding a check here is all it takes)
QUALITY_CHECKS: tuple[type[QualityCheck], ...] = (Small, OddAspect, Dark, Overexposed, LowContrast, LowInformation,
                                                  Blurry, MotionBlur, Noisy, Grayscale, Jpeg)
DEFAULT_CHECKS: tuple[str, ...] = tuple(c.name for c in QUALITY_CHECKS)


def create_check(name: str, **overrides) -> QualityCheck:
    for check in QUALITY_CHECKS:
        if check.name == name:
            return check(**overrides)
    raise VehiclustError(f"unknown quality check {name!r}; available: {', '.join(DEFAULT_CHECKS)}")


def create_checks(names=DEFAULT_CHECKS, overrides: dict[str, dict] | None = None) -> list[QualityCheck]:
    """The checks by name, each with the user's overrides (``{"dark": {"threshold": 0.6}}``)."""
    overrides = overrides or {}
    unknown = set(overrides) - set(DEFAULT_CHECKS)
    if unknown:
        raise VehiclustError(f"overrides for unknown checks {sorted(unknown)}; available: {', '.join(DEFAULT_CHECKS)}")
    return [create_check(n, **overrides.get(n, {})) for n in names]


def thresholds_table(checks: list[QualityCheck] | None = None) -> pd.DataFrame:
    return pd.DataFrame([c.describe() for c in (checks or create_checks())])


def score_checks(data: pd.DataFrame, checks: list[QualityCheck], context: CheckContext | None = None
                 ) -> dict[str, np.ndarray]:
    """``{check name: scores}`` for every check whose inputs are present."""
    return {c.name: c.score(data, context) for c in checks if c.available(data)}
