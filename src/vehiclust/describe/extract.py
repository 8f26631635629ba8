"""Extraction mechanics: images -> descriptor matrices, streamed to disk in resumable chunks.

What to compute and the provenance of each matrix are decided by the stage (``stage.py``).

Rows are processed in chunks of ``chunk_rows``. Each finished chunk is written as
``descriptors/.parts/<name>-<fingerprint>/part_<i>.npy`` (atomically, with its decode errors in
a JSON written last), so killing the process loses at most one chunk; the next run skips every
chunk already stored and assembles the final memory-mappable matrix when all are there.
While one chunk is in the network, the next one is being decoded by a thread pool (PIL
releases the GIL while decoding and resizing).
"""

from __future__ import annotations

import contextlib
import glob
import json
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from PIL import Image

from vehiclust import ownership
from vehiclust.collection.imageio import DEFAULT_MAX_PIXELS, UnreadableImage, decode_rgb, read_bytes
from vehiclust.describe.registry import Describer, DescriptorSpec, get_spec
from vehiclust.executor.base import ExecutorSettings, available_cpus, provenance, worker_identity
from vehiclust.errors import VehiclustError
from vehiclust.progress import Reporter
from vehiclust.runfolder import DESCRIPTOR_PARTS, RunFolder, atomic_path, fingerprint, write_json, write_npy


ORIGINAL = "original"  # the view of describers whose spec says ``needs_original``
ORIGINAL_MAX_SIDE = 512  # default cap of the original view; a spec may set ``max_side``
FINGERPRINT_CHARS = len(fingerprint())  # the key in a parts folder's name


@dataclass(frozen=True)
class DescribeSettings:
    chunk_rows: int = 1024
    batch_size: int | None = None  # None: 32 on the CPU, 256 on a GPU
    decode_threads: int | None = None  # None: chosen per device and decoder (threads_for)
    model_threads: int | None = None  # None: all cores
    max_pixels: int = DEFAULT_MAX_PIXELS
    device: str = "auto"  # auto | cpu | cuda[:N]
    precision: str = "auto"  # auto: a backbone's int8 graph on the CPU where it has one; fp32: never
    gpu_decode: bool = True  # nvjpeg on the GPU when every describer of the pass runs there
    executor: ExecutorSettings = ExecutorSettings()  # where chunks are described (local: this process)

    def __post_init__(self) -> None:
        if self.precision not in PRECISIONS:
            raise VehiclustError(f"precision {self.precision!r} (--precision): expected one of {', '.join(PRECISIONS)}")

    def for_device(self, device: str) -> DescribeSettings:
        """Fill the automatic batch size for the device the pass runs on."""
        return replace(self, device=device,
                       batch_size=self.batch_size or (CPU_BATCH if device == "cpu" else GPU_BATCH))

    def threads_for(self, decoder: str) -> int:
        """Decoding threads: 2 beside the CPU model (which takes the other cores); every core
        for PIL beside a GPU; 4 for nvjpeg, measured best on an H100 (2: 3.9k, 4: 7.1k images/s
        end to end; more only fight over the GIL)."""
        if self.decode_threads:
            return self.decode_threads
        if self.device == "cpu":
            return 2
        return min(NVJPEG_THREADS, available_cpus()) if decoder == "nvjpeg" else available_cpus()


PRECISIONS = ("auto", "fp32")
CPU_BATCH = 32
GPU_BATCH = 256
NVJPEG_THREADS = 4


@dataclass(frozen=True)
class Planned:
    """One describer of an extraction pass, with the options its spec declares."""

    spec: DescriptorSpec  # the spec of (one of) its descriptors: the options of its pass
    describer: Describer

    @property
    def view(self) -> int | str:
        """The image view it reads: a square size, or the original resolution."""
        return ORIGINAL if self.spec.needs_original else self.describer.input_size

    @property
    def max_side(self) -> int:
        return self.spec.max_side or ORIGINAL_MAX_SIDE


@dataclass(frozen=True)
class Extraction:
    """What every chunk of one pass needs: the describers, the names and where parts go."""

    planned: list[Planned]
    names: list[str]
    parts: dict[str, Path]  # name -> its folder of chunk parts
    chunks: list[tuple[int, int]]  # [start, stop) rows of each chunk
    batch_size: int


# record(name, planned, facts): the stage writes the provenance of one assembled matrix
Recorder = Callable[[str, Planned, dict], None]
# chunk_keys(name, chunks): one fingerprint per chunk of rows (describe.stage.chunk_keys)
ChunkKeys = Callable[[str, list[tuple[int, int]]], list[str]]


