"""Generated cluster descriptions: a short name and a sentence per cluster, built only from
evidence that is stored beside them.

Evidence (one row per cluster x attribute x value, written to ``cluster_evidence.csv``):
- categorical attributes: the vehicle type and body colour predicted per image (argmax of the
  ``vehicle_type`` / ``vehicle_color`` descriptors), the top ImageNet class (``imagenet_top``),
  the metadata labels (``type``, ``color``,
  ``camera_id``) and day/night from the capture time; for each value its share inside the
  cluster and in the whole collection;
- numeric attributes: the median image size and quality measurements inside the cluster
  against the whole collection.

The rule (:func:`is_characteristic`): a value is named when it covers at least
``MIN_SHARE`` of the cluster and at least ``MIN_LIFT`` times its share of the collection (a
value as common inside as outside says nothing about the cluster). A numeric attribute is named when the
cluster's median differs from the collection's by at least ``NUMERIC_RATIO``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from vehiclust.rules import day_night
from vehiclust.runfolder import RunFolder, load_quality_table

MIN_SHARE = 0.25
MIN_LIFT = 1.5
NUMERIC_RATIO = 1.25  # medians at least 25% apart (either way)
MAX_VALUES = 2  # values named per attribute

# (attribute, label in the sentence); predicted first, labels after
CATEGORICAL = (("color_label", "colour label"), ("type_label", "type label"),
               ("predicted_color", "colour"), ("predicted_type", "type"),
               ("imagenet_class", "top ImageNet class"), ("day_night", "time"), ("camera", "camera"))
NUMERIC = (("pixels", "image size", "px"), ("brisque", "BRISQUE (lower is better)", ""),
           ("brightness", "brightness", ""), ("blur", "blur", ""))


@dataclass(frozen=True)
class Evidence:
    cluster: int
    attribute: str
    value: str
    share: float  # for numeric attributes: the cluster's median
    overall: float  # the collection's share or median
    named: bool

    @property
    def lift(self) -> float:
        return self.share / self.overall if self.overall else float("inf")


RULE = (f"a value is named when it covers at least {MIN_SHARE:.0%} of the cluster and at least {MIN_LIFT:g} times "
        f"its share of the collection; a median is named when it differs from the collection's by "
        f"{NUMERIC_RATIO - 1:.0%} or more")


def is_characteristic(share: float, overall: float) -> bool:
    return share >= MIN_SHARE and share >= MIN_LIFT * overall


def numeric_differs(inside: float, overall: float) -> bool:
    if not (np.isfinite(inside) and np.isfinite(overall)) or inside <= 0 or overall <= 0:
        return False
    return max(inside / overall, overall / inside) >= NUMERIC_RATIO


def percent(value: float) -> str:
    return f"{round(100 * value)}%"


def attributes(run: RunFolder, table: pd.DataFrame) -> pd.DataFrame:
    """One row per image, one column per attribute the collection offers (categorical as
    strings, '' for unknown; numeric as floats)."""
    frame = pd.DataFrame(index=table.index)
    for column, attribute in (("color", "color_label"), ("type", "type_label"), ("camera_id", "camera")):
        if column in table.columns and (table[column].astype(str) != "").any():
            frame[attribute] = table[column].fillna("").astype(str)
    if "time" in table.columns:
        days = day_night(table["time"])
        if days.notna().any():
            frame["day_night"] = days.fillna("")
    names = set(run.descriptor_names())
    for descriptor, attribute, prefix in (("vehicle_type", "predicted_type", ""),
                                          ("vehicle_color", "predicted_color", "p_")):
        if descriptor in names:
            frame[attribute] = _argmax_names(run, descriptor, prefix)
    if "imagenet_top" in names:
        frame["imagenet_class"] = _top_imagenet_class(run)
    frame["pixels"] = (table["width"].astype(float) * table["height"].astype(float)).where(table["width"] > 0)
    quality = load_quality_table(run, len(table))
    if quality is not None:
        for name in ("brisque", "brightness", "blur"):
            if name in quality.columns:
                frame[name] = quality[name].to_numpy()
    return frame


def _argmax_names(run: RunFolder, descriptor: str, prefix: str) -> np.ndarray:
    meta = run.descriptor_meta(descriptor)
    # vehicle_color: only the named-colour shares (p_*), which come first; then Lab and histograms
    columns = [c for c in meta.get("columns", []) if c.startswith(prefix)]
    matrix = np.asarray(run.load_descriptor(descriptor)[:, :len(columns)], dtype=np.float32)
    names = np.array([c[len(prefix):] for c in columns], dtype=object)
    out = names[np.argmax(np.nan_to_num(matrix, nan=-1), axis=1)]
    invalid = list(run.invalid_rows(descriptor)) + list(np.flatnonzero(~np.isfinite(matrix).all(1)))
    out[invalid] = ""
    return out


def _top_imagenet_class(run: RunFolder) -> np.ndarray:
    from vehiclust.describe.vehicle_type import imagenet_classes

    names = np.array(imagenet_classes(), dtype=object)
    top = np.asarray(run.load_descriptor("imagenet_top")[:, 0])
    out = names[np.clip(np.nan_to_num(top, nan=0).astype(int), 0, len(names) - 1)]
    out[list(run.invalid_rows("imagenet_top"))] = ""
    return out


def cluster_evidence(frame: pd.DataFrame, labels: np.ndarray) -> list[Evidence]:
    evidence = []
    clusters = sorted(int(c) for c in np.unique(labels) if c >= 0)
    for attribute, _ in CATEGORICAL:
        if attribute not in frame.columns:
            continue
        values = frame[attribute]
        known = values != ""
        overall = values[known].value_counts(normalize=True)
        for cluster in clusters:
            members = values[(labels == cluster) & known]
            for value, share in members.value_counts(normalize=True).head(5).items():
                evidence.append(Evidence(cluster, attribute, str(value), float(share), float(overall[value]),
                                         is_characteristic(share, overall[value])))
    for attribute, _, _ in NUMERIC:
        if attribute not in frame.columns or frame[attribute].notna().sum() == 0:
            continue
        overall = float(frame[attribute].median())
        for cluster in clusters:
            inside = float(frame[attribute][labels == cluster].median())
            evidence.append(Evidence(cluster, attribute, "median", inside, overall, numeric_differs(inside, overall)))
    return evidence


def describe_clusters(frame: pd.DataFrame, labels: np.ndarray) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(descriptions: cluster, size, share, name, description; evidence table)."""
    evidence = cluster_evidence(frame, labels)
    valid = labels >= 0
    rows = []
    for cluster in sorted(int(c) for c in np.unique(labels[valid])):
        mine = [e for e in evidence if e.cluster == cluster]
        size = int((labels == cluster).sum())
        rows.append({"cluster": cluster, "size": size, "share": size / max(int(valid.sum()), 1),
                     "name": cluster_name(mine, cluster), "description": cluster_sentence(mine)})
    table = pd.DataFrame([{**e.__dict__, "lift": e.lift} for e in evidence])
    return pd.DataFrame(rows, columns=["cluster", "size", "share", "name", "description"]), table


