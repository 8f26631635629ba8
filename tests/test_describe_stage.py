"""The describe stage: which stored descriptors are current, and which stored chunks are reused."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from vehiclust.collection import ingest
from vehiclust.describe import DescribeSettings, describe, descriptor_key, is_current
from vehiclust.describe.extract import part_folder
from vehiclust.runfolder import RunFolder, write_json, write_npy

NAME = "color_hist"  # weight-free and fast: the stage logic is the same for every descriptor
CHUNK = 8
PLANTED = 7.0  # no histogram row holds this value (Hellinger rows are at most 1)


@pytest.fixture
def run(tmp_path, photo_folder) -> RunFolder:
    run = RunFolder(tmp_path / "run")
    ingest(photo_folder, run)
    return run


def plant_first_chunk(run: RunFolder, key: str) -> None:
    """A complete stored part 0 of ``NAME`` under fingerprint ``key`` (as an interrupted pass leaves it)."""
    folder = part_folder(run, NAME, key)
    folder.mkdir(parents=True)
    write_npy(folder / "part_000000.npy", np.full((CHUNK, 128), PLANTED, dtype=np.float32))
    write_json(folder / "part_000000.json", {"errors": {}})


def settings() -> DescribeSettings:
    return DescribeSettings(device="cpu", chunk_rows=CHUNK)


def test_a_stored_chunk_of_the_same_fingerprint_is_reused(run):
    plant_first_chunk(run, descriptor_key(NAME, run.load_collection()))
    describe(run, [NAME], settings())
    matrix = run.load_descriptor(NAME)
    assert (matrix[:CHUNK] == PLANTED).all() and (matrix[CHUNK:] < 1.0).all()
    assert run.descriptor_meta(NAME)["chunks_reused"] == 1


def test_a_stored_chunk_of_another_fingerprint_is_not_reused(run):
    """Parts computed for other rows, other weights or another version live under another key."""
    plant_first_chunk(run, "0" * 16)
    plant_first_chunk(run, "1" * 16)
    other = part_folder(run, "vehicle_color", "0" * 16)
    other.mkdir()
    describe(run, [NAME], settings())
    assert (np.asarray(run.load_descriptor(NAME)) < 1.0).all()
    assert run.descriptor_meta(NAME)["chunks_reused"] == 0
    assert [p.name for p in other.parent.iterdir()] == [other.name]  # stale parts of NAME are gone


def test_is_current_follows_the_fingerprint(run):
    assert not is_current(run, NAME)
    describe(run, [NAME], settings())
    assert is_current(run, NAME)
    assert describe(run, [NAME], settings()) == []  # current: nothing recomputed
    meta = run.descriptor_meta(NAME)
    run.save_descriptor_meta(NAME, {**meta, "fingerprint": "stale"})
    assert not is_current(run, NAME)
    assert describe(run, [NAME], settings()) == [NAME]


def test_imported_descriptors_are_current_and_unknown_names_are_not(run):
    rows = len(run.load_collection())
    run.save_descriptor("brought", np.zeros((rows, 3), np.float32), {"name": "brought", "kind": "imported"})
    run.save_descriptor("a_head", np.zeros((rows, 3), np.float32), {"name": "a_head", "kind": "head",
                                                                    "fingerprint": "x"})
    assert is_current(run, "brought")
    assert not is_current(run, "a_head")  # no registered descriptor has that name
    assert not is_current(run, "never_stored")


def test_a_replaced_image_describes_its_own_chunk_only(tmp_path, photo_folder):
    """A changed image changes its chunk's key: that chunk is described again, every other one
    is copied from the last matrix, and the result equals describing the new folder from scratch."""
    folder = tmp_path / "photos"
    shutil.copytree(photo_folder, folder)
    run = RunFolder(tmp_path / "run")
    ingest(folder, run)
    describe(run, [NAME], settings())
    table = run.load_collection()
    chunks = -(-len(table) // CHUNK)
    assert chunks >= 3
    target = folder / table["path"].iloc[CHUNK + 1]  # a row of the second chunk
    shutil.copyfile(folder / table["path"].iloc[0], target)
    os.utime(target, ns=(1, 1))  # a new mtime, as a copied file gets
    ingest(folder, run)
    describe(run, [NAME], settings())

    fresh = RunFolder(tmp_path / "fresh")
    ingest(folder, fresh)
    describe(fresh, [NAME], settings())
    updated = np.asarray(run.load_descriptor(NAME))
    assert run.descriptor_meta(NAME)["chunks_reused"] == chunks - 1
    np.testing.assert_array_equal(updated, np.asarray(fresh.load_descriptor(NAME)))
    np.testing.assert_array_equal(updated[CHUNK + 1], updated[0])


TORCH_IMPORTED = """
import sys
from vehiclust.cli import app
sys.argv = ["vehiclust", "describe", sys.argv[1], "--out", sys.argv[2]]
try:
    app()
except SystemExit as exc:
    assert not exc.code, exc.code
print("torch" in sys.modules)
"""


def test_a_cpu_describe_pass_with_its_model_cached_never_imports_torch(tmp_path, photo_folder):
    """Importing torch costs seconds and 200 MB; the CPU pass runs its cached ONNX graph and
    needs none of it (the first pass may export the graph, which does)."""
    import subprocess
    import sys

    from vehiclust.describe.devices import gpu_driver_present

    if gpu_driver_present():
        pytest.skip("a GPU driver is present: torch is asked whether it sees the GPU")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    for attempt in ("first", "second"):
        done = subprocess.run([sys.executable, "-c", TORCH_IMPORTED, str(photo_folder), str(tmp_path / attempt)],
                              capture_output=True, text=True, timeout=600, env=env, cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip().splitlines()[-1] == "False"
