"""Extraction as a shard job: each worker loads the collection's paths and the describers from
the run folder once, then decodes and describes whole chunks, writing their parts itself."""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from pathlib import Path

from vehiclust.executor.base import ExecutorSettings, ShardJob, create_executor, provenance


@dataclass
class DescribeShards(ShardJob):
    root: str  # the run folder, on storage every worker mounts
    names: list[str]  # the descriptors computed in this pass
    keys: dict[str, str]
    chunks: list[tuple[int, int]]
    settings: object  # DescribeSettings, its executor left out (it holds the driver's hook)
    worker_gpus: tuple = ()  # the GPUs Ray gave the worker (set on the worker before setup)

    def parts(self) -> dict[str, Path]:
        from vehiclust.describe.extract import part_folder
        from vehiclust.runfolder import RunFolder

        run = RunFolder(self.root)
        return {name: part_folder(run, name, self.keys[name]) for name in self.names}

    def stored(self, index: int) -> bool:
        from vehiclust.describe.extract import _part_done

        return all(_part_done(folder, index) for folder in self.parts().values())

    def setup(self, threads: int | None) -> None:
        from vehiclust.describe.extract import ORIGINAL, ORIGINAL_MAX_SIDE, Extraction, _choose_decoder
        from vehiclust.describe.stage import plan
        from vehiclust.runfolder import RunFolder

        settings = self.device_settings(replace(self.settings, model_threads=threads or self.settings.model_threads))
        planned = plan(self.names, settings)
        self.table = read_files_table(RunFolder(self.root))
        self.work = Extraction(planned, self.names, self.parts(), self.chunks, settings.batch_size)
        self.views = sorted({p.view for p in planned}, key=str)
        self.decoder = _choose_decoder(planned, self.views, settings)
        self.original_side = max((p.max_side for p in planned if p.view == ORIGINAL), default=ORIGINAL_MAX_SIDE)
        self.worker_settings = settings

    def device_settings(self, settings):
        """This worker's settings: a GPU actor of a driver that has none describes on its GPU.
        Ray gave the actor one GPU and set CUDA_VISIBLE_DEVICES to it, so ``cuda`` is that GPU."""
        if self.worker_gpus and settings.device == "cpu" and not self.keyed_int8(settings):
            from vehiclust.describe.extract import GPU_BATCH

            return replace(settings, device="cuda", batch_size=max(settings.batch_size or 0, GPU_BATCH))
        return settings

    def keyed_int8(self, settings) -> bool:
        """The driver keyed a network of this pass as int8: the GPU (PyTorch fp16) would store
        other numbers under that key, so the actor describes on its CPU."""
        from vehiclust.describe.stage import pass_precision

        return any(pass_precision(name, settings.precision, "cpu") for name in self.names)

    def run(self, index: int) -> dict:
        from vehiclust.describe.extract import _decoded_chunks, _gpu_decoded_chunks, describe_chunk

        start, stop = self.chunks[index]
        # the shard's rows only, as a chunk of their own: the decoders list the table's files
        # on each call, which for every row of a large collection would cost more than the shard
        rows, chunk = self.table.iloc[start:stop].reset_index(drop=True), [(0, stop - start)]
        if self.decoder == "nvjpeg":
            decoded = _gpu_decoded_chunks(rows, chunk, [0], self.views, self.worker_settings)
        else:
            decoded = _decoded_chunks(rows, chunk, [0], self.views, self.worker_settings, self.original_side)
        _, (images, shard_errors) = next(iter(decoded))
        errors = {start + row: error for row, error in shard_errors.items()}
        describe_chunk(self.work, index, images, errors)
        return {"rows": stop - start, "errors": len(errors), "device": self.worker_settings.device,
                "gpus": list(self.worker_gpus), "cuda_visible_devices": os.environ.get("CUDA_VISIBLE_DEVICES")}


def read_files_table(run) -> pd.DataFrame:
    """The two columns of the collection a describe worker reads (``_files``): every row's
    location and the error ingest found, not the metadata columns."""
    import pandas as pd

    return pd.read_parquet(run.collection_path, columns=["location", "error"])


def describe_on_executor(root: Path, names: list[str], keys: dict[str, str], chunks: list[tuple[int, int]],
                         todo: list[int], settings, advance) -> dict:
    """Every chunk of ``todo`` described by the executor ``settings.executor`` names; returns
    the provenance of the pass. ``advance(rows)`` is told each stored chunk's rows."""
    chosen: ExecutorSettings = settings.executor
    user_hook = chosen.after_shard

    def stored(row: dict) -> None:
        advance(row.get("rows", 0))
        if user_hook is not None:
            user_hook(row)

    executor = create_executor(replace(chosen, after_shard=stored))
    job = DescribeShards(str(root), names, keys, chunks, replace(settings, executor=ExecutorSettings()))
    rows = executor.map(job, todo)
    return provenance(executor.name, rows)
