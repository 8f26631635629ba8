"""The ingest stage: the input -> collection.parquet (and the descriptors the input brought)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from vehiclust.collection.ingest import IngestSettings, ingest, ingest_key
from vehiclust.collection.sources import detect_input
from vehiclust.errors import VehiclustError
from vehiclust.runfolder import COLLECTION
from vehiclust.stage import RunContext, Stage


@dataclass(frozen=True)
class IngestOptions:
    settings: IngestSettings = field(default_factory=IngestSettings)
    descriptor_files: tuple[Path, ...] = ()
    force: bool = False  # accept a non-empty folder vehiclust did not make (not part of the key)


class IngestStage(Stage):
    """Reads ``ctx.input_path``; current while the input's files and the settings did not change."""

    name = "ingest"

    def __init__(self, settings: IngestSettings | None = None, descriptor_files: list[Path] | tuple = (),
                 force: bool = False):
        super().__init__(IngestOptions(settings or IngestSettings(), tuple(descriptor_files), force))

    def _input(self, ctx: RunContext) -> Path:
        if ctx.input_path is None:
            raise VehiclustError("ingest: no input given (RunContext.input_path)")
        return Path(ctx.input_path)

    def key(self, ctx: RunContext) -> str:
        settings = self.settings.settings
        spec = detect_input(self._input(ctx), list(self.settings.descriptor_files), settings.follow_links,
                            settings.max_descriptor_bytes)
        return ingest_key(self._input(ctx), spec, settings)

    def outputs(self, ctx: RunContext) -> list[Path]:
        return [COLLECTION.path(ctx.run)]

    def run(self, ctx: RunContext) -> dict:
        ingest(self._input(ctx), ctx.run, list(self.settings.descriptor_files), self.settings.settings,
               ctx.reporter, self.settings.force)
        return ctx.run.stage_facts(self.name)
