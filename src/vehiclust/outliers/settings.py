"""The outliers stage's settings, and how command-line options become them."""

from __future__ import annotations

from dataclasses import dataclass, field

from vehiclust.errors import VehiclustError
from vehiclust.outliers.checks import CHECKS
from vehiclust.outliers.detectors import DETECTORS, DetectorSettings


@dataclass(frozen=True)
class OutlierSettings:
    checks: tuple[str, ...] | None = None  # the checks to run, in column order; None: every registered one
    thresholds: dict = field(default_factory=dict)  # {check: threshold in (0, 1]}; default: the check's spec
    # other options of a check's factory: {"dark": {"mode": "relative"}, "isolated": {"z": 3.5},
    # "near_duplicate": {"max_distance": 6}}
    options: dict = field(default_factory=dict)
    group_by: str | None = "auto"  # relative checks per camera ("auto": camera_id when present)
    detectors: DetectorSettings = field(default_factory=DetectorSettings)
    use_cluster_distance: bool = True  # the isolated check also reads the distance to the cluster centre
    contamination: float | None = None  # a fixed share instead of thresholds

    def selected(self) -> list[str]:
        return list(self.checks) if self.checks is not None else CHECKS.names()

    def threshold(self, check: str) -> float:
        """The one place a check's threshold comes from: the user's, else the spec's default."""
        return float(self.thresholds.get(check, CHECKS.get(check).threshold))


def outlier_settings(contamination: float | None = None, thresholds: list[str] | None = None,
                     group_by: str | None = "auto", detectors: str | None = None) -> OutlierSettings:
    """Settings from command-line style options.

    ``thresholds``: ``"check=value"`` items, e.g. ``["dark=0.6", "no_vehicle=0.9", "isolated=0.7"]``
    (a score threshold in (0, 1]); ``group_by``: a collection column, ``"auto"`` or ``"none"``;
    ``detectors``: comma-separated detector names.
    """
    chosen: dict[str, float] = {}
    for item in thresholds or []:
        name, sep, value = item.partition("=")
        name = name.strip()
        try:
            number = float(value)
        except ValueError:
            number = float("nan")
        if not sep or not 0.0 < number <= 1.0:
            raise VehiclustError(f"--threshold expects CHECK=VALUE with VALUE in (0, 1], got {item!r}")
        if name not in CHECKS:
            raise VehiclustError(f"--threshold: unknown check {name!r}; checks: {', '.join(CHECKS.names())}")
        chosen[name] = number
    detector_settings = DetectorSettings()
    if detectors is not None:
        names = tuple(n.strip() for n in detectors.split(",") if n.strip())
        unknown = [n for n in names if n not in DETECTORS]
        if unknown:
            raise VehiclustError(f"--detectors: unknown {', '.join(unknown)}; available: {', '.join(DETECTORS)}")
        detector_settings = DetectorSettings(detectors=names)
    return OutlierSettings(thresholds=chosen, contamination=contamination,
                           group_by=None if group_by in (None, "none") else group_by, detectors=detector_settings)