def _named(evidence: list[Evidence], attribute: str) -> list[Evidence]:
    picked = [e for e in evidence if e.attribute == attribute and e.named]
    return sorted(picked, key=lambda e: -e.share)[:MAX_VALUES]


def cluster_name(evidence: list[Evidence], cluster: int) -> str:
    colour = _named(evidence, "color_label") or _named(evidence, "predicted_color")
    kind = _named(evidence, "type_label") or _named(evidence, "predicted_type")
    words = []
    if colour:
        words.append(" / ".join(e.value for e in colour))
    if kind:
        words.append(" / ".join(_plural(e.value) for e in kind))
    elif colour:
        words.append("vehicles")
    time_of_day = _named(evidence, "day_night")
    if time_of_day:
        words.append(("at " if time_of_day[0].share >= 0.5 else "often at ") + time_of_day[0].value)
    if not words:
        camera = _named(evidence, "camera")
        words = [f"camera {camera[0].value}"] if camera else [f"mixed cluster {cluster}"]
    text = " ".join(words)
    return text[0].upper() + text[1:]


def _plural(word: str) -> str:
    word = word.replace("_", " ")
    if word.endswith(("s", "x", "ch", "sh")):
        return word + "es"
    return word if word.endswith("military") or word == "not a vehicle" else word + "s"


def cluster_sentence(evidence: list[Evidence]) -> str:
    parts = []
    for attribute, label in CATEGORICAL:
        named = _named(evidence, attribute)
        if named:
            values = ", ".join(f"{e.value} {percent(e.share)} (vs {percent(e.overall)} overall)" for e in named)
            parts.append(f"{label}: {values}")
    for attribute, label, unit in NUMERIC:
        for e in (x for x in evidence if x.attribute == attribute and x.named):
            direction = "higher" if e.share > e.overall else "lower"
            parts.append(f"{label} {direction}: median {_number(e.share)}{unit} (vs {_number(e.overall)}{unit} overall)")
    if not parts:
        return "No attribute stands out: every type, colour, time and quality measure is close to the collection."
    return "; ".join(parts) + "."


def _number(value: float) -> str:
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.3g}"
