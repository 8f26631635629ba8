"""Every outlier check behind one interface: a :class:`CheckSpec` per check in ``CHECKS``.

A spec states the check's name (its ``<name>_score`` column), the reason code it writes into
``outlier_reasons``, what it needs (:data:`vehiclust.outliers.evidence.NEEDS`), its default
threshold and its factory. ``factory(threshold=..., **options)`` builds a :class:`Check` whose
``score(evidence)`` gives every image a score in [0, 1] (higher = worse), or None when the run
lacks its inputs. The verdict (:mod:`vehiclust.outliers.verdict`) flags a row for each check whose
score reached that check's threshold: the spec's default, or ``--threshold CHECK=VALUE``.

==============  ============================  ==============  =========  ======================
check           needs                         reason          threshold  score
==============  ============================  ==============  =========  ======================
unreadable      collection                    unreadable      0.5        1 if the file could not
                                                                         be read or decoded
invalid_vector  collection                    invalid_vector  0.5        1 if an imported vector
                                                                         had NaN/inf
(image quality  collection (size) or quality  its code        0.5        :mod:`vehiclust.quality.
 checks)                                                                 checks`, one per class
duplicate       collection                    duplicate       0.5        1 for a later byte copy
near_duplicate  collection, quality           near_duplicate  0.5        perceptual-hash copy
no_vehicle      vehicle_type                  no_vehicle      0.8        P(not a vehicle)
isolated        descriptor, clustering        isolated        0.5        consensus robust z / 2z
==============  ============================  ==============  =========  ======================

Adding a check: a :class:`Check` subclass here with ``@CHECKS.add(name, ...)`` (an image quality
check: a class in :mod:`vehiclust.quality.checks` listed in its ``QUALITY_CHECKS``); the contract
test in ``tests/test_outliers.py`` runs it. Its reason goes last in ``outlier_reasons`` unless
:data:`vehiclust.outliers.verdict.REASON_ORDER` places it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from vehiclust.errors import VehiclustError
from vehiclust.outliers.evidence import Evidence
from vehiclust.quality.checks import QUALITY_CHECKS, CheckContext, QualityCheck
from vehiclust.quality.duplicates import NEAR_MAX_DISTANCE, hashes_from_chunks, near_duplicates
from vehiclust.registry import Registry

FLAG_AT = 0.5
SIZE_COLUMNS = {"width", "height"}  # what the collection itself says about an image
SIGNATURE_COLUMNS = ("brightness", "contrast", "chroma")  # (+ log aspect) confirm near duplicates


@dataclass
class CheckResult:
    score: np.ndarray  # in [0, 1] per row
    parts: dict[str, np.ndarray] = field(default_factory=dict)  # shown as <key>_score, not judged
    copy_of: np.ndarray | None = None  # the row each row copies (-1: none): the duplicate_of column
    because: list[str] | None = None  # per row, what made it score (the isolated_by column)


class Check:
    """One check with its threshold; subclasses implement :meth:`score`."""

    def __init__(self, threshold: float = FLAG_AT):
        self.threshold = float(threshold)

    def score(self, evidence: Evidence) -> CheckResult | None:
        raise NotImplementedError


@dataclass(frozen=True)
class CheckSpec:
    name: str
    factory: Callable[..., Check]
    summary: str
    code: str  # reason code in outlier_reasons
    needs: tuple[str, ...]  # keys of evidence.NEEDS
    threshold: float = FLAG_AT  # the default; --threshold CHECK=VALUE overrides it


CHECKS: Registry[CheckSpec] = Registry("outlier check", CheckSpec)


@CHECKS.add("unreadable", summary="the file could not be read or decoded", code="unreadable",
            needs=("collection",))
class Unreadable(Check):
    def score(self, evidence):
        return CheckResult(np.array([1.0 if e else 0.0 for e in evidence.error]))


@CHECKS.add("invalid_vector", summary="an imported descriptor had NaN or inf in this row", code="invalid_vector",
            needs=("collection",))
class InvalidVector(Check):
    def score(self, evidence):
        return CheckResult(np.asarray(evidence.invalid_vector, dtype=np.float64))


class ImageQuality(Check):
    """One of :mod:`vehiclust.quality.checks` scored on the evidence: the size checks on the
    collection's width and height, the others on the quality descriptor's measured rows."""

    def __init__(self, quality_check: type[QualityCheck], threshold: float = FLAG_AT, **options):
        super().__init__(threshold)
        self.check = quality_check(threshold=threshold, **options)

    def score(self, evidence):
        data = evidence.image_table
        if not self.check.available(data):
            return None
        valid = evidence.readable if set(self.check.requires) <= SIZE_COLUMNS else evidence.measured
        return CheckResult(self.check.score(data, CheckContext(evidence.groups, valid)))


for _quality in QUALITY_CHECKS:
    CHECKS.register(CheckSpec(
        name=_quality.name, factory=partial(ImageQuality, _quality), summary=_quality.summary, code=_quality.code,
        needs=("collection",) if set(_quality.requires) <= SIZE_COLUMNS else ("collection", "quality")))


@CHECKS.add("duplicate", summary="a byte-identical copy of an earlier file", code="duplicate", needs=("collection",))
class Duplicate(Check):
    def score(self, evidence):
        if evidence.exact_copies is None:
            return None
        score, original = evidence.exact_copies
        return CheckResult(score, copy_of=original)


@CHECKS.add("near_duplicate", summary="the same picture re-encoded, shifted or resized", code="near_duplicate",
            needs=("collection", "quality"))
class NearDuplicate(Check):
    def __init__(self, threshold: float = FLAG_AT, max_distance: int = NEAR_MAX_DISTANCE):
        super().__init__(threshold)
        self.max_distance = max_distance

    def score(self, evidence):
        quality = evidence.quality
        if quality is None or not {"phash16_0", "phash16_3"} <= set(quality.columns):
            return None
        chunks = quality[[f"phash16_{i}" for i in range(4)]].to_numpy()
        ok = evidence.measured & np.all(np.isfinite(chunks), axis=1)
        hashes = hashes_from_chunks(np.where(np.isfinite(chunks), chunks, 0))
        width, height = (evidence.table[c].to_numpy(np.float64) for c in ("width", "height"))
        with np.errstate(divide="ignore", invalid="ignore"):
            aspect = np.log(width / height)
        signature = np.column_stack([quality[c].to_numpy() for c in SIGNATURE_COLUMNS if c in quality] + [aspect])
        copies = evidence.exact_copies[1] if evidence.exact_copies is not None else None  # left to duplicate
        score, original, _ = near_duplicates(hashes, ok, copies, self.max_distance, signature=signature,
                                             size_keys=(width * 100003 + height).astype(np.int64))
        return CheckResult(score, copy_of=original)


@CHECKS.add("no_vehicle", summary="the vehicle_type model sees no vehicle", code="no_vehicle",
            needs=("vehicle_type",), threshold=0.8)
class NoVehicle(Check):
    # vehicle_type's not_a_vehicle is not calibrated at 0.5: on the demo 5.6% of clean crops
    # (night ones most) pass 0.5, 1.2% pass 0.8, with 94% of the no-vehicle crops
    def score(self, evidence):
        if evidence.not_vehicle is None:
            return None
        return CheckResult(np.where(evidence.readable, evidence.not_vehicle, 0.0))


@CHECKS.add("isolated", summary="far from the rest in some descriptor's space", code="isolated",
            needs=("descriptor", "clustering"))
class Isolated(Check):
    """Density / isolation detectors in each clustered descriptor's space plus the distance to
    the assigned cluster centre, each a robust z; a descriptor's z is the mean over them
    (consensus: one detector's heavy tail does not make an outlier), the image's the largest over
    descriptors (``combine="mean"``: the mean). The score is that z over twice the option ``z``
    (3), so the default threshold 0.5 sits at z = 3. On outlier-free data (Gaussian, Student-t, blobs, 5,000 x 64) the consensus z passed
    3 for 0-0.5% of rows, on the demo's clean images for none."""

    def __init__(self, threshold: float = FLAG_AT, z: float = 3.0, combine: str = "max"):
        super().__init__(threshold)
        if combine not in ("max", "mean"):
            raise VehiclustError(f"check isolated: combine must be 'max' or 'mean', got {combine!r}")
        self.z, self.combine = float(z), combine

    def score(self, evidence):
        if not evidence.isolation:
            return None
        per_descriptor = {name: np.mean(list(zs.values()), axis=0) for name, zs in evidence.isolation.items()}
        stacked = np.array(list(per_descriptor.values()))
        z = stacked.mean(axis=0) if self.combine == "mean" else stacked.max(axis=0)
        return CheckResult(np.where(evidence.readable, self._scaled(z), 0.0),
                           parts={f"isolated_{name}": self._scaled(z) for name, z in per_descriptor.items()},
                           because=self._because(evidence.isolation))

    def _scaled(self, z: np.ndarray) -> np.ndarray:
        return np.clip(z / (2 * self.z), 0, 1)

    def _because(self, isolation: dict[str, dict[str, np.ndarray]]) -> list[str]:
        """Per row the (descriptor:detector) pairs at or over ``z``, strongest first (at most 4)."""
        labels = [f"{name}:{det}" for name, zs in isolation.items() for det in zs]
        stacked = np.array([z for zs in isolation.values() for z in zs.values()])
        over = stacked >= self.z
        order = np.argsort(-stacked, axis=0)
        return [";".join([labels[j] for j in order[:, i] if over[j, i]][:4]) for i in range(stacked.shape[1])]
