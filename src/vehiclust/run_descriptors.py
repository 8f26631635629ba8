"""Which descriptors a run computes, clusters and reads: the rules the pipeline and every
command share (the CLI only passes the user's ``--descriptors`` through)."""

from __future__ import annotations

from vehiclust.describe import default_descriptors, is_current, never_clustered, rows_key, support_descriptors
from vehiclust.errors import VehiclustError
from vehiclust.runfolder import RUNS, RunFolder


def imported_descriptors(run: RunFolder) -> list[str]:
    """Descriptors the current collection brought with it (from the ingest record)."""
    return list((run.stage_record("ingest") or {}).get("descriptors", []))


def choose_descriptors(run: RunFolder, requested: list[str] | None) -> list[str]:
    """What to compute: the user's list; else what the input brought; else the defaults."""
    if requested:
        return list(dict.fromkeys(requested))
    brought = imported_descriptors(run)
    if brought:
        return brought
    return list(default_descriptors())


def to_extract(run: RunFolder, names: list[str], image_checks: bool = True) -> list[str]:
    """The requested descriptors the input did not bring, plus the ones the outlier checks read
    (quality, vehicle type) when the collection has images and ``image_checks``."""
    brought = set(imported_descriptors(run))
    wanted = [n for n in names if n not in brought]
    if image_checks and (run.load_collection()["location"] != "").any():
        wanted += [n for n in support_descriptors() if n not in wanted and n not in brought]
    return wanted


def current_descriptors(run: RunFolder, requested: list[str] | None) -> list[str]:
    """The descriptors to cluster: the requested ones; else every stored descriptor that matches
    the current collection (imported, extracted, and the heads trained on those)."""
    brought = imported_descriptors(run)
    if requested:
        names = requested
    else:
        table = run.load_collection()
        rows = rows_key(table)
        stored = run.descriptor_names()
        metas = {n: run.descriptor_meta(n) for n in stored}
        skipped = set(brought) | set(never_clustered())
        extracted = [n for n in stored if n not in skipped and metas[n].get("kind") != "imported"
                     and is_current(run, n, table=table, rows=rows)]
        heads = [n for n in stored
                 if metas[n].get("kind") == "head" and metas[n].get("backbone") in brought + extracted]
        names = brought + extracted + heads
    missing = [n for n in names if n not in run.descriptor_names()]
    if missing:
        raise VehiclustError(f"{run.root}: descriptors {', '.join(missing)} are not computed yet; "
                             f"run `vehiclust describe {run.root} --descriptors {','.join(missing)}`")
    return names


MIN_CLUSTER_ROWS = 3  # fewer usable rows than this: no partition to choose


def usable_rows(run: RunFolder, name: str) -> int:
    """Rows of a stored descriptor that are not placeholders (NaN rows were marked when stored),
    from its provenance alone: the stages ask this several times a run."""
    meta = run.descriptor_meta(name)
    shape = meta.get("shape")
    rows = int(shape[0]) if isinstance(shape, list) and shape else len(run.load_descriptor(name))
    return rows - len(meta.get("invalid") or {})


def clusterable(run: RunFolder, names: list[str]) -> list[str]:
    """The descriptors of ``names`` with enough usable rows to cluster: the cluster stage sweeps
    these, says why it leaves out the others, and the stages after it read only these. Mixtures
    and names not stored pass (their own stage speaks for them)."""
    from vehiclust.compare.settings import is_derived

    stored = set(run.descriptor_names())
    return [n for n in names if is_derived(n) or n not in stored or usable_rows(run, n) >= MIN_CLUSTER_ROWS]


def clustered_descriptors(run: RunFolder) -> list[str]:
    """The descriptors the cluster stage swept (runs.csv), without compare's mixtures and consensus."""
    from vehiclust.compare.settings import is_derived

    runs = RUNS.load(run)
    return [n for n in dict.fromkeys(runs["descriptor"].astype(str)) if not is_derived(n)]


__all__ = ["choose_descriptors", "clusterable", "clustered_descriptors",
           "current_descriptors", "imported_descriptors", "to_extract"]
