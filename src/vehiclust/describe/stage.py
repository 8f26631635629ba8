"""The describe stage: which descriptors to compute, which stored ones are current, and their
provenance. The mechanics (decoding, batching, chunked resumable writing) are in ``extract``."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pandas as pd

from vehiclust.describe.extract import DescribeSettings, Planned, extract
from vehiclust.describe.int8 import INT8_KEY
from vehiclust.describe.registry import DESCRIPTORS, DescriptorSpec, create_describer, get_spec
from vehiclust.errors import VehiclustError
from vehiclust.progress import NullReporter, Reporter
from vehiclust.runfolder import DESCRIPTOR, DESCRIPTOR_META, RunFolder, fingerprint
from vehiclust.stage import RunContext, Stage

__all__ = ["DescribeSettings", "DescribeStage", "describe", "descriptor_key", "is_current", "rows_key"]


def rows_key(table: pd.DataFrame) -> str:
    """Identity of the rows a descriptor is aligned with."""
    return fingerprint("rows", table["path"].tolist(), table["content_hash"].tolist())


def chunk_keys(name: str, table: pd.DataFrame, chunks: list[tuple[int, int]], precision: str = "") -> list[str]:
    """One fingerprint per chunk of rows: what a stored chunk of ``name`` was computed from (the
    descriptor's identity, the chunk's bounds, its rows' paths and content hashes). A chunk
    whose key did not change since the last matrix is copied from it, not described again."""
    identity = _identity(name, precision)
    paths, hashes = table["path"].tolist(), table["content_hash"].tolist()
    return [fingerprint("chunk", identity, start, stop, paths[start:stop], hashes[start:stop])
            for start, stop in chunks]


def descriptor_key(name: str, table: pd.DataFrame, rows: str | None = None, precision: str = "") -> str:
    """``rows``: ``rows_key(table)`` when the caller already has it (it hashes every path);
    ``precision``: ``pass_precision`` of the pass that computes it."""
    return fingerprint("describe", *_identity(name, precision), rows or rows_key(table))


def _identity(name: str, precision: str) -> tuple:
    """What computes descriptor ``name``: its code's version, its weights and, when not the
    float network, its precision (so int8 and fp32 features are never mixed in one matrix)."""
    spec = get_spec(name)
    return (name, spec.version, _weights_identity(spec), *([precision] if precision else []))


def pass_precision(name: str, precision: str, device: str) -> str:
    """The int8 recipe (``int8q1``) when descriptor ``name`` comes from a backbone that runs in
    int8 on ``device``, else '' (the float network: keys as before int8 existed)."""
    from vehiclust.describe.describers import runs_int8

    spec = get_spec(name)
    return INT8_KEY if spec.backbone and runs_int8(spec.backbone, device, precision) else ""


def _weights_identity(spec: DescriptorSpec) -> str:
    """Which weights file a user-provided backbone reads: other weights, other descriptor."""
    from vehiclust.describe.backbones import BACKBONES

    if not spec.backbone or not BACKBONES.get(spec.backbone).user_weights:
        return ""
    try:
        path = BACKBONES.get(spec.backbone).locate()
    except VehiclustError:
        return "missing"  # extraction will stop with the message that says where to put it
    stat = path.stat()
    return f"{path}|{stat.st_size}|{stat.st_mtime_ns}"


def is_current(run: RunFolder, name: str, key: str | None = None, *, table: pd.DataFrame | None = None,
               rows: str | None = None) -> bool:
    """Whether descriptor ``name`` is stored and matches the run's current collection.

    Imported descriptors are current while stored (ingest rewrites them with the collection);
    extracted ones when their fingerprint is ``key`` (computed from ``table`` and ``rows`` when not
    given); a stored name no registered descriptor has (a head, an older registry's) is not.
    """
    if not (run.descriptor_meta_path(name).exists() and run.descriptor_path(name).exists()):
        return False
    meta = run.descriptor_meta(name)
    if meta.get("kind") == "imported":
        return True
    if key is not None:
        return meta.get("fingerprint") == key
    if name not in DESCRIPTORS:
        return False
    table = run.load_collection() if table is None else table
    rows = rows or rows_key(table)
    return meta.get("fingerprint") in {descriptor_key(name, table, rows, p) for p in ("", INT8_KEY)}


def describe(run: RunFolder, names: list[str], settings: DescribeSettings = DescribeSettings(),
             reporter: Reporter | None = None) -> list[str]:
    """Compute every requested descriptor that is not already stored; returns those computed."""
    from vehiclust.describe.devices import resolve_device

    reporter = reporter or NullReporter()
    table = run.load_collection()
    settings = settings.for_device(resolve_device(settings.device))
    keys, pending = _pending(run, names, table, settings)
    if pending and not (table["location"] != "").any():
        raise VehiclustError(f"descriptors {', '.join(pending)} need images, and this collection has "
                             f"none (descriptor files only); pass descriptor files instead")
    if pending and (fallback := settings_without_refused_int8(pending, settings, reporter)) is not settings:
        settings = fallback
        keys, pending = _pending(run, names, table, settings)
    if not pending:
        reporter.message(f"describe: up to date ({', '.join(names)})")
        return []
    planned = plan(pending, settings)
    computed = [n for p in planned for n in p.describer.outputs if n in pending]

    def precision_of(name: str) -> str:
        return pass_precision(name, settings.precision, settings.device)

    def record(name: str, planned: Planned, facts: dict) -> None:
        spec = get_spec(name)
        run.save_descriptor_meta(name, {
            "name": name, "kind": "extracted", "summary": spec.summary, "fingerprint": keys[name],
            "dtype": spec.dtype, **facts, **planned.describer.provenance(),
            "columns": list(spec.columns) if spec.columns else None,
        })

    extract(run, table, planned, computed, keys, settings, reporter, record,
            chunk_keys=lambda name, chunks: chunk_keys(name, table, chunks, precision_of(name)))
    return pending


def _pending(run: RunFolder, names: list[str], table: pd.DataFrame,
             settings: DescribeSettings) -> tuple[dict[str, str], list[str]]:
    """Each descriptor's key under ``settings``, and those not stored with it."""
    keys = run_keys(names, table, settings)
    return keys, [n for n in names if not is_current(run, n, keys[n])]


def settings_without_refused_int8(names: list[str], settings: DescribeSettings, reporter: Reporter) -> DescribeSettings:
    """``settings`` when every int8 graph these descriptors need is made and passes its check
    against fp32 (made here, once, before any worker needs it); else the same settings in fp32,
    said in one line: a default run goes on at full precision rather than stopping."""
    from vehiclust.describe.describers import ensure_int8
    from vehiclust.describe.int8 import Int8QuantisationError

    backbones = sorted({get_spec(n).backbone for n in names if pass_precision(n, settings.precision, settings.device)})
    for backbone in backbones:
        try:
            ensure_int8(backbone)
        except Int8QuantisationError as exc:
            reporter.message(f"[yellow]warning:[/] {exc}; describing in fp32 instead")
            return replace(settings, precision="fp32")
    return settings


def run_keys(names: list[str], table: pd.DataFrame, settings: DescribeSettings) -> dict[str, str]:
    """The key each descriptor is computed with by ``settings`` (its device resolved)."""
    rows = rows_key(table)
    return {name: descriptor_key(name, table, rows, pass_precision(name, settings.precision, settings.device))
            for name in names}


def plan(names: list[str], settings: DescribeSettings) -> list[Planned]:
    """One describer per pass key of the requested descriptors, on the settings' device."""
    first_of_pass: dict[str, str] = {}
    for name in names:
        first_of_pass.setdefault(get_spec(name).describer, name)
    return [Planned(get_spec(name), create_describer(name, settings.model_threads, settings.device, settings.precision))
            for name in first_of_pass.values()]


class DescribeStage(Stage):
    """Extracts ``ctx.descriptors`` that the input did not bring, plus the support descriptors
    the outlier checks read when ``image_checks``. Current while every one of them is stored
    with the key it would be computed with now; an interrupted extraction resumes per chunk
    inside :func:`describe`."""

    name = "describe"

    def __init__(self, settings: DescribeSettings | None = None, image_checks: bool = True):
        super().__init__(settings or DescribeSettings())
        self.image_checks = image_checks

    def _names(self, ctx: RunContext) -> list[str]:
        from vehiclust.run_descriptors import to_extract

        return to_extract(ctx.run, ctx.descriptors, self.image_checks)

    def key(self, ctx: RunContext) -> str:
        names = self._names(ctx)
        if not names:
            return fingerprint("describe", {})
        from vehiclust.describe.devices import resolve_device

        settings = self.settings.for_device(resolve_device(self.settings.device))
        return fingerprint("describe", run_keys(names, ctx.run.load_collection(), settings))

    def outputs(self, ctx: RunContext) -> list[Path]:
        names = self._names(ctx)
        return [DESCRIPTOR.path(ctx.run, n) for n in names] + [DESCRIPTOR_META.path(ctx.run, n) for n in names]

    def outputs_intact(self, ctx: RunContext, outputs: list[Path]) -> bool:
        """False when a descriptor's provenance is damaged: :func:`describe` then says which file."""
        try:
            for path in outputs:
                if path == DESCRIPTOR_META.path(ctx.run, path.stem):
                    ctx.run.descriptor_meta(path.stem)
        except VehiclustError:
            return False
        return True

    def run(self, ctx: RunContext) -> dict:
        names = self._names(ctx)
        computed = describe(ctx.run, names, self.settings, ctx.reporter) if names else []
        return {"descriptors": names, "computed": computed}