def extract(run: RunFolder, table: pd.DataFrame, planned: list[Planned], names: list[str],
            keys: dict[str, str], settings: DescribeSettings, reporter: Reporter, record: Recorder,
            chunk_keys: ChunkKeys | None = None) -> None:
    """One pass over the images: each is decoded once and every describer gets its view.

    Chunks whose parts are stored (under the descriptor's fingerprint ``keys[name]``) are
    reused, and so are the chunks of the last stored matrix whose ``chunk_keys`` did not change
    (a replaced image re-describes its chunk only); each assembled matrix is handed to
    ``record`` (with its chunk keys) before its parts are removed.
    """
    started = time.perf_counter()
    n = len(table)
    chunks = [(start, min(start + settings.chunk_rows, n)) for start in range(0, n, settings.chunk_rows)]
    work = Extraction(planned, names, {name: part_folder(run, name, keys[name]) for name in names}, chunks,
                      settings.batch_size)
    current_keys = {name: chunk_keys(name, chunks) for name in names} if chunk_keys else {}
    unchanged = sum(_copy_unchanged_chunks(run, work, name, current_keys[name]) for name in current_keys)
    if unchanged:
        reporter.message(f"describe: {unchanged} chunk parts unchanged since the last matrix, copied from it")
    todo = [i for i in range(len(chunks)) if not all(_part_done(work.parts[nm], i) for nm in names)]
    reused = len(chunks) - len(todo)
    if reused:
        reporter.message(f"describe: resuming, {reused} of {len(chunks)} chunks already stored")
    views = sorted({p.view for p in planned}, key=str)
    decoder = _choose_decoder(planned, views, settings)
    clock = StageClock()
    shards: list[dict] = []
    with reporter.task(f"Describing ({', '.join(names)})", n) as task:
        task.advance(n - sum(chunks[i][1] - chunks[i][0] for i in todo))
        if settings.executor.kind != "local":
            from vehiclust.executor.describe_job import describe_on_executor

            executed = describe_on_executor(run.root, names, keys, chunks, todo, settings, task.advance)
            todo = []  # described by the executor's workers
        original_side = max((p.max_side for p in planned if p.view == ORIGINAL), default=ORIGINAL_MAX_SIDE)
        decoded = (_gpu_decoded_chunks(table, chunks, todo, views, settings) if decoder == "nvjpeg"
                   else _decoded_chunks(table, chunks, todo, views, settings, original_side))
        for index, (images, errors) in clock.timed("waiting_for_decoding", decoded):
            shard_started = time.perf_counter()
            describe_chunk(work, index, images, errors, clock)
            shards.append({"shard": index, "seconds": round(time.perf_counter() - shard_started, 4),
                           "stored_at": time.time(), **worker_identity()})
            task.advance(chunks[index][1] - chunks[index][0])
        if settings.executor.kind == "local":
            executed = provenance("local", shards)
    facts = {"seconds": round(time.perf_counter() - started, 2), "chunks_reused": reused, **executed}
    context = {"device": settings.device, "decoder": decoder, "batch_size": settings.batch_size,
               "decode_threads": settings.threads_for(decoder), "seconds_by_step": clock.rounded()}
    _assemble_all(run, work, facts, context, record, current_keys)


def _assemble_all(run: RunFolder, work: Extraction, facts: dict, context: dict, record: Recorder,
                  chunk_keys: dict[str, list[str]]) -> None:
    n = work.chunks[-1][1] if work.chunks else 0
    owner = {name: p for p in work.planned for name in p.describer.outputs}
    for name in work.names:
        width = owner[name].describer.outputs[name]
        invalid = assemble(run.descriptor_path(name), work.parts[name], work.chunks, width, get_spec(name).dtype)
        record(name, owner[name], {"shape": [n, width], **facts, "invalid": invalid, **context,
                                   "chunk_keys": chunk_keys.get(name, [])})
        _remove_parts(work.parts[name])


def _copy_unchanged_chunks(run: RunFolder, work: Extraction, name: str, keys: list[str]) -> int:
    """Store, as parts of this pass, the chunks of the last matrix of ``name`` (one vehiclust
    wrote) whose chunk key equals the current one; returns how many."""
    if name not in run.descriptor_names():
        return 0
    meta = run.descriptor_meta(name)
    stored_keys = meta.get("chunk_keys") or []
    width = dict(p for planned in work.planned for p in planned.describer.outputs.items())[name]
    old = run.load_descriptor(name)
    if meta.get("kind") != "extracted" or old.ndim != 2 or old.shape[1] != width:
        return 0
    invalid = {int(row): why for row, why in meta.get("invalid", {}).items()}
    copied = 0
    for index, (start, stop) in enumerate(work.chunks):
        same = index < len(stored_keys) and stored_keys[index] == keys[index] and stop <= old.shape[0]
        if same and not _part_done(work.parts[name], index):
            errors = {row: why for row, why in invalid.items() if start <= row < stop}
            _write_part(work.parts[name], index, np.asarray(old[start:stop], dtype=np.float32), errors)
            copied += 1
    return copied


