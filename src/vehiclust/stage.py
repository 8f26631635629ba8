"""The stage contract: what every stage of the pipeline declares and how it is run.

A stage reads the artifacts of earlier stages from the run folder and writes its own there.
It declares its settings (given at construction), its key (a fingerprint of everything its
outputs depend on: upstream keys, its settings, the versions of its code), the outputs it owns,
and ``run``. :func:`vehiclust.pipeline.run_stages` runs a list of stages in order, skips a stage
whose recorded key equals its current key while its outputs exist, and records the key and the
seconds it took in ``stages/<name>.json``. Each package of the pipeline has one ``stage.py``
holding its stage class.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from vehiclust.progress import NullReporter, Reporter
from vehiclust.runfolder import RunFolder


@dataclass
class RunContext:
    """What the stages of one run share besides the run folder's artifacts."""

    run: RunFolder
    descriptors: list[str] = field(default_factory=list)  # the descriptors this run clusters
    reporter: Reporter = field(default_factory=NullReporter)
    input_path: Path | None = None  # read by the ingest stage only


class Stage(ABC):
    """One step of the pipeline. Subclasses set ``name`` and implement the three methods."""

    name: ClassVar[str]
    # True: run even when current, because the stage re-applies a cheap last step on every call
    # (compare: the best rule and --best; report: the pages). Its record is then left as it is.
    always_runs: ClassVar[bool] = False

    def __init__(self, settings: Any = None) -> None:
        self.settings = settings

    @abstractmethod
    def key(self, ctx: RunContext) -> str:
        """Fingerprint of everything the outputs depend on (``runfolder.fingerprint(...)``)."""

    @abstractmethod
    def outputs(self, ctx: RunContext) -> list[Path]:
        """The run-folder files this stage owns; the stage is current only while all exist."""

    def outputs_intact(self, ctx: RunContext, outputs: list[Path]) -> bool:
        """Whether ``outputs`` (those of :meth:`outputs`, all present) read back; a current stage
        whose outputs do not runs again."""
        return True

    @abstractmethod
    def run(self, ctx: RunContext) -> dict:
        """Do the work and write the outputs; returns extra facts for the stage record."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.settings!r})"