def describe_chunk(work: Extraction, index: int, images: dict[int | str, object], errors: dict[int, str],
                   clock: StageClock | None = None) -> None:
    """One chunk: the decoded views of its rows in, one stored part per descriptor out.

    Independent of every other chunk, so an executor can map it over shards.
    """
    clock = clock or StageClock()
    with clock("describing"):
        outputs = _describe_views(work, images)
    with clock("writing"):
        for name in work.names:
            _write_part(work.parts[name], index, outputs[name], errors)


def _describe_views(work: Extraction, images: dict[int | str, object]) -> dict[str, np.ndarray]:
    """Every describer of the pass on one chunk: the networks on this thread, the numpy
    describers (colour, histogram, quality) beside them on another. ONNX Runtime leaves the
    cores partly idle between its layers and the numpy work fills them: on 2 cores the default
    pass went from 0.71-0.75 to 0.83-0.85 of the network-only rate (run one after the other vs
    side by side, 128 decoded images)."""
    def run(group: list[Planned]) -> dict[str, np.ndarray]:
        outputs: dict[str, np.ndarray] = {}
        for planned in group:
            outputs.update(_run_batches(planned.describer, images[planned.view], work.batch_size))
        return outputs

    networks = [p for p in work.planned if p.spec.backbone]
    beside_networks = [p for p in work.planned if not p.spec.backbone]
    if not networks or not beside_networks:
        return run(work.planned)
    with ThreadPoolExecutor(1, thread_name_prefix="vehiclust-describers") as pool:
        numpy_outputs = pool.submit(run, beside_networks)
        outputs = run(networks)
        outputs.update(numpy_outputs.result())
    return outputs


def part_folder(run: RunFolder, name: str, key: str) -> Path:
    """Chunk parts of descriptor ``name`` computed under fingerprint ``key``: another key,
    another folder, so parts of other weights or other rows are never reused."""
    return DESCRIPTOR_PARTS.path(run, name, key=key)


class StageClock:
    """Seconds the extraction loop spends per step, so a slow pass says where its time goes."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}

    @contextlib.contextmanager
    def __call__(self, step: str) -> Iterator[None]:
        started = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[step] = self.seconds.get(step, 0.0) + time.perf_counter() - started

    def timed(self, step: str, items: Iterator) -> Iterator:
        """Iterate, counting the time spent waiting for each next item as ``step``."""
        iterator = iter(items)
        while True:
            with self(step):
                item = next(iterator, _DONE)
            if item is _DONE:
                return
            yield item

    def rounded(self) -> dict[str, float]:
        return {step: round(value, 3) for step, value in self.seconds.items()}


_DONE = object()


def _choose_decoder(planned: list[Planned], views: list[int | str], settings: DescribeSettings) -> str:
    """'nvjpeg' when every describer of the pass takes GPU tensors of square views, else 'pil'."""
    gpu_only = all(p.spec.accepts_tensors for p in planned) and ORIGINAL not in views
    if not (settings.gpu_decode and gpu_only and str(settings.device).startswith("cuda")):
        return "pil"
    from vehiclust.describe.gpu_decode import nvjpeg_available  # (imports torch)

    return "nvjpeg" if nvjpeg_available(settings.device) else "pil"


def _decode_views(data: bytes, views: list[int | str], max_pixels: int,
                  original_side: int) -> dict[int | str, np.ndarray]:
    """Decode once; derive every view from that one decoded image."""
    squares = [v for v in views if v != ORIGINAL]
    if ORIGINAL in views or len(squares) > 1:
        base = decode_rgb(data, None, max_pixels, max_side=max([original_side, *squares]))
    else:
        base = decode_rgb(data, (squares[0], squares[0]), max_pixels)  # draft mode does the rest
    out: dict[int | str, np.ndarray] = {}
    for view in views:
        if view == ORIGINAL:
            out[view] = np.asarray(base)
        else:
            out[view] = np.asarray(base if base.size == (view, view)
                                   else base.resize((view, view), Image.Resampling.BILINEAR, reducing_gap=2.0))
    return out


def _files(table: pd.DataFrame) -> tuple[list[str], list[str]]:
    """(location, error known from ingest) per row, as plain lists for the worker threads."""
    return table["location"].tolist(), table["error"].tolist()


def _read_row(files: tuple[list[str], list[str]], row: int) -> bytes | str:
    """The file's bytes, or why it cannot be read (known from ingest, or found now)."""
    locations, known_errors = files
    if known_errors[row]:
        return known_errors[row]
    try:
        return read_bytes(locations[row])
    except UnreadableImage as exc:
        return str(exc)


def _views_or_error(blob: bytes, views: list[int | str], max_pixels: int, original_side: int) -> dict | str:
    try:
        return _decode_views(blob, views, max_pixels, original_side)
    except UnreadableImage as exc:
        return str(exc)


def _decoded_chunks(table: pd.DataFrame, chunks: list[tuple[int, int]], todo: list[int],
                    views: list[int | str], settings: DescribeSettings, original_side: int
                    ) -> Iterator[tuple[int, tuple[dict[int | str, np.ndarray | list], dict[int, str]]]]:
    """Yield (chunk index, (images per view, errors)) with the next chunk decoding meanwhile."""
    files = _files(table)

    def load(row: int) -> dict | str:
        blob = _read_row(files, row)
        return blob if isinstance(blob, str) else _views_or_error(blob, views, settings.max_pixels, original_side)

    with ThreadPoolExecutor(settings.threads_for("pil")) as pool:
        def submit(i: int) -> list[Future]:
            start, stop = chunks[i]
            return [pool.submit(load, row) for row in range(start, stop)]

        pending = submit(todo[0]) if todo else []
        for position, index in enumerate(todo):
            upcoming = submit(todo[position + 1]) if position + 1 < len(todo) else []
            results = [f.result() for f in pending]
            errors = {chunks[index][0] + offset: r for offset, r in enumerate(results) if isinstance(r, str)}
            yield index, (_stack_views(results, views), errors)
            pending = upcoming


GPU_SLICE_ROWS = 128  # rows one worker reads, decodes and resizes on the GPU at a time
GPU_CHUNKS_AHEAD = 2  # chunks being decoded while one is described


def _gpu_decoded_chunks(table: pd.DataFrame, chunks: list[tuple[int, int]], todo: list[int],
                        views: list[int | str], settings: DescribeSettings
                        ) -> Iterator[tuple[int, tuple[dict[int | str, object], dict[int, str]]]]:
    """Like ``_decoded_chunks``, with the square views decoded and resized on the GPU.

    Worker threads each take a slice of rows: read the files, decode them with nvjpeg (which
    releases the GIL), resize on the GPU; meanwhile the main thread runs the network on an
    earlier chunk. Files nvjpeg must not or cannot take are decoded by PIL as on the CPU path.
    """
    import torch

    from vehiclust.describe.gpu_decode import NvjpegDecoder

    decoder = NvjpegDecoder(settings.device)
    sizes = [v for v in views if v != ORIGINAL]
    files = _files(table)

    def slices(i: int) -> list[tuple[int, int]]:
        start, stop = chunks[i]
        return [(s, min(s + GPU_SLICE_ROWS, stop)) for s in range(start, stop, GPU_SLICE_ROWS)]

    with ThreadPoolExecutor(settings.threads_for("nvjpeg")) as pool:
        def submit(i: int) -> list[Future]:
            return [pool.submit(_gpu_slice, files, rows, sizes, decoder, settings.max_pixels)
                    for rows in slices(i)]

        in_flight = [submit(i) for i in todo[:GPU_CHUNKS_AHEAD]]
        for position, index in enumerate(todo):
            if position + GPU_CHUNKS_AHEAD < len(todo):
                in_flight.append(submit(todo[position + GPU_CHUNKS_AHEAD]))
            results = [f.result() for f in in_flight.pop(0)]
            errors = {row: error for _, err in results for row, error in err.items()}
            images = {size: torch.cat([batch[size] for batch, _ in results]) for size in sizes}
            yield index, (images, errors)


def _gpu_slice(files: tuple[list[str], list[str]], rows: tuple[int, int], sizes: list[int], decoder,
               max_pixels: int) -> tuple[dict[int, object], dict[int, str]]:
    """One slice of rows -> (uint8 [n, S, S, 3] GPU batch per size, errors by row)."""
    import torch

    from vehiclust.describe.gpu_decode import gpu_decodable, resize_batch

    start, stop = rows
    blobs = [_read_row(files, row) for row in range(start, stop)]
    on_gpu = [i for i, b in enumerate(blobs) if isinstance(b, bytes) and gpu_decodable(b)]
    decoded = dict(zip(on_gpu, decoder.decode([blobs[i] for i in on_gpu])))
    good = [i for i in on_gpu if decoded[i] is not None]
    rows_by_size: dict[int, list] = {size: [None] * len(blobs) for size in sizes}
    for size in sizes:
        if good:
            for i, image in zip(good, resize_batch([decoded[i] for i in good], size)):
                rows_by_size[size][i] = image
    errors: dict[int, str] = {}
    for i in set(range(len(blobs))) - set(good):  # PIL decides the rest, exactly as on the CPU path
        views = blobs[i] if isinstance(blobs[i], str) else _views_or_error(blobs[i], sizes, max_pixels,
                                                                            ORIGINAL_MAX_SIDE)
        if isinstance(views, str):
            errors[start + i] = views
            continue
        for size in sizes:
            rows_by_size[size][i] = torch.from_numpy(np.array(views[size])).to(decoder.device)
    batches = {}
    for size, rows in rows_by_size.items():  # one stack: no scattered writes into a GPU batch
        blank = torch.zeros((size, size, 3), dtype=torch.uint8, device=decoder.device)
        batches[size] = torch.stack([blank if row is None else row for row in rows])
    return batches, errors


def _stack_views(results: list[dict | str], views: list[int | str]) -> dict[int | str, np.ndarray | list]:
    """Square views become one uint8 array (zeros where decoding failed), originals a list."""
    stacked: dict[int | str, np.ndarray | list] = {}
    for view in views:
        if view == ORIGINAL:
            stacked[view] = [np.zeros((1, 1, 3), np.uint8) if isinstance(r, str) else r[view] for r in results]
        else:
            batch = np.zeros((len(results), view, view, 3), dtype=np.uint8)
            for offset, result in enumerate(results):
                if not isinstance(result, str):
                    batch[offset] = result[view]
            stacked[view] = batch
    return stacked


def _run_batches(describer: Describer, images: np.ndarray | list, batch_size: int) -> dict[str, np.ndarray]:
    outputs: dict[str, list[np.ndarray]] = {name: [] for name in describer.outputs}
    for start in range(0, len(images), batch_size):
        result = describer.describe(images[start:start + batch_size])
        for name in outputs:
            outputs[name].append(np.asarray(result[name], dtype=np.float32))
    return {name: np.concatenate(blocks) for name, blocks in outputs.items()}


PART_FILE = re.compile(r"part_\d{6}\.(npy|json)")


def _part_done(folder: Path, index: int) -> bool:
    """Both files of a part, written by vehiclust (a part found in ``--out`` is not trusted)."""
    return all(ownership.is_ours(folder / f"part_{index:06d}.{kind}") for kind in ("json", "npy"))


def _write_part(folder: Path, index: int, matrix: np.ndarray, errors: dict[int, str]) -> None:
    """The matrix first, then the JSON that marks the part complete."""
    folder.mkdir(parents=True, exist_ok=True)
    write_npy(folder / f"part_{index:06d}.npy", matrix)
    write_json(folder / f"part_{index:06d}.json", {"errors": {str(k): v for k, v in errors.items()}})


def assemble(path: Path, folder: Path, chunks: list[tuple[int, int]], width: int, dtype: str) -> dict[str, str]:
    """Write the parts of ``folder`` as one memory-mappable matrix at ``path`` (rows that failed
    to decode are zeros); returns the decode errors by row."""
    n = chunks[-1][1] if chunks else 0
    invalid: dict[str, str] = {}
    with atomic_path(path) as tmp:
        out = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=(n, width))
        for index, (start, stop) in enumerate(chunks):
            part = np.load(folder / f"part_{index:06d}.npy")
            errors = json.loads((folder / f"part_{index:06d}.json").read_text()).get("errors", {})
            for row in errors:
                part[int(row) - start] = 0.0
            out[start:stop] = part
            invalid.update(errors)
        out.flush()
        del out
    return invalid


def _remove_parts(folder: Path) -> None:
    """The parts of an assembled matrix, and those the same descriptor left under another
    fingerprint (other rows or weights): the folder keeps one matrix per descriptor, and stale
    parts of a large one weigh gigabytes."""
    name = folder.name.rsplit("-", 1)[0]
    for parts in [folder, *folder.parent.glob(f"{glob.escape(name)}-{'?' * FINGERPRINT_CHARS}")]:
        ownership.remove_owned(parts, unmarked=lambda path: PART_FILE.fullmatch(path.name) is not None)
    with contextlib.suppress(OSError):  # the shared .parts folder goes once it is empty
        folder.parent.rmdir()

